"""A real `backroom hq serve` (SQLite and PostgreSQL) and real hubs with `--hq`: pairing, prices live in
lookups, online spends authorised by HQ, wrong keys refused, faults between hub and HQ, kill -9 of
either side, and two stores spending one member's balance while cut off."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec
import sync_support
from sync_support import NO_POLICY, FaultProxy, HqServer, SyncHub, cli, sell, wait_until

from hq_sync.protocol import DeltaTender, SaleDelta, delta_encoder
from hq_sync.wire import Batch, OutRow, batch_encoder, compress, new_key, sign_request

pg_cluster = sync_support.pg_cluster  # fixtures shared by the sync tests
hq_db_url = sync_support.hq_db_url

FAST = {"idle_s": "0.05", "long_poll_s": "5", "digest_interval_s": "1", "backoff_max_s": "0.5"}


def _paired(hub: SyncHub) -> bool:
    return bool(hub.query("SELECT count(*) FROM sync_state")[0][0])


def _synced(hq: HqServer, hub: SyncHub) -> bool:
    head = hub.query("SELECT coalesce(max(seq), 0) FROM outbox")[0][0]
    acked = hub.query("SELECT acked_seq FROM sync_state")
    return bool(acked) and acked[0][0] == head and hq.query(
        "SELECT acked_seq FROM hq_stores WHERE store_id = ?", ("demo-001",))[0][0] == head


def test_a_demo_store_pairs_by_itself_and_hq_prices_are_live_in_lookups_within_2_s(
        hq_db_url: str, tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path, escrow=NO_POLICY).start()  # escrow counted exactly
    hub = SyncHub(tmp_path, hq.url, **FAST).start()
    try:
        wait_until(lambda: _paired(hub), 15, what="demo pairing")
        till = hub.till()
        admin = hq.admin()
        wait_until(lambda: hub.query("SELECT feed_cursor FROM sync_state")[0][0] > 0, 15, what="opening feed")
        start = time.monotonic()
        assert admin.put("/hq/v1/prices/SKU00001", json={"price": 1777}).status_code == 200
        wait_until(lambda: till.get("/api/v1/items/lookup", params={"barcode": "2112345015002"}).json()["price"]
                   == 1777, 2.0, interval=0.02, what="the HQ price in the hub's lookup")
        assert time.monotonic() - start < 2.0
        promo = {"rule_id": "hq-weekend", "name": "周末95折", "name_en": "Weekend 5% off",
                 "items": {"categories": ["snacks-nuts"]}, "benefit": {"kind": "percent_off", "discount_bp": 500}}
        created = admin.post("/hq/v1/promotions", json=promo)
        assert created.status_code == 201, created.text
        wait_until(lambda: any(p["rule_id"] == "hq-weekend"
                               for p in till.get("/api/v1/promotions").json()["promotions"]), 5, what="promotion")

        # An online stored-value spend: the store holds no escrow for M000001 (HQ's ledger is the truth),
        # so HQ grants what the spend needs; after the push HQ's balance shows the spend.
        held = till.get("/api/v1/members/M000001").json()  # chain-wide 20000; this store holds none of it
        assert (held["balance"], held["spendable_here"]) == (20000, {"balance": 0, "points": 0})
        sale = sell(till, 2, "M000001", tenders=None)
        assert sale.status_code == 201, sale.text
        total = sale.json()["total"]
        q = till.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": "M000001"}).json()
        paid = till.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}],
            "member_id": "M000001", "tenders": [{"method": "stored_value", "amount": q["total"]}]})
        assert paid.status_code == 201, paid.text
        wait_until(lambda: _synced(hq, hub), 10, what="push")
        member = admin.get("/hq/v1/members/M000001").json()
        assert member["balance"] == 20000 - q["total"]
        stores = {s["store_id"]: s for s in admin.get("/hq/v1/stores").json()["stores"]}
        assert (stores["demo-001"]["sales"], stores["demo-001"]["lag"]) == (2, 0)
        assert total > 0
        # The store's own view of the same: nothing queued, HQ has acknowledged the outbox head.
        token = httpx.post(hub.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"})
        status = httpx.get(hub.url + "/api/v1/sync", headers={"Authorization": f"Bearer {token.json()['token']}"})
        assert status.status_code == 200, status.text
        view = status.json()
        assert (view["paired"], view["store_id"], view["queued"], view["alerts"]) == (True, "demo-001", 0, [])
        assert view["acked_seq"] == view["outbox_head"] == hub.query("SELECT max(seq) FROM outbox")[0][0]
        assert view["feed_cursor"] > 0 and view["last_push_at"] is not None
        assert till.get("/api/v1/sync").status_code == 403  # a cashier does not see sync state
    finally:
        hub.stop()
        hq.stop()


def test_pairing_with_a_one_time_code_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "hq.sqlite3")
    hq = HqServer(db, tmp_path, demo=False).start()
    hub = SyncHub(tmp_path, None, store="store-042")
    try:
        code = cli("hq", "pair-code", "--store", "store-042", "--db", db)
        assert code.returncode == 0, code.stderr
        wrong = cli("pair", "--hq", hq.url, "--code", "ABCD-EFGH", "--data", str(hub.data_dir))
        assert wrong.returncode == 1 and "bad_code" not in wrong.stdout and "refused" in wrong.stderr
        done = cli("pair", "--hq", hq.url, "--code", code.stdout.strip(), "--data", str(hub.data_dir))
        assert done.returncode == 0, done.stderr
        assert '"store_id": "store-042"' in done.stdout
        again = cli("pair", "--hq", hq.url, "--code", code.stdout.strip(), "--data", str(hub.data_dir))
        assert again.returncode == 1 and "already paired" in again.stderr
        assert hub.query("SELECT store_id, acked_seq FROM sync_state") == [("store-042", 0)]
    finally:
        hq.stop()


def test_a_batch_signed_by_another_key_is_refused(hq_db_url: str, tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path).start()
    hub = SyncHub(tmp_path, hq.url, **FAST).start()
    try:
        wait_until(lambda: _paired(hub), 15, what="demo pairing")
        delta = SaleDelta(sale_id=str(uuid.uuid4()), receipt_no="X-1", till_id="T1", user_id="U", at="2026-05-01T10:00",
                          lines=[], tenders=[DeltaTender("cash", 100)], subtotal=100, discount=0, total=100, tax=0,
                          change=0, journal_seq=1)
        row = OutRow(1, "sale", delta.sale_id, delta.at, msgspec.Raw(delta_encoder.encode(delta)))
        batch = Batch("demo-001", 1, [row])
        body, encoding = compress(batch_encoder.encode(batch))
        impostor, _ = new_key()
        headers = {**sign_request(impostor, "demo-001", "POST", "/hq/v1/sync/batches", int(time.time()), body),
                   "Content-Encoding": encoding}
        r = httpx.post(hq.url + "/hq/v1/sync/batches", content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "bad_signature")
        unsigned = httpx.post(hq.url + "/hq/v1/sync/batches", content=body, headers={"Content-Encoding": encoding})
        assert (unsigned.status_code, unsigned.json()["code"]) == (401, "unsigned")
        assert hq.query("SELECT count(*) FROM hq_sales") == [(0,)]
    finally:
        hub.stop()
        hq.stop()


def _hq_digest(hq: HqServer) -> dict[tuple[str, str], tuple[int, int]]:
    rows = hq.query("SELECT day, kind, count(*), sum(amount) FROM hq_deltas WHERE store_id = 'demo-001' "
                    "AND status = 'applied' GROUP BY day, kind")
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}


def _hub_digest(hub: SyncHub) -> dict[tuple[str, str], tuple[int, int]]:
    from edge.storage.db import connect
    from hq_sync.hub_state import digests

    conn = connect(hub.data_dir / "hub.sqlite3", readonly=True)
    try:
        return {(r.day, r.kind): (r.count, r.total) for r in digests(conn, 10**9)}
    finally:
        conn.close()


def test_faults_and_kill_9_on_both_sides_leave_every_sale_at_hq_exactly_once(hq_db_url: str,
                                                                           tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path).start()
    proxy = FaultProxy(hq.port, seed=5)
    hub = SyncHub(tmp_path, proxy.url, batch_rows="7", **FAST).start()
    sold: list[str] = []

    def burst(n: int) -> None:
        till = hub.till()
        for _ in range(n):
            r = sell(till)
            assert r.status_code == 201, r.text
            sold.append(r.json()["sale_id"])

    try:
        proxy.mode = "clean"
        wait_until(lambda: _paired(hub), 15, what="demo pairing")
        proxy.mode = "faulty"
        burst(30)
        wait_until(lambda: 0 < hub.query("SELECT acked_seq FROM sync_state")[0][0], 20, what="some progress")
        hq.kill()  # kill -9 HQ while batches are in flight
        burst(10)
        hq.start()
        wait_until(lambda: hq.query("SELECT acked_seq FROM hq_stores WHERE store_id = 'demo-001'")[0][0] >= 14, 30,
                   what="progress after HQ came back")
        burst(15)
        hub.kill()  # kill -9 the hub mid-batch
        hub.start()
        burst(10)
        wait_until(lambda: sum(proxy.seen[f] for f in ("drop", "drop_response", "duplicate", "cut_response",
                                                       "cut_request", "reorder", "delay")) >= 12, 30,
                   what="faults to happen")
        proxy.mode = "clean"
        wait_until(lambda: _synced(hq, hub), 60, what="HQ to catch up")
        at_hq = [r[0] for r in hq.query("SELECT sale_id FROM hq_sales WHERE store_id = 'demo-001'")]
        assert len(sold) == 65
        assert Counter(at_hq) == Counter(sold)  # every sale, each exactly once
        assert _hq_digest(hq) == _hub_digest(hub)
        wait_until(lambda: hq.query("SELECT count(*) FROM hq_digest_checks WHERE store_id = 'demo-001' "
                                    "AND status = 'match'")[0][0] >= 1, 10, what="a digest check")
        assert hq.query("SELECT count(*) FROM hq_digest_checks WHERE status = 'mismatch'") == [(0,)]
        assert hq.query("SELECT count(*) FROM hq_deltas WHERE status = 'quarantined'") == [(0,)]
    finally:
        hub.stop()
        proxy.close()
        hq.stop()


def _balance(hub: SyncHub, member_id: str) -> int:
    return int(hub.query("SELECT balance FROM member_balance WHERE member_id = ?", (member_id,))[0][0])


def _spend(till: httpx.Client, amount: int, member_id: str = "M000001") -> httpx.Response:
    """One item paid with up to `amount` fen of stored value, the rest in cash."""
    q = till.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": member_id}).json()
    body: dict[str, Any] = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}],
                            "member_id": member_id}
    value = min(amount, q["total"])
    body["tenders"] = [{"method": "stored_value", "amount": value}]
    if q["total"] > value:
        body["tenders"].append({"method": "cash", "amount": q["total"] - value})
    return till.post("/api/v1/sales", json=body)


def test_two_stores_cut_off_cannot_spend_one_members_balance_beyond_their_escrow(hq_db_url: str,
                                                                                 tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path, escrow=NO_POLICY).start()  # escrow counted exactly
    up_a, up_b = FaultProxy(hq.port), FaultProxy(hq.port)
    up_a.mode = up_b.mode = "clean"
    a = SyncHub(tmp_path, up_a.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, up_b.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: _paired(a) and _paired(b), 15, what="both stores paired")
        admin = hq.admin()
        # The member's balance is 20000 at HQ; HQ grants each store 600 to spend without asking.
        for store in ("demo-001", "demo-002"):
            r = admin.post("/hq/v1/members/M000001/escrow", json={"store_id": store, "amount": 600})
            assert r.status_code == 201, r.text
        wait_until(lambda: _balance(a, "M000001") == 600 and _balance(b, "M000001") == 600, 10, what="grants")
        up_a.mode = up_b.mode = "down"  # the partition
        till_a, till_b = a.till(), b.till()
        time.sleep(0.5)
        price = till_a.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}],
                                                   "member_id": "M000001"}).json()["total"]
        spent: list[int] = []
        for till, hub in ((till_a, a), (till_b, b)):
            while True:
                r = _spend(till, price)
                if r.status_code != 201:
                    break
                spent.append(price)
            # Cut off from HQ, this store's escrow is the limit, and the refusal says so.
            assert (r.status_code, r.json()["code"]) == (402, "offline_limit")
            assert r.json()["available_here"] == _balance(hub, "M000001") < price
        assert sum(spent) <= 1200
        topup = till_a.post("/api/v1/members/M000001/topups", json={"topup_id": str(uuid.uuid4()), "amount": 5000,
                                                                     "method": "cash"})
        assert topup.status_code in (200, 201), topup.text
        r = _spend(till_a, price)  # a top-up at this store is spendable here at once, still offline
        assert r.status_code == 201, r.text
        spent.append(price)
        up_a.mode = up_b.mode = "clean"  # heal
        wait_until(lambda: all(h.query("SELECT acked_seq FROM sync_state")[0][0]
                               == h.query("SELECT max(seq) FROM outbox")[0][0] for h in (a, b)), 20, what="healing")
        member = admin.get("/hq/v1/members/M000001").json()
        assert member["balance"] == 20000 + 5000 - sum(spent)
        assert member["balance"] >= 0 and member["unallocated_balance"] >= 0
        ledger = hq.query("SELECT coalesce(sum(delta), 0) FROM hq_member_ledger WHERE member_id = 'M000001' "
                          "AND ledger = 'value'")[0][0]
        assert ledger == member["balance"]
        held = {s: h["value"] for s, h in member["escrow"].items()}
        assert held == {"demo-001": _balance(a, "M000001"), "demo-002": _balance(b, "M000001")}
        assert hq.query("SELECT count(*) FROM hq_deltas WHERE status = 'quarantined'") == [(0,)]
    finally:
        a.stop()
        b.stop()
        up_a.close()
        up_b.close()
        hq.stop()
