"""One import as the API and the tablet run it: parse and match off the event loop (on a worker
thread with its own read connection), then record on the writer; `progress` hears each step."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.hub import Hub
from edge.payments import statements, store
from edge.payments.statements import CsvMapping
from edge.payments.store import ImportResult
from edge.stock.ledger import Actor

STEPS = 3  # parse, match, record
MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # a busy store's month of one provider; larger bills go through the CLI


async def import_bill(
    hub: Hub,
    provider: str,
    data: bytes,
    file_name: str,
    mapping: CsvMapping | None,
    actor: Actor,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import a bill; a bad file raises ApiError 422 `bad_statement` before anything is written."""
    tick = progress or (lambda done, total: None)
    tick(0, STEPS)
    statement = await asyncio.to_thread(store.parse, provider, data, mapping)
    digest = statements.content_hash(data)
    tick(1, STEPS)
    first = await asyncio.to_thread(lambda: store.already(hub.db.reader(), statement.provider, digest))
    if first is not None:
        tick(STEPS, STEPS)
        return first
    prepared = await asyncio.to_thread(lambda: store.prepare(hub.db.reader(), statement, digest, file_name))
    tick(2, STEPS)
    at = hub.clock.stamp()
    result = await hub.db.write(lambda conn: store.record(conn, prepared, actor, at))
    tick(STEPS, STEPS)
    return result
