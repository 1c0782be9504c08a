"""HQ as several worker processes on one PostgreSQL database (docs/hq-serving.md).

Two real HQs share one real PostgreSQL database: `a` is `hq serve --workers 2` (two workers behind one
port), `b` a third process on its own port. What one process appends, ingests or releases must reach
the others: a feed long-poll held in `a` wakes for a price set through `b` (LISTEN/NOTIFY; the feed's
periodic re-check is set longer than the poll, so only the notification can end it early); an
authorisation waiting in `a` is woken by the release `b` ingests; a store's batches fired at both at
once are applied exactly once, in order, with every rollup equal to a recount of the sales held.
`--workers` with SQLite is refused.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sync_support import HqServer, PgCluster, cli, funded_member, pg_cluster  # noqa: F401 -- pg_cluster is a fixture
from sync_support import ProtocolStore as Store

from hq_sync.protocol import EscrowReleaseDelta
from hq_sync.wire import (
    AuthorizeRequest,
    EscrowReclaim,
    PriceChange,
    feed_body_decoder,
)

AUTHORIZE_WAIT_S = 10.0


@pytest.fixture(scope="module")
def hqs(pg_cluster: PgCluster) -> Iterator[tuple[HqServer, HqServer]]:  # noqa: F811
    root = Path(tempfile.mkdtemp(prefix="hq-workers-"))
    url = pg_cluster.url()
    escrow = {"home_share_pct": "0", "shop_share_pct": "0", "authorize_wait_s": str(AUTHORIZE_WAIT_S)}
    a = HqServer(url, root, escrow=escrow)
    a.args += ["--workers", "2"]
    b = HqServer(url, root, escrow=escrow)
    for hq in (a, b):  # one database, one personal-data key file; only a wake-up ends a feed wait early
        hq.env["BACKROOM_HQ_KEY_FILE"] = str(root / "hq.pii.key")
        hq.env["BACKROOM_HQ_FEED_RECHECK_S"] = "120"
    a.start(90)
    b.start(90)
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def _sales(store: Store, n: int) -> list[Any]:
    """Sales over several days and hours, of 1-3 lines of several skus (some with a promotion's
    discount), some by a member: every rollup gets several rows to add up."""
    from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta

    out = []
    for i in range(n):
        lines = [DeltaLine(k + 1, f"SKU{27 + (i + k) % 4:05d}", 1 + k, 990, 990 * (1 + k), 100 * (i % 2),
                           990 * (1 + k) - 100 * (i % 2), 81, rules=[("P-half", 100)] if i % 2 else [])
                 for k in range(1 + i % 3)]
        total = sum(ln.net for ln in lines)
        out.append(SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"{store.store_id}-{i}", till_id="T1",
                             user_id="U-cashier", at=f"2026-05-0{1 + i % 3}T{9 + i % 4:02d}:00:00.000+08:00",
                             lines=lines, tenders=[DeltaTender("cash", total)],
                             subtotal=sum(ln.gross for ln in lines), discount=sum(ln.discount for ln in lines),
                             total=total, tax=81 * len(lines), change=0, journal_seq=i + 1))
    return out


def _rollups_match_a_recount(hq: HqServer, store_id: str) -> None:
    """What ingest added up batch by batch equals the sums over the sales and lines HQ holds."""
    q = hq.query
    assert q("SELECT day, tickets, gross, discount, net FROM hq_store_days WHERE store_id = ? ORDER BY day",
             (store_id,)) == q("""SELECT day, count(*), sum(subtotal), sum(discount), sum(total) FROM hq_sales
                                  WHERE store_id = ? GROUP BY day ORDER BY day""", (store_id,))
    assert q("""SELECT day, hour, tickets, gross, discount, net FROM hq_store_hours WHERE store_id = ?
                ORDER BY day, hour""", (store_id,)) == q(
        """SELECT day, substr(at, 12, 2), count(*), sum(subtotal), sum(discount), sum(total) FROM hq_sales
           WHERE store_id = ? GROUP BY day, substr(at, 12, 2) ORDER BY 1, 2""", (store_id,))
    assert q("""SELECT day, hour, tickets, total, member_tickets FROM hq_sales_hourly WHERE store_id = ?
                ORDER BY day, hour""", (store_id,)) == q(
        """SELECT day, CAST(substr(at, 12, 2) AS BIGINT), count(*), sum(total), count(member_id) FROM hq_sales
           WHERE store_id = ? GROUP BY 1, 2 ORDER BY 1, 2""", (store_id,))
    assert q("""SELECT day, sku, lines, qty, discount, net FROM hq_sku_days WHERE store_id = ?
                ORDER BY day, sku""", (store_id,)) == q(
        """SELECT day, sku, count(*), sum(qty), sum(discount), sum(net) FROM hq_sale_lines WHERE store_id = ?
           GROUP BY day, sku ORDER BY day, sku""", (store_id,))
    assert q("SELECT day, uses, discount, lines FROM hq_rule_days WHERE store_id = ? ORDER BY day",
             (store_id,)) == q("""SELECT day, count(DISTINCT sale_id), sum(amount), count(*) FROM hq_sale_line_rules
                                  WHERE store_id = ? GROUP BY day ORDER BY day""", (store_id,))
    tickets = q("SELECT sum(tickets) FROM hq_store_days WHERE store_id = ?", (store_id,))
    assert tickets == [(90,)]


def test_a_price_set_in_one_process_wakes_a_long_poll_held_in_another(hqs: tuple[HqServer, HqServer]) -> None:
    a, b = hqs
    store = Store(f"w-poll-{uuid.uuid4().hex[:6]}")
    store.pair(a)
    store.drain(a.url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(store.feed, a.url, 40)  # held in one of a's workers
        time.sleep(1.0)  # let the poll park (it is woken whenever it parked; a late start reads the entry at once)
        with b.admin() as admin:
            r = admin.post("/hq/v1/prices", json={"prices": [["SKU00027", 1234]]})
        assert r.status_code == 200, r.text
        seqs = r.json()["feed_seqs"]
        entries = held.result(timeout=60)
    # Not the 40 s time-out's empty page (the feed's own re-check is 120 s): the NOTIFY from b woke it.
    assert [e.seq for e in entries] == seqs
    body = feed_body_decoder.decode(entries[0].body)
    assert isinstance(body, PriceChange) and body.prices == [("SKU00027", 1234)]


def test_a_store_s_batches_at_both_processes_at_once_apply_exactly_once(hqs: tuple[HqServer, HqServer]) -> None:
    a, b = hqs
    stores = [Store(f"w-once-{n}-{uuid.uuid4().hex[:6]}") for n in range(3)]
    for store in stores:
        store.pair(b)
    jobs: list[tuple[Store, str, tuple[bytes, str]]] = []
    expected: dict[str, set[str]] = {}
    bodies: dict[str, list[tuple[bytes, str]]] = {}
    for store in stores:
        sales = _sales(store, 90)
        expected[store.store_id] = {s.sale_id for s in sales}
        bodies[store.store_id] = [store.batch(sales[i:i + 30]) for i in range(0, 90, 30)]
        # the same and the successive batches, each at both processes, all at once
        jobs += [(store, url, body) for body in bodies[store.store_id] for url in (a.url, b.url)]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: job[0].send(job[1], job[2]), jobs))
    for r in answers:
        assert r.status_code == 200, r.text
        assert 0 <= r.json()["acked"] <= 90 and not r.json()["quarantined"]
    for store in stores:  # then as the agent does: everything not acknowledged goes again, in order
        again = [store.send(a.url, body) for body in bodies[store.store_id]]
        assert all(r.status_code == 200 for r in again)
        answers += again
        assert again[-1].json()["acked"] == 90  # the ack covers every sale of every batch
        rows = a.query("SELECT sale_id FROM hq_sales WHERE store_id = ?", (store.store_id,))
        assert sorted(r[0] for r in rows) == sorted(expected[store.store_id])  # each sale once
        assert a.query("SELECT sales, acked_seq FROM hq_stores WHERE store_id = ?", (store.store_id,)) == [(90, 90)]
        deltas = a.query("SELECT count(*), count(DISTINCT seq) FROM hq_deltas WHERE store_id = ?", (store.store_id,))
        assert deltas == [(90, 90)]
        lines = a.query("SELECT count(*), count(DISTINCT sale_id || ':' || line_no) FROM hq_sale_lines "
                        "WHERE store_id = ?", (store.store_id,))
        assert lines == [(180, 180)]  # 1 + 2 + 3 lines a sale, each once
        _rollups_match_a_recount(a, store.store_id)
    assert sum(r.json()["applied"] for r in answers) == 270  # among all the answers, each sale applied once


def test_an_authorisation_waiting_in_one_process_is_woken_by_a_release_ingested_in_another(
        hqs: tuple[HqServer, HqServer]) -> None:
    a, b = hqs
    home, away = Store(f"w-home-{uuid.uuid4().hex[:6]}"), Store(f"w-away-{uuid.uuid4().hex[:6]}")
    home.pair(a)
    away.pair(a)
    with a.admin() as admin:
        member = funded_member(admin)
        free = admin.get(f"/hq/v1/members/{member}").json()["unallocated_balance"]
        assert admin.post(f"/hq/v1/members/{member}/escrow", json={"store_id": home.store_id,
                                                                    "amount": free}).status_code == 201
    home.drain(b.url)
    body = msgspec.json.encode(AuthorizeRequest(request_id=f"w-{uuid.uuid4()}", member_id=member, ledger="value",
                                                amount=500))
    target = "/hq/v1/sync/authorize"

    def authorize() -> tuple[httpx.Response, float]:
        start = time.monotonic()
        r = httpx.post(a.url + target, content=body, timeout=60,
                       headers={**away.headers("POST", target, body), "Content-Type": "application/json"})
        return r, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(authorize)  # in one of a's workers: it asks home for the money back and waits
        reclaim = None
        deadline = time.monotonic() + 30
        while reclaim is None and time.monotonic() < deadline:
            for entry in home.feed(b.url, wait=5):
                body_ = feed_body_decoder.decode(entry.body)
                if isinstance(body_, EscrowReclaim) and body_.member_id == member:
                    reclaim = body_
        assert reclaim is not None, "the home store was never asked to give the money back"
        release = EscrowReleaseDelta(request_id=reclaim.request_id, member_id=member, ledger="value",
                                     amount=reclaim.amount, at="2026-05-01T10:00:01.000+08:00")
        r = home.send(b.url, home.batch([release]))  # ingested by b
        assert r.status_code == 200 and r.json()["applied"] == 1, r.text
        answer, took = waiting.result(timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["amount"] == 500 and answer.json()["member_id"] == member
    # Woken by b's release through the bus, not by the end of its 10 s wait (after which it would grant too)
    assert took < AUTHORIZE_WAIT_S - 3, took


def test_several_workers_are_refused_with_sqlite(tmp_path: Path) -> None:
    done = cli("hq", "serve", "--db", str(tmp_path / "hq.sqlite3"), "--workers", "2", "--port", "1")
    assert done.returncode == 2
    assert "PostgreSQL" in done.stderr
