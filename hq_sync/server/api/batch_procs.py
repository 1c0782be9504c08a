"""Store batches in processes of their own (PostgreSQL; docs/hq-serving.md "Batches in processes").

A batch is Python work between its statements: decoding, planning, building rows. On a worker's threads
it shared the worker's GIL with the event loop and the authorisations, which then waited for it at every
round trip (a 200-store sample: the loop 15-25 ms late at the median, an authorisation's two round trips
p99 176 ms). Here each HQ worker hands its batches to a few processes (`BACKROOM_HQ_BATCH_PROCS`, 2),
spawned at start, each with one database connection. They run `ingest` as the thread did. The worker
keeps the in-process signals: a batch's process returns what its ingest told them (the members it
released, who shopped, how many feed entries it queued), and the worker raises them after the commit,
as `ingest` does in-process. The process count is the worker's admission limit for batches: the rest
wait as coroutines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from collections.abc import Iterable
from typing import Any

import msgspec

from hq_sync.server.service.errors import HqError, now_text
from hq_sync.server.service.escrow_signals import EscrowEvents, ReleaseSignal
from hq_sync.server.storage.db import HqDb, PostgresDb

BATCH_PROCS = int(os.environ.get("BACKROOM_HQ_BATCH_PROCS") or 2)


class BatchOutcome(msgspec.Struct):
    """A batch's answer from its process, with what the worker's signals must hear."""

    ack: dict[str, Any] | None = None
    error: tuple[int, str, str] | None = None  # an HqError: status, code, message
    error_extra: dict[str, Any] = {}
    released: list[str] = []
    shopped: list[tuple[str, str]] = []
    fed: int = 0
    transfer: bool = False
    touched: list[str] = []


class _Released(ReleaseSignal):
    """Collects the members a batch released, for the worker to wake its authorisations with."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def notify(self, member_ids: Iterable[str]) -> None:
        self.ids.update(member_ids)


class _Process:
    """The batch process's one resource: its database connection (opened by the pool's initializer)."""

    db: HqDb | None = None


def _open(url: str) -> None:
    _Process.db = PostgresDb(url, 1)


def apply_batch(body: bytes, encoding: str | None, store_id: str) -> BatchOutcome:
    """In a batch process: decode the signed body, check its store, ingest it in one transaction."""
    from hq_sync.server.service import member_rules
    from hq_sync.server.service.ingest import ingest
    from hq_sync.wire import batch_decoder, decompress

    db = _Process.db
    assert db is not None
    try:
        try:
            batch = batch_decoder.decode(decompress(body, encoding))
        except (ValueError, msgspec.DecodeError) as exc:
            raise HqError(400, "bad_batch", f"the batch does not decode: {exc}"[:300]) from None
        if batch.store_id != store_id:
            raise HqError(403, "wrong_store", "a store may only send its own batches")
        released, events = _Released(), EscrowEvents()
        fed: list[int] = []
        ack = ingest(db, batch, now_text(), releases=released, events=events, fed=fed)
    except HqError as exc:
        return BatchOutcome(error=(exc.status, exc.code, exc.message), error_extra=exc.extra)
    shopped, _ = events.take()
    return BatchOutcome(ack=msgspec.to_builtins(ack), released=sorted(released.ids), shopped=sorted(shopped),
                        fed=sum(fed), transfer=any(row.kind.startswith("transfer_") for row in batch.rows),
                        touched=member_rules.members_of_batch(batch.rows))


def _ready() -> int:
    return os.getpid()


class BatchProcs:
    """One worker's batch processes."""

    def __init__(self, url: str, size: int = BATCH_PROCS) -> None:
        self.size = size
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=size, mp_context=multiprocessing.get_context("spawn"), initializer=_open, initargs=(url,))
        for _ in range(size):  # spawned now (each imports HQ's code), not when the first batches arrive
            self.pool.submit(_ready)

    async def apply(self, body: bytes, encoding: str | None, store_id: str) -> BatchOutcome:
        return await asyncio.get_running_loop().run_in_executor(self.pool, apply_batch, body, encoding, store_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
