"""The serving side at chain scale (docs/hq-serving.md): fan-out from memory, and batches under admission.

A real `hq serve --workers 2` on a real PostgreSQL, with a feed tail of 4 entries, a re-check longer than
any poll, and one batch at a time per worker. This test plays a third worker: it appends to the feed from
its own connection and says so on the bus (`NOTIFY backroom_hq`), as a worker does after its sequencer
numbers entries. Stores read the feed as hubs do (signed long-polls, every entry's signature checked). A
woken long-poll must be answered from its worker's tail (the `x-backroom-feed-source` header says where a
page came from) with exactly the entries for its store, and a cursor older than the tail must still get
every entry, in order, from the database. Batches fired all at once, duplicates among them, wait for their
turn and apply exactly once; one that does not decode is a 400 from its thread.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_support import HqServer, PgCluster, ProtocolStore, entry_name, hq_database, pg_cluster, reclaim_named  # noqa: F401 -- pg_cluster is a fixture

from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta
from hq_sync.server.service.feed import append_feed_many
from hq_sync.server.storage.db import PostgresDb
from hq_sync.wire import (
    FeedBody,
    FeedEntry,
    PriceChange,
)

AT = "2026-12-03T08:00:00.000+08:00"


class Store(ProtocolStore):
    def __init__(self, hq: HqServer) -> None:
        super().__init__(f"tail-{uuid.uuid4().hex[:6]}")
        self.join(hq)

    def poll(self, wait: float) -> tuple[list[FeedEntry], str]:
        """One long-poll: its entries (checked, the cursor moved) and where HQ took the page from."""
        entries, answer = self.feed_page(self.url, wait)
        return entries, answer.headers["x-backroom-feed-source"]


@pytest.fixture(scope="module")
def hq(pg_cluster: PgCluster) -> Iterator[tuple[HqServer, PostgresDb, bytes]]:  # noqa: F811
    root = Path(tempfile.mkdtemp(prefix="hq-feed-tail-"))
    server = HqServer(pg_cluster.url(), root)
    server.args += ["--workers", "2"]
    server.env["BACKROOM_HQ_FEED_RECHECK_S"] = "120"  # only a wake-up ends a long-poll early
    server.env["BACKROOM_HQ_FEED_TAIL"] = "4"
    server.env["BACKROOM_HQ_BATCH_THREADS"] = "1"  # admission: one batch at a time per worker, the rest wait
    server.start(90)
    try:
        with hq_database(server, 2) as (db, key):
            yield server, db, key
    finally:
        server.stop()


def _append_elsewhere(db: PostgresDb, key: bytes, entries: list[tuple[str, FeedBody]]) -> list[int]:
    """What another worker does: number and append in one transaction, then wake every worker on the bus."""
    with db.write() as tx:
        seqs = append_feed_many(tx, key, entries, AT)
        tx.run("SELECT pg_notify('backroom_hq', ?)", (json.dumps({"w": 0, "k": "feed"}),))
    return seqs


def _parked(stores: list[Store], pool: concurrent.futures.ThreadPoolExecutor, settle_s: float
            ) -> list[concurrent.futures.Future[tuple[list[FeedEntry], str]]]:
    held = [pool.submit(s.poll, 40) for s in stores]
    time.sleep(settle_s)  # each poll has read the database once and parked (a late one reads the entries there)
    return held


def test_a_woken_long_poll_is_answered_from_the_tail_with_its_own_entries(
        hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    server, db, key = hq
    x, y, z = Store(server), Store(server), Store(server)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for settle_s in (1.0, 2.0, 4.0):  # until every poll had parked before the append
            held = _parked([x, y, z], pool, settle_s)
            seqs = _append_elsewhere(db, key, [(x.store_id, reclaim_named("for-x")),
                                               (z.store_id, reclaim_named("for-z"))])
            got_x, got_z = held[0].result(timeout=60), held[2].result(timeout=60)
            assert [(e.seq, entry_name(e)) for e in got_x[0]] == [(seqs[0], "for-x")]
            assert [(e.seq, entry_name(e)) for e in got_z[0]] == [(seqs[1], "for-z")]
            time.sleep(0.5)
            assert not held[1].done()  # y's feed did not move: y's poll was not woken
            [star] = _append_elsewhere(db, key, [("*", PriceChange(prices=[("SKU00027", 4321)]))])
            got_y = held[1].result(timeout=60)
            assert [(e.seq, entry_name(e)) for e in got_y[0]] == [(star, "prices")]
            for s in (x, z):
                assert [e.seq for e in s.poll(5)[0]] == [star]
            if {got_x[1], got_y[1], got_z[1]} == {"memory"}:
                break
        else:
            pytest.fail("no woken long-poll was answered from the feed tail")


def test_a_cursor_older_than_the_tail_gets_every_entry_in_order(hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    server, db, key = hq
    w, v = Store(server), Store(server)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = _parked([w, v], pool, 1.0)
        names = [f"w-{n}" for n in range(10)]  # more than the tail holds (4), in one wake-up
        seqs = _append_elsewhere(db, key, [(w.store_id, reclaim_named(n)) for n in names]
                                 + [(v.store_id, reclaim_named("v-0"))])
        entries, source = held[0].result(timeout=60)
        assert [(e.seq, entry_name(e)) for e in entries] == list(zip(seqs[:10], names, strict=True))
        assert source == "database"  # its cursor was below the tail's floor
        assert [entry_name(e) for e in held[1].result(timeout=60)[0]] == ["v-0"]
        for settle_s in (1.0, 2.0, 4.0):  # v's cursor is now inside the tail: memory again
            [again] = _parked([v], pool, settle_s)
            [seq] = _append_elsewhere(db, key, [(v.store_id, reclaim_named(f"v-{settle_s}"))])
            entries, source = again.result(timeout=60)
            assert [(e.seq, entry_name(e)) for e in entries] == [(seq, f"v-{settle_s}")]
            if source == "memory":
                break
        else:
            pytest.fail("a cursor inside the tail was not answered from it")


def test_a_first_look_sees_what_committed_before_it_without_a_wake_up(hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    """A poll's first look at the tail waits for one take-in that begins after it arrived: an entry committed
    just before the poll, with no wake-up sent (and no re-check for 120 s), is in its answer at once."""
    server, db, key = hq
    s = Store(server)
    for n in range(8):  # until the worker that takes the poll knows the store's head (a database read taught it)
        with db.write() as tx:  # numbered and committed, but no NOTIFY: no worker's tail has it yet
            [seq] = append_feed_many(tx, key, [(s.store_id, reclaim_named(f"quiet-{n}"))], AT)
        entries, source = s.poll(40)
        assert [(e.seq, entry_name(e)) for e in entries] == [(seq, f"quiet-{n}")]
        if source == "memory":
            break
    else:
        pytest.fail("a first look was never answered from the tail")


def _sales(store: Store, n: int) -> list[Any]:
    out = []
    for i in range(n):
        line = DeltaLine(1, "SKU00027", 1, 990, 990, 0, 990, 81)
        out.append(SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"{store.store_id}-{i}", till_id="T1",
                             user_id="U-cashier", at="2026-05-01T10:00:00.000+08:00", lines=[line],
                             tenders=[DeltaTender("cash", 990)], subtotal=990, discount=0, total=990, tax=81,
                             change=0, journal_seq=i + 1))
    return out


def test_batches_waiting_for_their_turn_apply_exactly_once(hq: tuple[HqServer, PostgresDb, bytes]) -> None:
    server, _, _ = hq
    stores = [Store(server) for _ in range(3)]
    expected: dict[str, set[str]] = {}
    sent: dict[str, list[tuple[bytes, str]]] = {}
    jobs: list[tuple[Store, tuple[bytes, str]]] = []
    for store in stores:
        sales = _sales(store, 40)
        expected[store.store_id] = {s.sale_id for s in sales}
        sent[store.store_id] = bodies = [store.batch(sales[i:i + 10]) for i in range(0, 40, 10)]
        jobs += [(store, body) for body in bodies for _ in range(2)]  # every batch twice, all at once
    jobs.append((stores[0], (b"not a batch", "identity")))
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: job[0].send(server.url, job[1]), jobs))
    assert answers[-1].status_code == 400 and answers[-1].json()["code"] == "bad_batch"
    for r in answers[:-1]:
        assert r.status_code == 200, r.text
        assert not r.json()["quarantined"]
    for store in stores:  # then as the agent does: everything not acknowledged goes again, in order
        again = [store.send(server.url, body) for body in sent[store.store_id]]
        answers += again
        assert again[-1].json()["acked"] == 40
        rows = server.query("SELECT sale_id FROM hq_sales WHERE store_id = ?", (store.store_id,))
        assert sorted(r[0] for r in rows) == sorted(expected[store.store_id])  # each sale once
        assert server.query("SELECT sales, acked_seq FROM hq_stores WHERE store_id = ?",
                            (store.store_id,)) == [(40, 40)]
    assert sum(r.json()["applied"] for r in answers if r.status_code == 200) == 120  # each sale applied once
