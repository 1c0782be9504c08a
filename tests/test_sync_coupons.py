"""Chain coupons across stores: HQ issues them and counts their uses. A real `backroom hq serve` (SQLite,
PostgreSQL) with two real hubs (demo-001 direct, demo-002 behind a proxy that can cut it off), and HQ's
reservation logic in process."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sync_support
from sync_support import FaultProxy, HqServer, SyncHub, clean_env, wait_until

from hq_sync.protocol import DeltaTender, SaleDelta, delta_encoder
from hq_sync.server.service import coupons
from hq_sync.server.service.access import system_principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.stores import ensure_store
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, CouponReserve, OutRow

pg_cluster = sync_support.pg_cluster  # fixtures shared by the sync tests
hq_db_url = sync_support.hq_db_url

FAST = {"idle_s": "0.05", "long_poll_s": "5", "digest_interval_s": "1", "backoff_max_s": "0.5"}
LINES = [{"sku": "SKU00204", "qty": 3}]  # 5970 fen; the demo coupon rule takes 1000 off 5000


def _sale(till: httpx.Client, code: str, sale_id: str | None = None) -> httpx.Response:
    return till.post("/api/v1/sales", json={
        "sale_id": sale_id or str(uuid.uuid4()), "till_id": "T1", "lines": LINES, "coupon_codes": [code],
        "tenders": [{"method": "cash", "amount": 4970}]})


def _chain(hub: SyncHub, code: str) -> list[tuple[Any, ...]]:
    return hub.query("SELECT allocated FROM chain_coupons WHERE code = ?", (code,))


def _caught_up(hub: SyncHub) -> bool:
    return bool(hub.query("SELECT acked_seq = (SELECT coalesce(max(seq), 0) FROM outbox) FROM sync_state")[0][0])


def test_a_chain_coupon_is_used_once_across_two_stores_online_offline_and_after_healing(
        hq_db_url: str, tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path)
    hq.env = clean_env(BACKROOM_HQ_COUPON_HOLD_S="1")
    hq.start()
    up_b = FaultProxy(hq.port)
    up_b.mode = "clean"
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, up_b.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: all(h.query("SELECT count(*) FROM sync_state")[0][0] for h in (a, b)), 15, what="pairing")
        admin = hq.admin()
        for code, extra in (("CHAIN-1", {}), ("CHAIN-2", {}), ("CHAIN-B", {"store_id": "demo-002"})):
            r = admin.post("/hq/v1/coupons", json={"code": code, "rule_id": "demo-welcome-coupon", **extra})
            assert r.status_code == 201, r.text
        assert admin.post("/hq/v1/coupons", json={"code": "CHAIN-1", "rule_id": "demo-welcome-coupon"}).json()[
            "code"] == "coupon_exists"
        wait_until(lambda: _chain(a, "CHAIN-B") == [(0,)] and _chain(b, "CHAIN-B") == [(1,)], 10, what="coupon feed")
        till_a, till_b = a.till(), b.till()

        # Online: store 1 redeems it (HQ reserves the use); a retry of that sale is not a second use.
        sale_id = str(uuid.uuid4())
        first = _sale(till_a, "CHAIN-1", sale_id)
        assert first.status_code == 201, first.text
        again = _sale(till_a, "CHAIN-1", sale_id)
        assert (again.status_code, again.json()["receipt_no"]) == (201, first.json()["receipt_no"])
        assert admin.get("/hq/v1/coupons/CHAIN-1").json()["uses"] == 1
        # Store 2 has never seen that redemption locally; HQ refuses the use.
        refused = _sale(till_b, "CHAIN-1")
        assert (refused.status_code, refused.json()["code"]) == (409, "coupon_used")
        assert b.query("SELECT count(*) FROM coupon_redemptions WHERE code = 'CHAIN-1'") == [(0,)]

        # Offline: store 2 cannot redeem a chain coupon HQ did not allocate to it, but can one it holds.
        up_b.mode = "down"
        offline = _sale(till_b, "CHAIN-2")
        assert (offline.status_code, offline.json()["code"]) == (503, "coupon_needs_hq")
        held = _sale(till_b, "CHAIN-B")
        assert held.status_code == 201, held.text
        twice = _sale(till_b, "CHAIN-B")
        assert (twice.status_code, twice.json()["code"]) == (422, "coupon_used")
        # Meanwhile store 1 is online and may take CHAIN-2; CHAIN-B is store 2's.
        assert _sale(till_a, "CHAIN-2").status_code == 201
        not_here = _sale(till_a, "CHAIN-B")
        assert (not_here.status_code, not_here.json()["code"]) == (409, "coupon_used")

        up_b.mode = "clean"  # heal
        wait_until(lambda: _caught_up(a) and _caught_up(b), 20, what="healing")
        for code in ("CHAIN-1", "CHAIN-2", "CHAIN-B"):
            at_hubs = sum(h.query("SELECT count(*) FROM coupon_redemptions WHERE code = ?", (code,))[0][0]
                          for h in (a, b))
            seen = admin.get(f"/hq/v1/coupons/{code}").json()
            assert (seen["uses"], seen["redeemed"], at_hubs) == (1, 1, 1), (code, seen)
        assert hq.query("SELECT count(*) FROM hq_deltas WHERE status = 'quarantined'") == [(0,)]
    finally:
        a.stop()
        b.stop()
        up_b.close()
        hq.stop()


def _hq(tmp_path: Path) -> Any:
    db = open_db(str(tmp_path / "hq.sqlite3"))
    create_schema(db)
    with db.write() as tx:
        for store in ("S1", "S2"):
            ensure_store(tx, store)
        tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES ('r', '{}', 1, 'now')")
    coupons.create(db, system_principal(), b"\x01" * 32, coupons.CouponIn(code="C", rule_id="r", max_uses=2), "now")
    return db


def test_hq_reservations_are_idempotent_per_sale_and_lapse_once_the_store_has_passed_them(tmp_path: Path) -> None:
    db = _hq(tmp_path)
    assert coupons.reserve(db, "S1", CouponReserve("C", "sale-1"), "t")["status"] == "reserved"
    assert coupons.reserve(db, "S1", CouponReserve("C", "sale-1"), "t")["status"] == "reserved"  # a retry
    with pytest.raises(HqError) as other:
        coupons.reserve(db, "S2", CouponReserve("C", "sale-1"), "t")
    assert other.value.code == "coupon_used"
    assert coupons.reserve(db, "S2", CouponReserve("C", "sale-2"), "t")["status"] == "reserved"
    with pytest.raises(HqError) as gone:
        coupons.reserve(db, "S1", CouponReserve("C", "sale-3"), "t")
    assert (gone.value.code, gone.value.extra) == ("coupon_used", {"uses": 2})
    assert coupons.view(db, system_principal(), "C")["uses"] == 2
    # sale-2 never arrives; S2's stream is caught up (acked = head) and the hold has passed: released.
    with db.write() as tx:
        assert coupons.release_stale(tx, "S2", 10**12) == 1
        assert coupons.release_stale(tx, "S1", 0) == 0
    assert coupons.reserve(db, "S1", CouponReserve("C", "sale-3"), "t")["status"] == "reserved"
    assert [(u["sale_id"], u["status"]) for u in coupons.view(db, system_principal(), "C")["history"]] == [
        ("sale-1", "reserved"), ("sale-2", "released"), ("sale-3", "reserved")]
    # A sale arriving without a reservation is honoured only while uses remain, else refused (quarantined).
    with db.write() as tx:
        views = coupons.views(tx, ["C"])
    with pytest.raises(ValueError, match="all 2 uses are gone"):
        coupons.plan_uses("S2", "sale-4", ["C"], views)
    assert coupons.plan_uses("S1", "sale-1", ["C", "LOCAL"], views) == ["C"]


def _sale_row(seq: int, sale_id: str, codes: list[str]) -> OutRow:
    delta = SaleDelta(sale_id=sale_id, receipt_no=f"R{seq}", till_id="T1", user_id="u", at="2026-11-23T10:00:00+08:00",
                      lines=[], tenders=[DeltaTender("cash", 4970)], subtotal=5970, discount=1000, total=4970, tax=0,
                      change=0, journal_seq=seq, coupons=codes)
    return OutRow(seq, "sale", sale_id, delta.at, msgspec.Raw(delta_encoder.encode(delta)))


def test_redemptions_arriving_through_the_outbox_turn_reservations_into_uses_or_are_quarantined(
        tmp_path: Path) -> None:
    db = _hq(tmp_path)
    coupons.reserve(db, "S1", CouponReserve("C", "sale-1"), "t")
    ack = ingest(db, Batch("S1", 2, [_sale_row(1, "sale-1", ["C"]), _sale_row(2, "sale-2", ["C", "LOCAL"])]), "t")
    assert (ack.acked, ack.applied, ack.quarantined) == (2, 2, [])  # reserved, then one unreserved use left
    assert sorted((u["sale_id"], u["status"]) for u in coupons.view(db, system_principal(), "C")["history"]) == [
        ("sale-1", "redeemed"), ("sale-2", "redeemed")]
    ack = ingest(db, Batch("S2", 1, [_sale_row(1, "sale-9", ["C"])]), "t")
    assert ack.quarantined == [(1, "coupon C: redeemed without HQ's reservation and all 2 uses are gone")]
    assert coupons.view(db, system_principal(), "C")["uses"] == 2
    again = ingest(db, Batch("S1", 2, [_sale_row(2, "sale-2", ["C"])]), "t")  # a resend changes nothing
    assert (again.duplicates, coupons.view(db, system_principal(), "C")["uses"]) == (1, 2)
