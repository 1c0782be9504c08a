"""Who goes first in an HQ worker: a till's authorisation before a store's batch (docs/hq-serving.md,
"Authorisations first").

An authorisation is a customer waiting at the counter; a batch upload is background work that may take
longer. Each has its own threads and its own pooled connections, so neither waits for a thread or a
connection behind the other; and no worker stops every thread for long to collect garbage:

- `BatchLane`: store batches run on BACKROOM_HQ_BATCH_THREADS (2) threads of their own (this is the
  admission limit: a batch over it waits in the lane's queue, undecoded, and its store's upload just
  takes longer; it is neither dropped nor run twice), with a pool of as many PostgreSQL connections
  (`application_name` backroom-hq-batch; the authorisations' is backroom-hq-authorize).
  BACKROOM_HQ_BATCH_NICE (0, off) lowers the CPU priority of that pool's PostgreSQL backends when HQ may
  (the same user as the server, or root). Measured under load, it did not help: an authorisation's
  commit waits for the WAL flush, which a niced batch backend may be doing. Niced batch *threads* were
  worse (2 pairs of 2): a niced thread holding the GIL waits off the CPU while the event loop and the
  authorisations wait for it. Neither is on by default.
- `collector_settings`: the worker's start-up objects frozen, collections rarer.
- `Timing`: with BACKROOM_HQ_TIMING_DIR set, each worker records every authorisation's phases and its
  event loop's lateness and writes them to `<dir>/timing-<pid>.json` every few seconds (`bench chain
  --phases` reads them). Off by default: nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from edge.lifeline import die_with_parent

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_NICE = int(os.environ.get("BACKROOM_HQ_BATCH_NICE") or 0)  # the batch connections' backends (opt-in)
BATCH_LANE = os.environ.get("BACKROOM_HQ_BATCH_LANE") or "process"  # or "thread" (PostgreSQL)
LANE_NICE = int(os.environ.get("BACKROOM_HQ_LANE_NICE") or 10)  # the lane processes' CPU priority
LANE_START_WARN_S = 5.0  # a lane process slower than this to start says so in the log
TIMING_DIR = os.environ.get("BACKROOM_HQ_TIMING_DIR") or ""
TIMING_EVERY_S = 2.0
LAG_TICK_S = 0.01
GC_THRESHOLD = "10000,10,10"
STALL_S = 0.1  # with timing on, a watchdog notes where the event loop is while it is this late
  # the event loop's lateness is sampled this often (with timing on)


def collector_settings() -> None:
    """After a worker's start-up: everything made so far (modules, the app, the pools) out of the cyclic
    collector's reach (`gc.freeze`), and collections rarer (BACKROOM_HQ_GC_THRESHOLD, "10000,10,10"). A full
    collection stops every thread of the worker, the event loop and the authorisations included, for as long
    as it scans: in a 200-store bench run, the worker's collections (not frozen) took up to 342 ms."""
    raw = os.environ.get("BACKROOM_HQ_GC_THRESHOLD") or GC_THRESHOLD
    gc.freeze()
    with contextlib.suppress(ValueError):
        gc.set_threshold(*(max(1, int(x)) for x in raw.split(",")[:3]))


def lower_priority(nice: int, pid: int = 0) -> bool:
    """Lower the CPU priority of a process (or, pid 0, of the calling thread: Linux keeps niceness per thread)
    by `nice`. False where the system does not allow it (another user's process, no setpriority)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    target = pid or threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, target, min(19, os.getpriority(os.PRIO_PROCESS, target) + nice))
    except (PermissionError, ProcessLookupError, OSError):
        return False
    return True


_told_no_renice = False


def nice_backend(conn: Any, nice: int) -> None:
    """Lower the CPU priority of a batch connection's PostgreSQL backend by `nice` (BACKROOM_HQ_BATCH_NICE;
    0: leave it). Only where HQ may renice PostgreSQL's processes (the same user, or root); else said once."""
    global _told_no_renice
    if nice <= 0:
        return
    pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    if not lower_priority(nice, pid) and not _told_no_renice:
        _told_no_renice = True
        log.info("batch connections' PostgreSQL backends keep their CPU priority (HQ may not renice them; "
                 "see docs/hq-serving.md)")


class BatchLane:
    """The store batches' threads and their database `db` (SQLite: HQ's own; PostgreSQL, with
    BACKROOM_HQ_BATCH_LANE=thread: a pool of as many connections, BACKROOM_HQ_BATCH_NICE: its backends niced).
    `run(fn, *args)` calls `fn(db, *args)` on a lane thread."""

    def __init__(self, threads: int, nice: int = BATCH_NICE) -> None:
        self.threads = threads
        self.nice = nice
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hq-batch")
        self.db: Any = None  # set by its owner (its connections' on_connect may be `backend_started`)

    def backend_started(self, conn: Any) -> None:
        """A new connection of the batch pool (PostgresDb's on_connect): nice its backend process."""
        nice_backend(conn, self.nice)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(db, *args)` on a batch thread; waits (as a coroutine) while every batch thread is busy. If the
        request is cancelled meanwhile, the work still runs to its end (a batch is all or nothing)."""
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._pool, fn, self.db, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)


# -- the batch lane in processes of its own ---------------------------------------------------------------------

_LANE_DB: Any = None  # in a lane process: its database connection


def _lane_process_started(db_url: str, parent: int) -> None:
    """A lane process's start: die with the worker (PR_SET_PDEATHSIG), import what batches need, open one
    connection, and only then lower its priority. A batch waits for this start: at nice 10 on a busy machine
    the imports alone took seconds, most of them the web framework that the batch's function was imported
    from (it now lives in service/intake.py, which does not import it)."""
    global _LANE_DB
    started = time.monotonic()
    die_with_parent(parent)  # and if the worker goes without killing it, the executor's closed pipe ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the worker, which stops the lane
    import hq_sync.server.service.intake  # noqa: F401  (the lane's functions, unpickled by name; member_rules too)
    from hq_sync.server.storage.db import PostgresDb

    _LANE_DB = PostgresDb(db_url, 1, name="backroom-hq-batch", on_connect=lambda conn: nice_backend(conn, BATCH_NICE))
    collector_settings()
    lower_priority(LANE_NICE, os.getpid())  # the worker's event loop and authorisations get the CPU first
    took = time.monotonic() - started
    if took > LANE_START_WARN_S:
        log.warning("a batch lane process took %.1f s to start (the machine is short of CPU)", took)


def _in_lane_process(fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[str, Any]:
    """`fn(db, *args)` in a lane process. An HqError comes back as its parts (its `extra` need not pickle)."""
    from hq_sync.server.service.errors import HqError

    try:
        return "ok", fn(_LANE_DB, *args)
    except HqError as exc:
        return "refused", (exc.status, exc.code, exc.message, json.loads(json.dumps(exc.extra, default=str)))


class ProcessLane:
    """The batch lane in BACKROOM_HQ_BATCH_THREADS processes of the worker's own (PostgreSQL, the default;
    BACKROOM_HQ_BATCH_LANE=thread for threads). A batch's decoding, planning and COPY formatting are most of
    a worker's Python time in the busy hour; on the worker's threads they held its GIL while authorisations,
    feed polls and the event loop waited for it (bench chain --phases: an authorisation's thread waited up to
    half a second to start). In processes, they wait only for a CPU, which the kernel shares out.

    `run(fn, *args)` calls `fn(db, *args)` in a lane process (`fn` a module-level function; arguments and
    result pickled). A process starts when a batch finds none idle (about a second: it imports HQ and
    connects), so an HQ that takes few batches, as in the tests, runs few. A lane process that dies (killed,
    out of memory) takes its batch with it: that batch's store gets 503 and sends it again (it may have
    committed: the store's sequence numbers make the resend a duplicate, acknowledged, not applied twice),
    and the lane starts new processes. They also start with nice LANE_NICE and die with their worker."""

    def __init__(self, processes: int, db_url: str) -> None:
        self.threads = processes
        self._url = db_url
        self._pool: ProcessPoolExecutor | None = None  # made by the first batch: an HQ that takes none has none

    def _start(self) -> ProcessPoolExecutor:
        self._pool = ProcessPoolExecutor(max_workers=self.threads, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_lane_process_started, initargs=(self._url, os.getpid()))
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        from hq_sync.server.service.errors import HqError

        loop = asyncio.get_running_loop()
        pool = self._pool or self._start()
        try:
            running = loop.run_in_executor(pool, _in_lane_process, fn, args)
        except BrokenProcessPool:  # a process died while the lane was idle: nothing of this batch has run
            self._drop(pool)
            pool = self._pool or self._start()  # another batch may have made it anew already
            running = loop.run_in_executor(pool, _in_lane_process, fn, args)
        try:
            how, out = await asyncio.shield(running)
        except BrokenProcessPool:
            self._drop(pool)  # the next batch makes the lane anew
            raise HqError(503, "batch_lane_restarting", "HQ's batch process stopped while it held this batch; "
                          "send it again") from None
        if how == "refused":
            status, code, message, extra = out
            raise HqError(status, code, message, **extra)
        return out  # type: ignore[no-any-return]

    def _drop(self, broken: ProcessPoolExecutor) -> None:
        """A process of `broken` died: let the pool go (once, whichever batch saw it first)."""
        if self._pool is broken:
            log.error("a batch lane process died; starting the lane's processes again")
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """At the worker's stop (its requests already answered): the lane processes finish and exit. Waited
        for, and the pool let go, so that its queues' semaphores are released here: left to the process's
        exit, multiprocessing's resource tracker warned of "leaked semaphore objects" at every stop."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            del pool
            gc.collect()


class Timing:
    """Per-phase timing of authorisations and the event loop's lateness (BACKROOM_HQ_TIMING_DIR)."""

    def __init__(self, where: str = TIMING_DIR) -> None:
        self.where = Path(where) if where else None
        # (wall time at the start, queue, connection, first round trip, commit, back to the loop, handler) in ms
        self.auth: deque[tuple[float, ...]] = deque(maxlen=50_000)
        self.lag: deque[tuple[float, float]] = deque(maxlen=200_000)  # (wall time, ms late)
        self.gc: deque[tuple[float, int, float]] = deque(maxlen=50_000)  # (wall time, generation, ms) of collections
        self._gc_start = 0.0
        # where the event loop's thread was while it ran over STALL_S late (a watchdog thread's samples)
        self.stalls: dict[str, int] = {}
        self._beat = 0.0
        self._loop_thread = 0

    @property
    def on(self) -> bool:
        return self.where is not None

    def authorised(self, wall: float, marks: list[float]) -> None:
        """`marks`: perf_counter at the handler's start, the thread's start, the connection in hand, the
        first round trip done, the commit done, and back on the event loop."""
        if len(marks) < 6:
            return
        steps = [round((b - a) * 1000, 3) for a, b in zip(marks, marks[1:], strict=False)]
        self.auth.append((wall, *steps, round((marks[5] - marks[0]) * 1000, 3)))

    async def run(self) -> None:
        """Sample the loop's lateness; write what was recorded every TIMING_EVERY_S."""
        if self.where is None:
            return
        self.where.mkdir(parents=True, exist_ok=True)
        gc.callbacks.append(self._collected)
        next_dump = time.monotonic() + TIMING_EVERY_S
        self._loop_thread = threading.get_ident()
        self._beat = time.perf_counter()
        threading.Thread(target=self._watch, name="hq-timing-watchdog", daemon=True).start()
        try:
            while True:
                before = self._beat = time.perf_counter()
                await asyncio.sleep(LAG_TICK_S)
                self.lag.append((time.time(), round((time.perf_counter() - before - LAG_TICK_S) * 1000, 3)))
                if time.monotonic() >= next_dump:
                    next_dump = time.monotonic() + TIMING_EVERY_S
                    await asyncio.to_thread(self.dump, self.snapshot())
        finally:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._collected)
            self.dump()

    def _watch(self) -> None:
        import sys
        import traceback

        while self.where is not None:
            time.sleep(STALL_S / 4)
            if time.perf_counter() - self._beat < STALL_S:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            ours = [f for f in stack[:-1] if "hq_sync" in f.filename or "/edge/" in f.filename][-3:]
            where = " < ".join(f"{Path(f.filename).name}:{f.name}:{f.lineno}" for f in reversed([*ours, stack[-1]]))
            self.stalls[where] = self.stalls.get(where, 0) + 1

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self.gc.append((time.time(), int(info.get("generation", -1)),
                            round((time.perf_counter() - self._gc_start) * 1000, 3)))

    def snapshot(self) -> dict[str, Any]:
        return {"auth": list(self.auth), "lag": list(self.lag), "gc": list(self.gc), "stalls": dict(self.stalls)}

    def dump(self, snapshot: dict[str, Any] | None = None) -> None:
        """Written off the event loop (the JSON of a run's samples took it tens of milliseconds)."""
        if self.where is None:
            return
        path = self.where / f"timing-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(snapshot or self.snapshot()))
            tmp.replace(path)
