"""The hub's SQLite database: one writer thread with group commit, readers on their own connections.

Every write is a function `fn(conn) -> T` handed to the writer. The writer takes whatever is queued
(up to `max_batch`), runs the functions in one `BEGIN IMMEDIATE` transaction and commits once with
`synchronous=FULL`. A function that raises leaves nothing it wrote; its caller gets the exception and
the others of the batch are committed as if it had not been there. Callers are answered only after
the COMMIT returned, so an acknowledged write is on disk (group commit: many sales share one fsync,
none is acknowledged early).

How a failing write is undone depends on the batch (docs/performance.md, "Third round"):
- a batch of one write runs without a savepoint: if it raises, the transaction is rolled back;
- a batch whose writes were all submitted `replayable=True` (a function of the database alone, with
  no effect outside it: a sale) runs without savepoints; if one raises, the transaction is rolled
  back and the batch is run again, each write in its own SAVEPOINT as below (the writes before the
  failing one run twice; only the second run is committed);
- any other batch runs each write inside its own SAVEPOINT, and a write that raises rolls back only
  its savepoint.
A savepoint is not free: SQLite copies every page a write first touches into the statement journal
(some forty pages a sale), which cost about a fifth of the writer's CPU per sale.

`Writer` is that writer alone (the queue, the thread, the batches); `Database` is a `Writer` plus the
migrations and the read connections. The hub's sale-writer process (edge/sales/writer_proc.py) runs a
`Writer` of its own on the same file, so two writers may write it: each holds an exclusive `flock` on
`<db>.write-lock` from before its `BEGIN IMMEDIATE` until after its COMMIT, and the other waits in
the kernel for exactly that long instead of in SQLite's busy handler (which sleeps 1, 2, 5, 10... ms).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge.errors import storage_failure
from edge.members import pii
from edge.storage.migrations import apply_migrations

if TYPE_CHECKING:
    import asyncio
else:  # the sale-writer process, which has no event loop, does without it (8 MB resident)
    from edge.lazy_import import LazyModule

    asyncio = LazyModule("asyncio")

T = TypeVar("T")
log = logging.getLogger(__name__)

# A sale runs some 70 statements of a few dozen distinct texts; the default cache of 128 prepared
# statements is shared with lookups, promotions and sync, so keep more of them prepared.
_STATEMENT_CACHE = 1024

# 4,000 pages of 4 KiB: the WAL grows to about 16 MB between checkpoints (docs/performance.md).
WAL_AUTOCHECKPOINT = 4000

WriteFn = Callable[[sqlite3.Connection], Any]
_STOP = object()


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every hub connection uses."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
            cached_statements=_STATEMENT_CACHE,
        )
    else:
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, cached_statements=_STATEMENT_CACHE
        )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # Deleted and overwritten content is zeroed, so an erased member leaves nothing in free pages.
        conn.execute("PRAGMA secure_delete = ON")
    # FULL: a committed sale must survive power loss, not only a process crash.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a burst of SELECTs (no await inside!) in one read transaction: one consistent snapshot,
    and one WAL read lock taken and dropped instead of one per statement (a quote of five lines runs
    some fifteen SELECTs; each on its own took and released the lock with fcntl calls). A connection
    already in a transaction is used as it is."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def _privacy_upkeep(conn: sqlite3.Connection) -> None:
    """Once after m120 sealed the members' personal data: VACUUM and truncate the WAL, so no freed page
    of the database or frame of the WAL keeps the old plaintext. Every start: re-hash the members when
    the lookup key changed (edge/members/pii.py)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        pii.ensure_hashed(conn)
        due = conn.execute("SELECT value FROM settings WHERE key = 'pii_vacuum_due'").fetchone()
        conn.execute("DELETE FROM settings WHERE key = 'pii_vacuum_due'")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if due is not None:
        conn.execute("VACUUM")
        checkpoint(conn)


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it to zero bytes (after personal data was removed)."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


class WriteLock:
    """An exclusive `flock` on `<db>.write-lock`, held around each write transaction (module docstring).
    Without the file (it could not be created: a full or read-only disk) it is a no-op, and SQLite's own
    lock and busy handler still keep the writers apart."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".write-lock")
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("no write lock file %s (%s): writers rely on SQLite's busy handler", self.path, exc)
            self._fd = None

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL until the other writer committed

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Writer:
    """The writer thread of one database file: queued writes run in group-committed batches."""

    def __init__(self, path: Path, *, max_batch: int = 64,
                 after_batch: Callable[[], None] | None = None) -> None:
        """`after_batch` runs on the writer thread after each batch's callers were answered (the sale-writer
        process sends the batch's replies with it)."""
        self.path = path
        self.max_batch = max_batch
        self._after_batch = after_batch
        self._lock = WriteLock(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._closed = False
        self.storage_failed_at: float | None = None  # time.time() of the last write the disk refused (/healthz)

    def start(self) -> None:
        self._writer.start()

    # -- writes ----------------------------------------------------------------------------------
    def submit(self, fn: Callable[[sqlite3.Connection], T], *, replayable: bool = False
               ) -> concurrent.futures.Future[T]:
        """Queue a write. `replayable`: `fn` only reads and writes the database (no effect outside
        it), so the writer may run it a second time after rolling back a batch (module docstring)."""
        if self._closed:
            raise RuntimeError("database is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, fut, replayable))
        return fut

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.submit(fn).result()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, replayable: bool = False) -> T:
        return await asyncio.wrap_future(self.submit(fn, replayable=replayable))

    def close(self) -> None:
        """Stop after the writes already queued (they are run and answered)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=10)
        self._lock.close()

    def _write_loop(self) -> None:
        conn = connect(self.path)
        # The savepoint of each write in a group keeps the pages it changed in a sub-journal; on a file
        # that is a temporary file created, written (some 40 pages a sale) and deleted per transaction.
        # In memory it costs no system calls. Durability is the WAL's: the sub-journal only serves
        # ROLLBACK TO within the open transaction.
        conn.execute("PRAGMA temp_store = MEMORY")
        # Checkpoint every WAL_AUTOCHECKPOINT pages instead of SQLite's 1,000: a page that many sales touch
        # (counters, balances, rollups, the last leaf of each table and index) is copied into the database
        # once per checkpoint, so fewer checkpoints write fewer bytes (SD wear) and cost the writer less.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                try:
                    with self._lock:
                        self._run_batch(conn, batch)
                except Exception as exc:  # noqa: BLE001 -- the writer thread must outlive a failed batch
                    log.exception("write batch failed")
                    _rollback(conn)
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(self._durable(exc))
                if self._after_batch is not None:
                    self._after_batch()
                if stop:
                    return
        finally:
            conn.close()

    def _durable(self, exc: BaseException) -> BaseException:
        err = _durable_error(exc)
        if err is not exc:
            self.storage_failed_at = time.time()
        return err

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        running = [(fn, fut, replayable) for fn, fut, replayable in batch if fut.set_running_or_notify_cancel()]
        live = [(fn, fut) for fn, fut, _ in running]
        if not live:
            return
        if (len(live) == 1 or all(replayable for _, _, replayable in running)) and self._run_plain(conn, live):
            return
        self._run_savepoints(conn, live)

    def _begin(self, conn: sqlite3.Connection, live: list[tuple[WriteFn, concurrent.futures.Future[Any]]]) -> bool:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for _, fut in live:
                fut.set_exception(self._durable(exc))
            return False
        return True

    def _commit(self, conn: sqlite3.Connection, outcomes: list[tuple[concurrent.futures.Future[Any], bool, Any]]
                ) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed, %d writes rolled back: %s", len(outcomes), exc)
            _rollback(conn)
            for fut, _, _ in outcomes:
                fut.set_exception(self._durable(exc))
            return
        for fut, ok, value in outcomes:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _run_plain(self, conn: sqlite3.Connection, live: list[tuple[WriteFn, concurrent.futures.Future[Any]]]
                   ) -> bool:
        """The batch without savepoints. False: a write of several raised and everything was rolled
        back, nobody answered; the caller runs the batch again with savepoints."""
        if not self._begin(conn, live):
            return True
        outcomes: list[tuple[concurrent.futures.Future[Any], bool, Any]] = []
        for fn, fut in live:
            try:
                result = fn(conn)
            except Exception as exc:  # noqa: BLE001 -- the caller gets it (one write) or the batch is rerun
                _rollback(conn)
                if len(live) > 1:
                    return False
                fut.set_exception(self._durable(exc))
                return True
            outcomes.append((fut, True, result))
        self._commit(conn, outcomes)
        return True

    def _run_savepoints(self, conn: sqlite3.Connection,
                        live: list[tuple[WriteFn, concurrent.futures.Future[Any]]]) -> None:
        """Each write in its own SAVEPOINT: one that raises rolls back only what it wrote."""
        if not self._begin(conn, live):
            return
        outcomes: list[tuple[concurrent.futures.Future[Any], bool, Any]] = []
        for index, (fn, fut) in enumerate(live):
            conn.execute("SAVEPOINT w")
            try:
                result = fn(conn)
            except Exception as exc:  # noqa: BLE001 -- the caller gets it; the batch goes on
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (a full disk or an I/O error does): the
                    # writes before this one are gone too, so they fail with it; the rest get a new one.
                    err = self._durable(exc)
                    log.error("write failed and rolled back %d writes of its batch: %s", len(outcomes), exc)
                    for done, _, _ in outcomes:
                        done.set_exception(err)
                    fut.set_exception(err)
                    rest = live[index + 1:]
                    if rest:
                        self._run_savepoints(conn, rest)
                    return
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                outcomes.append((fut, False, self._durable(exc)))
            else:
                conn.execute("RELEASE w")
                outcomes.append((fut, True, result))
        self._commit(conn, outcomes)


class Database(Writer):
    """Owns the database file: the writer thread and a read connection per thread."""

    def __init__(self, path: Path, *, max_batch: int = 64) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        setup = connect(path)
        apply_migrations(setup)
        _privacy_upkeep(setup)
        setup.close()
        super().__init__(path, max_batch=max_batch)
        self._local = threading.local()
        self.start()

    # -- reads -----------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (readers never block the writer in WAL mode)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def truncate_wal(self) -> None:
        """Checkpoint and truncate the WAL on a connection of its own (after personal data was erased,
        so no WAL frame keeps the old page)."""
        conn = connect(self.path)
        try:
            checkpoint(conn)
        finally:
            conn.close()

    async def run_checkpoint(self) -> None:
        await asyncio.to_thread(self.truncate_wal)

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def _durable_error(exc: BaseException) -> BaseException:
    """A write the disk refused (full, I/O error) becomes `StorageFull` (507 storage_full); others pass."""
    return storage_failure(exc) or exc


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
