"""The hub's view of its sync with HQ: queue depth, acknowledged sequence, feed cursor, alerts.

What a store manager (and later the tablet's Sync page) looks at when asking "has HQ got
everything?". Read-only; the agent in hq_sync/agent.py does the work.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
from litestar import get

from edge.hub import Hub
from hq_sync.hub_state import load_state, outbox_head


class SyncAlert(msgspec.Struct, frozen=True):
    alert_id: int
    at: str
    kind: str
    ref: str
    detail: str


class SyncStatus(msgspec.Struct, frozen=True):
    store_id: str
    paired: bool
    outbox_head: int
    acked_seq: int
    queued: int
    feed_cursor: int
    feed_head: int
    alerts: list[SyncAlert]
    hq_url: str | None = None
    paired_at: str | None = None
    last_push_at: str | None = None
    last_pull_at: str | None = None
    last_digest_at: str | None = None


@get("/api/v1/sync", opt={"permission": "sync.read"}, sync_to_thread=False)
def sync_status(hub: Hub) -> SyncStatus:
    return read_sync_status(hub.db.reader(), hub.store_id)


def read_sync_status(conn: sqlite3.Connection, store_id: str) -> SyncStatus:
    """The API's answer and the tablet's Sync page: one reading of the sync tables."""
    head = outbox_head(conn)
    state = load_state(conn)
    alerts = [SyncAlert(*row) for row in conn.execute(
        "SELECT alert_id, at, kind, ref, detail FROM sync_alerts WHERE cleared_at IS NULL ORDER BY alert_id")]
    if state is None:  # standalone: everything is queued until the store is paired
        return SyncStatus(store_id=store_id, paired=False, outbox_head=head, acked_seq=0, queued=head,
                          feed_cursor=0, feed_head=0, alerts=alerts)
    return SyncStatus(
        store_id=state.store_id, paired=True, outbox_head=head, acked_seq=state.acked_seq,
        queued=max(0, head - state.acked_seq), feed_cursor=state.feed_cursor, feed_head=state.feed_head,
        alerts=alerts, hq_url=state.hq_url, paired_at=state.paired_at, last_push_at=state.last_push_at,
        last_pull_at=state.last_pull_at, last_digest_at=state.last_digest_at,
    )


SYNC_ROUTES: list[Any] = [sync_status]
