"""The feed's sequencer on PostgreSQL (docs/hq-serving.md "The feed's sequencer").

A real HQ process on a real PostgreSQL database numbers queued feed entries (its sequencer thread); this
test appends to the same database from its own connections, holds one appending transaction open while
later ones commit, and reads the feed the way a store does (a paired key, signed long-polls, every
entry's signature checked). The store's cursor must never pass the entry that commits late, and the entry
must arrive once it commits.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_support import HqServer, PgCluster, ProtocolStore, entry_name, hq_database, pg_cluster, reclaim_named  # noqa: F401 -- pg_cluster is a fixture

from hq_sync.server.service.feed import append_feed, queue_feed
from hq_sync.server.storage.db import PostgresDb
from hq_sync.wire import (
    FeedEntry,
    MembersPut,
)


class Store(ProtocolStore):
    """A paired store reading its feed by hand: every entry verified, its cursor moved."""

    def __init__(self, hq: HqServer) -> None:
        super().__init__(f"seq-{uuid.uuid4().hex[:6]}")
        self.join(hq)

    def poll(self, wait: float) -> list[FeedEntry]:
        return self.feed(self.url, wait)

    def until(self, wanted: set[str], deadline_s: float = 20) -> list[tuple[int, str]]:
        """Poll until the entries named `wanted` (a reclaim's request id, a profile's "members") have come."""
        got: list[tuple[int, str]] = []
        deadline = time.monotonic() + deadline_s
        while not wanted <= {name for _, name in got} and time.monotonic() < deadline:
            got += [(e.seq, entry_name(e)) for e in self.poll(2)]
        assert wanted <= {name for _, name in got}, (wanted, got)
        return got


@pytest.fixture(scope="module")
def hq(pg_cluster: PgCluster) -> Iterator[tuple[HqServer, PostgresDb, bytes]]:  # noqa: F811
    root = Path(tempfile.mkdtemp(prefix="hq-feed-seq-"))
    server = HqServer(pg_cluster.url(), root)
    server.env["BACKROOM_HQ_FEED_RECHECK_S"] = "120"  # only the sequencer's wake-up ends a long-poll early
    server.start(90)
    try:
        with hq_database(server, 4) as (db, key):
            yield server, db, key
    finally:
        server.stop()


def test_a_cursor_never_passes_a_queued_entry_that_commits_late(hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    server, db, key = hq
    store = Store(server)
    at = "2026-12-03T08:00:00.000+08:00"
    late = db.write()
    tx = late.__enter__()  # held open while the others commit
    try:
        queue_feed(tx, key, store.store_id, reclaim_named("late"), at)
        for n in range(3):
            with db.write() as other:
                queue_feed(other, key, store.store_id, reclaim_named(f"early-{n}"), at)
        with db.write() as other:  # a sealed kind: the sequencer opens it to sign what the store reads
            queue_feed(other, key, store.store_id, MembersPut(), at)
        early = store.until({"early-0", "early-1", "early-2", "members"})
        assert [name for _, name in early] == ["early-0", "early-1", "early-2", "members"]  # commit order
        assert store.poll(1.5) == []  # still open: invisible, and the cursor stays where it was
        assert store.cursor == early[-1][0]
        assert server.query("SELECT count(*) FROM hq_feed_pending") == [(0,)]  # the open one is not visible
    except BaseException:
        late.__exit__(None, None, None)
        raise
    late.__exit__(None, None, None)  # commits
    [(seq, name)] = store.until({"late"})
    assert seq > early[-1][0]
    assert server.query("SELECT count(*) FROM hq_feed_pending") == [(0,)]


def test_an_entry_numbered_in_its_own_transaction_holds_the_queue_back_until_it_commits(
        hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    server, db, key = hq
    store = Store(server)
    at = "2026-12-03T08:00:00.000+08:00"
    held = db.write()
    tx = held.__enter__()
    try:
        first = append_feed(tx, key, store.store_id, reclaim_named("numbered"), at)  # takes the feed counter's lock
        with db.write() as other:
            queue_feed(other, key, store.store_id, reclaim_named("queued"), at)
        assert store.poll(1.5) == []  # the sequencer waits for the counter; nothing numbered past `first`
        assert server.query("SELECT count(*) FROM hq_feed_pending") == [(1,)]
    except BaseException:
        held.__exit__(None, None, None)
        raise
    held.__exit__(None, None, None)
    got = store.until({"numbered", "queued"})
    assert got[0] == (first, "numbered") and got[1][1] == "queued" and got[1][0] > first


def test_a_numbered_append_comes_after_every_entry_queued_before_it(hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    """Whoever numbers the queued entry (the HQ's sequencer, or the append itself), it comes first: a hub
    applies HQ's changes in the order HQ made them."""
    server, db, key = hq
    store = Store(server)
    at = "2026-12-03T08:00:00.000+08:00"
    for n in range(5):
        with db.write() as tx:
            queue_feed(tx, key, store.store_id, reclaim_named(f"q-{n}"), at)
        with db.write() as tx:
            append_feed(tx, key, store.store_id, reclaim_named(f"a-{n}"), at)
    got: list[Any] = store.until({f"{k}-{n}" for k in "qa" for n in range(5)})
    assert [name for _, name in got] == [f"{k}-{n}" for n in range(5) for k in "qa"]
