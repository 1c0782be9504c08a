"""A store's batch as HQ's batch lane takes it (server/api/scheduling.py): decoded, checked and applied.

This module is what a lane process imports to take batches, so it stays free of the web framework: a lane
process starts when a batch finds none idle, and its imports are that batch's wait."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from hq_sync.server.service import member_rules
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.ingest import ingest
from hq_sync.server.storage.db import HqDb
from hq_sync.wire import Ack, batch_decoder, decompress


class Heard:
    """What a committed batch tells the worker: the members whose escrow it released and (member, store) of
    its member sales. Collected where the batch ran (a lane process has no signals of its own); the worker
    passes them on."""

    def __init__(self) -> None:
        self.released: list[str] = []
        self.shopping: list[tuple[str, str]] = []

    def notify(self, member_ids: Iterable[str]) -> None:
        self.released.extend(member_ids)

    def shopped(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.shopping.extend(pairs)


def decode_and_ingest(db: HqDb, body: bytes, encoding: str | None, store_id: str,
                      at: str) -> tuple[Ack, bool, int, list[str], Heard]:
    """A verified batch body, decoded and applied (on the batch lane: a thread or a process of its own).
    Returns the ack, whether it carried a transfer step, the feed entries it caused, the members it touched
    and what it released and shopped. Decoding is CPU work too: done here, not on the event loop, where a
    thousand stores' batches arriving together held back every authorisation's and feed poll's answer."""
    try:
        batch = batch_decoder.decode(decompress(body, encoding))
    except (ValueError, msgspec.DecodeError) as exc:
        raise HqError(400, "bad_batch", f"the batch does not decode: {exc}"[:300]) from None
    if batch.store_id != store_id:
        raise HqError(403, "wrong_store", "a store may only send its own batches")
    fed: list[int] = []
    heard = Heard()
    ack = ingest(db, batch, at, releases=heard, events=heard, fed=fed)
    has_transfer = any(row.kind.startswith("transfer_") for row in batch.rows)
    return ack, has_transfer, sum(fed), member_rules.members_of_batch(batch.rows), heard
