"""The hub's side of the sale-writer process (edge/sales/writer_proc.py; docs/performance.md, "Fourth
round: the second core").

The hub's event loop does HTTP, auth, decoding and the quote; `commit_sale` and its COMMIT run in a
second process, so the two halves of a sale use two cores instead of sharing one GIL. Every other
write (returns, exchanges, top-ups, the tablet, the sync agent) stays on the hub's own writer thread;
the two writers of the one SQLite file take turns on `<db>.write-lock` (edge/storage/db.py).

The process is started at the first sale (a hub that sells nothing never starts it) and answers
once it is ready; until then, and whenever it is down, sales are committed by the hub's writer
thread as before. If it dies, the hub finishes the sales it had not answered on its own writer, as
a till's retry would be: `commit_sale` reads the sale_id inside its transaction, so a sale the process
had committed is answered with its stored response, byte for byte, and the others are committed then
(the write lock keeps that read after any COMMIT of the process). The till sees its sale answered, never
a 5xx. The hub starts the process again. It dies with the hub (PR_SET_PDEATHSIG, and its
stdin closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import edge
from edge.errors import ApiError, StorageFull
from edge.pricing.engine import Quote
from edge.sales import writer_proc as wire
from edge.sales.checkout import Replay
from edge.sales.models import SaleRequest
from edge.stock.ledger import Actor
from edge.storage.db import Writer

log = logging.getLogger(__name__)

READ_LIMIT = 4 * 1024 * 1024
CLOSE_TIMEOUT_S = 10.0
RESTART_MIN_S = 0.1
RESTART_MAX_S = 5.0
START_TIMEOUT_S = 15.0  # a process that has not said it is ready by then is hung in its start: killed, started again
_SD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")  # the watchdog and sd_notify stay the hub's


class _WriterGone(Exception):
    """The process ended before answering a sale it was sent (killed, crashed, or killed as hung)."""


class SaleWriter:
    """Starts, feeds and supervises the sale-writer process. Lives on the hub's event loop."""

    def __init__(self, db: Writer) -> None:
        self.db = db
        self.pid: int | None = None  # of the running process, once it said it is ready
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False
        # job -> (its reply's future, time.monotonic() it was sent), until answered; in the order sent
        self._pending: dict[int, tuple[asyncio.Future[wire.SaleReply], float]] = {}
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def ready(self) -> bool:
        return self._ready

    def want(self) -> None:
        """Start the process (in the background) unless it is started or the hub is closing."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def commit(self, req: SaleRequest, digest: str, quote: Quote, actor: Actor, at: str, today: str,
                     store_code: str) -> Replay | bytes | None:
        """`commit_sale` in the process: its result, or None when the process is not there to take it
        or it ended before answering (the caller commits on the hub's writer, which replays the sale if
        the process had committed it). Raises ApiError as `commit_sale` does, StorageFull (507) when the
        disk refused."""
        proc = self._proc
        if not self._ready or proc is None or proc.stdin is None or proc.stdin.is_closing():
            return None
        self._next_id += 1
        job_id = self._next_id
        fut: asyncio.Future[wire.SaleReply] = asyncio.get_running_loop().create_future()
        self._pending[job_id] = (fut, time.monotonic())
        proc.stdin.write(wire.frame(wire.job_encoder.encode(
            wire.SaleJob(job_id, req, digest, quote, actor, at, today, store_code))))
        try:
            reply = await fut
        except _WriterGone:
            return None
        finally:
            self._pending.pop(job_id, None)
        return self._outcome(reply)

    def stalled_for(self) -> float:
        """Seconds the oldest unanswered sale has waited for the process (0 when none waits)."""
        oldest = next(iter(self._pending.values()), None)  # job ids rise: the first is the oldest
        return time.monotonic() - oldest[1] if oldest is not None else 0.0

    def kill_if_stalled(self, limit_s: float) -> bool:
        """Kill a process that has left a sale unanswered for `limit_s` (hung, not dead: an fsync that never
        returns, a stopped process). Its sales are finished on the hub's writer, and the supervisor starts it
        again (edge/appliance/liveness.py calls this)."""
        proc = self._proc
        waited = self.stalled_for()
        if waited < limit_s or proc is None or proc.returncode is not None:
            return False
        log.error("the sale writer process (pid %d) has not answered a sale for %.0f s; killing it",
                  proc.pid, waited)
        proc.kill()
        return True

    def _outcome(self, reply: wire.SaleReply) -> Replay | bytes:
        if reply.kind == wire.COMMITTED:
            return reply.body
        if reply.kind == wire.REPLAY:
            return Replay(reply.body)
        if reply.kind == wire.REFUSED:
            raise ApiError(reply.status, reply.code, reply.message, **reply.extra)
        if reply.kind == wire.STORAGE_FULL:
            self.db.storage_failed_at = time.time()  # /healthz and doctor, as the hub's writer does
            raise StorageFull(reply.message)
        raise RuntimeError(f"the sale writer process failed: {reply.message}")

    async def close(self) -> None:
        """Let the process answer what it was sent, then end it (killed after CLOSE_TIMEOUT_S)."""
        self._closing = True
        task, proc = self._task, self._proc
        if task is None:
            return
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            proc = self._proc
            if proc is not None and proc.returncode is None:
                proc.kill()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the process -----------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = RESTART_MIN_S
        while not self._closing:
            started = time.monotonic()
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "edge.sales.writer_proc", str(self.db.path), str(os.getpid()),
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_child_env(),
                    limit=READ_LIMIT)
            except OSError:
                log.exception("could not start the sale writer process; sales use the hub's writer")
            else:
                self._proc = proc
                if self._closing and proc.stdin is not None:  # the hub began closing while it started
                    proc.stdin.close()
                starting = asyncio.create_task(self._kill_unless_ready(proc))
                try:
                    await self._read(proc)
                finally:
                    starting.cancel()
                    self._ready, self.pid, self._proc = False, None, None
                    if proc.returncode is None and not self._closing:
                        proc.kill()
                    if proc.returncode is None:
                        with contextlib.suppress(asyncio.CancelledError):
                            await proc.wait()
                    for fut, _ in self._pending.values():  # sent, not answered: the hub's writer finishes them
                        if not fut.done():
                            fut.set_exception(_WriterGone())
                if self._closing:
                    return
                self.restarts += 1
                log.warning("the sale writer process (pid %d) exited with %s; starting it again",
                            proc.pid, proc.returncode)
            delay = delay * 2 if time.monotonic() - started < RESTART_MAX_S else RESTART_MIN_S
            delay = min(delay, RESTART_MAX_S)
            await asyncio.sleep(delay)

    async def _kill_unless_ready(self, proc: asyncio.subprocess.Process) -> None:
        """A process hung before it said it is ready gets no sale (the hub's writer takes them), so the stall
        check never sees it: it is killed after START_TIMEOUT_S and started again."""
        await asyncio.sleep(START_TIMEOUT_S)
        if not self._ready and self._proc is proc and proc.returncode is None and not self._closing:
            log.error("the sale writer process (pid %d) has not started in %.0f s; killing it", proc.pid,
                      START_TIMEOUT_S)
            proc.kill()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Hand each reply to its sale until the process's stdout ends."""
        out = proc.stdout
        assert out is not None
        while True:
            try:
                header = await out.readexactly(4)
                payload = await out.readexactly(int.from_bytes(header, "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            reply = wire.reply_decoder.decode(payload)
            if reply.kind == wire.READY:
                self._ready, self.pid = True, proc.pid
                continue
            waiting = self._pending.get(reply.job_id)
            if waiting is not None and not waiting[0].done():
                waiting[0].set_result(reply)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SD_ENV}
    # The process imports this hub's own `edge` package (a checkout run with -m, as the tests do, too).
    root = str(Path(edge.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@contextlib.asynccontextmanager
async def sale_writer_lifespan(app: Any) -> AsyncIterator[None]:
    """The hub's sale writer for as long as the app runs (config `sale_writer`; default "process")."""
    hub = app.state.hub
    if hub.config.sale_writer != "process":
        yield
        return
    writer = SaleWriter(hub.db)
    hub.sale_writer = writer
    try:
        yield
    finally:
        hub.sale_writer = None
        await writer.close()
