"""The stores' last contact and feed cursor, flushed by each HQ worker every 10 s (docs/hq-ingest.md "The busy
hour at 1,000 stores"): one statement for every store, on a real PostgreSQL and on SQLite. On PostgreSQL a row
that a batch holds (its store's `FOR UPDATE`, until the batch commits) is left out and named, without waiting
for it; the worker keeps it for its next flush."""

from __future__ import annotations

import concurrent.futures
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sync_support import PgCluster, pg_cluster  # noqa: F401 -- pg_cluster is a fixture

from hq_sync.server.service.stores import record_contacts, record_feed_cursors
from hq_sync.server.storage.db import HqDb, open_db
from hq_sync.server.storage.schema import create_schema

STORES = ["c-1", "c-2", "c-3"]


def _db(url: str) -> HqDb:
    db = open_db(url)
    create_schema(db)
    with db.write() as tx:
        tx.many("INSERT INTO hq_stores (store_id) VALUES (?)", [(s,) for s in STORES])
    return db


@pytest.fixture(scope="module")
def pg(pg_cluster: PgCluster) -> Iterator[tuple[HqDb, str]]:  # noqa: F811
    url = pg_cluster.url()
    db = _db(url)
    try:
        yield db, url
    finally:
        db.close()


def _state(db: HqDb) -> dict[str, tuple[str | None, int]]:
    with db.read() as tx:
        return {str(s): (c, int(f)) for s, c, f in tx.all("SELECT store_id, last_contact, feed_cursor FROM hq_stores")}


def test_a_row_a_batch_holds_is_left_out_and_named_without_waiting(pg: tuple[HqDb, str]) -> None:
    db, url = pg
    with psycopg.connect(url) as batch, concurrent.futures.ThreadPoolExecutor(1) as pool:
        batch.execute("SELECT acked_seq FROM hq_stores WHERE store_id = 'c-2' FOR UPDATE")  # a batch of c-2, open
        # On another thread: if the flush waited for the batch's lock, it would not end until the batch does.
        left = pool.submit(record_contacts, db, [(s, f"2026-12-03T10:00:0{n}.000+08:00")
                                                 for n, s in enumerate(STORES)]).result(timeout=60)
        cursors_left = pool.submit(record_feed_cursors, db, [(s, 40) for s in STORES]).result(timeout=60)
        assert left == ["c-2"] and cursors_left == ["c-2"]
        batch.rollback()
    state = _state(db)
    assert state["c-1"] == ("2026-12-03T10:00:00.000+08:00", 40)
    assert state["c-3"] == ("2026-12-03T10:00:02.000+08:00", 40)
    assert state["c-2"] == (None, 0)  # left for the next flush
    assert record_contacts(db, [("c-2", "2026-12-03T10:00:09.000+08:00")]) == []
    assert record_feed_cursors(db, [("c-2", 41), ("c-1", 39)]) == []  # c-1's cursor never moves back
    state = _state(db)
    assert state["c-2"] == ("2026-12-03T10:00:09.000+08:00", 41) and state["c-1"][1] == 40


def test_sqlite_writes_every_store() -> None:
    db = _db(str(Path(tempfile.mkdtemp(prefix="hq-contacts-")) / "hq.db"))
    try:
        assert record_contacts(db, [(s, "2026-12-03T10:00:00.000+08:00") for s in STORES]) == []
        assert record_feed_cursors(db, [("c-1", 7), ("c-2", 3)]) == []
        assert record_feed_cursors(db, [("c-1", 5)]) == []
        state = _state(db)
        assert {s: c for s, (c, _) in state.items()} == {s: "2026-12-03T10:00:00.000+08:00" for s in STORES}
        assert {s: f for s, (_, f) in state.items()} == {"c-1": 7, "c-2": 3, "c-3": 0}
    finally:
        db.close()
