"""The sale-writer process: `commit_sale` and its COMMIT on the second core (docs/performance.md, "Fourth
round: the second core").

The hub (edge/sales/sale_writer.py) starts `python -m edge.sales.writer_proc DB PARENT_PID` with pipes
on stdin and stdout. Each frame is a 4-byte big-endian length and a body: `SaleJob` in, as JSON (msgpack
would turn the promotion rules' datetimes into UTC timestamps, and `commit_sale` stores each applied
rule as the JSON it was given: +08:00 must stay +08:00), `SaleReply` out, as msgpack (the response
bytes as they are). The jobs go to a `Writer` (edge/storage/db.py: the same writer thread, connection
pragmas, group commit and replayable batches as the hub's own writer, and the same `<db>.write-lock`
around each transaction, so the hub's writer and this one take turns without SQLite's busy handler
sleeping). A reply is sent only after the COMMIT returned, so an acknowledged sale is durable.

The process ends when its stdin closes (the hub closed it, or the hub died: the kernel closes the
pipe) after answering what was queued, and at once when the hub dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec

from edge.errors import ApiError, StorageFull
from edge.lifeline import die_with_parent
from edge.pricing.engine import Quote
from edge.sales.checkout import Replay, commit_sale
from edge.sales.models import SaleRequest
from edge.stock.ledger import Actor
from edge.storage.db import Writer

log = logging.getLogger("edge.sales.writer_proc")

COMMITTED, REPLAY, REFUSED, STORAGE_FULL, FAILED, READY = range(6)
_HEADER = 4
MAX_FRAME = 64 * 1024 * 1024


class SaleJob(msgspec.Struct, array_like=True, frozen=True):
    """What `edge.api.routes.sell` hands to `commit_sale`, numbered by the hub."""

    job_id: int
    req: SaleRequest
    digest: str
    quote: Quote
    actor: Actor
    at: str
    today: str
    store_code: str


class SaleReply(msgspec.Struct, array_like=True, frozen=True):
    """COMMITTED/REPLAY: `body` is the response; REFUSED: an ApiError (status, code, message, extra);
    STORAGE_FULL: the disk refused (message is the cause); FAILED: anything else (message says what);
    READY (job 0): sent once, when the process takes jobs."""

    job_id: int
    kind: int
    body: bytes = b""
    status: int = 0
    code: str = ""
    message: str = ""
    extra: dict[str, Any] = {}


job_decoder = msgspec.json.Decoder(SaleJob)
job_encoder = msgspec.json.Encoder()
reply_decoder = msgspec.msgpack.Decoder(SaleReply)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(_HEADER, "big") + payload


def reply_for(job_id: int, outcome: Replay | bytes | BaseException) -> SaleReply:
    if isinstance(outcome, Replay):
        return SaleReply(job_id, REPLAY, outcome.body)
    if isinstance(outcome, bytes):
        return SaleReply(job_id, COMMITTED, outcome)
    if isinstance(outcome, StorageFull):
        return SaleReply(job_id, STORAGE_FULL, message=outcome.cause)
    if isinstance(outcome, ApiError):
        return SaleReply(job_id, REFUSED, status=outcome.status, code=outcome.code, message=outcome.message,
                         extra=outcome.extra)
    log.error("sale %d failed in the writer process", job_id, exc_info=outcome)
    return SaleReply(job_id, FAILED, message=f"{type(outcome).__name__}: {outcome}")


class _Replies:
    """Replies of a batch, sent together once the batch is over (one write, one wake-up of the hub)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()

    def add(self, reply: SaleReply) -> None:
        data = frame(self._encoder.encode(reply))
        with self._lock:
            self._pending.append(data)

    def flush(self) -> None:
        with self._lock:
            data, self._pending = b"".join(self._pending), []
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BrokenPipeError:
                return  # the hub is gone; it answers its tills itself
            view = view[written:]


def _submit(writer: Writer, replies: _Replies, job: SaleJob) -> None:
    def commit(conn: sqlite3.Connection) -> Replay | bytes:
        return commit_sale(conn, job.req, job.digest, job.quote, job.actor, job.at, job.today, job.store_code)

    def answer(fut: concurrent.futures.Future[Replay | bytes]) -> None:
        exc = fut.exception()
        replies.add(reply_for(job.job_id, exc if exc is not None else fut.result()))

    # touches nothing but the database: no savepoint (edge/storage/db.py)
    writer.submit(commit, replayable=True).add_done_callback(answer)


def serve(db_path: Path, stdin: int, stdout: int) -> None:
    replies = _Replies(stdout)
    writer = Writer(db_path, after_batch=replies.flush)
    writer.start()
    replies.add(SaleReply(0, READY))
    replies.flush()
    source = os.fdopen(stdin, "rb", buffering=256 * 1024)
    try:
        while True:
            header = source.read(_HEADER)
            if len(header) < _HEADER:
                return  # the hub closed the pipe
            size = int.from_bytes(header, "big")
            payload = source.read(size) if size <= MAX_FRAME else b""
            if len(payload) != size:
                return
            _submit(writer, replies, job_decoder.decode(payload))
    finally:
        writer.close()  # what was queued is committed and answered first
        replies.flush()


def main(argv: list[str]) -> int:
    db_path, parent = Path(argv[0]), int(argv[1])
    die_with_parent(parent)  # and if the hub goes without killing it, its closed stdin ends it too
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s sale-writer: %(message)s")
    # A Ctrl-C of the terminal, or systemd stopping the unit (it signals every process of the cgroup), is the
    # hub's to handle: the hub answers its last sales, then closes our stdin, and we end after our last COMMIT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt the replies
    serve(db_path, sys.stdin.fileno(), replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
