"""Tiers and automatic tags evaluated chain-wide at a real HQ (SQLite and PostgreSQL) and carried to a real
paired hub through the feed: a sale pushes a member over the threshold, HQ upgrades him when the batch
lands, and the hub prices his next basket at the new tier."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import sync_support
from sync_support import FAST, HqServer, SyncHub, running, wait_until

pg_cluster = sync_support.pg_cluster
hq_db_url = sync_support.hq_db_url

MEMBER = "M000004"  # regular, no manual tags
TAGGED = "M000003"  # regular, manual tag mother-baby
LINES = [{"sku": "SKU00027", "qty": 1}]


def _tiers(silver_threshold: int) -> dict[str, Any]:
    return {"tiers": [
        {"tier": "regular", "name_zh": "普通会员", "name_en": "Regular", "rank": 0, "metric": "spend", "threshold": 0},
        {"tier": "silver", "name_zh": "银卡会员", "name_en": "Silver", "discount_bp": 500, "points_multiplier_pct": 150,
         "rank": 1, "metric": "spend", "threshold": silver_threshold},
        {"tier": "gold", "name_zh": "金卡会员", "name_en": "Gold", "discount_bp": 1000, "points_multiplier_pct": 200,
         "rank": 2, "metric": "spend", "threshold": 10_000_000},
    ]}


def _sell(till: httpx.Client, member_id: str) -> int:
    total = till.post("/api/v1/quote", json={"lines": LINES, "member_id": member_id}).json()["total"]
    sale = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": LINES,
                                            "member_id": member_id, "tenders": [{"method": "cash", "amount": total}]})
    assert sale.status_code == 201, sale.text
    return int(total)


def _synced(hq: HqServer, hub: SyncHub) -> bool:
    head = hub.query("SELECT coalesce(max(seq), 0) FROM outbox")[0][0]
    return bool(hq.query("SELECT acked_seq FROM hq_stores WHERE store_id = 'demo-001'")[0][0] == head)


def test_a_sale_over_the_threshold_upgrades_at_hq_and_the_hub_prices_the_new_tier(hq_db_url: str,
                                                                                    tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path).start()
    hub = SyncHub(tmp_path, hq.url, **FAST).start()
    with running(hub, hq):
        wait_until(lambda: hub.paired() and hub.query("SELECT feed_cursor FROM sync_state")[0][0] > 0, 15,
                   what="pairing and the opening feed")
        admin, till = hq.admin(), hub.till()
        assert [(t["tier"], t["metric"], t["threshold"]) for t in admin.get("/hq/v1/tiers").json()["tiers"]] == [
            ("regular", "points", 0), ("silver", "points", 1000), ("gold", "points", 5000)]

        price = till.post("/api/v1/quote", json={"lines": LINES, "member_id": MEMBER}).json()["total"]
        put = admin.put("/hq/v1/tiers", json=_tiers(2 * price))  # silver at exactly two of these baskets
        assert put.status_code == 200, put.text
        wait_until(lambda: hub.query("SELECT metric, threshold FROM tiers WHERE tier = 'silver'")
                   == [("spend", 2 * price)], 10, what="the tier rules in the hub's feed")
        manager = httpx.post(hub.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"})
        local = httpx.put(hub.url + "/api/v1/tiers", json=_tiers(1),
                          headers={"Authorization": f"Bearer {manager.json()['token']}"})
        assert (local.status_code, local.json()["code"]) == (409, "managed_by_hq")

        assert _sell(till, MEMBER) == price
        wait_until(lambda: _synced(hq, hub), 10, what="the first sale at HQ")
        # one basket short of the threshold
        assert hq.query("SELECT tier FROM hq_members WHERE member_id = ?", (MEMBER,)) == [("regular",)]
        assert hub.query("SELECT tier FROM members WHERE member_id = ?", (MEMBER,)) == [("regular",)]

        _sell(till, MEMBER)
        wait_until(lambda: hub.query("SELECT tier FROM members WHERE member_id = ?", (MEMBER,)) == [("silver",)], 10,
                   what="the upgrade through the feed")
        assert hq.query("SELECT from_tier, to_tier, reason FROM hq_member_tier_changes WHERE member_id = ?",
                        (MEMBER,)) == [("regular", "silver", "upgrade")]
        changes = admin.get("/hq/v1/tier-changes", params={"member_id": MEMBER}).json()["changes"]
        assert [(c["from_tier"], c["to_tier"]) for c in changes] == [("regular", "silver")]
        view = admin.get(f"/hq/v1/members/{MEMBER}").json()
        assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in view["tier_history"]] == [
            ("regular", "silver", "upgrade")]
        assert view["tier"] == "silver" and view["tier_review_on"] is not None
        assert hub.query("SELECT from_tier, to_tier, reason FROM member_tier_changes WHERE member_id = ?",
                         (MEMBER,)) == [("regular", "silver", "hq")]
        quote = till.post("/api/v1/quote", json={"lines": LINES, "member_id": MEMBER}).json()
        assert [a["rule_id"] for a in quote["lines"][0]["applied"]] == ["tier:silver"]
        assert quote["total"] < price

        # Automatic tags computed at HQ reach the hub; manual tags stay as they were.
        rules = {"rules": [{"kind": "high_value", "name": "high_value", "min_spend": 2 * price, "window_days": 30}]}
        tagged = admin.put("/hq/v1/tag-rules", json=rules)
        assert tagged.status_code == 200, tagged.text
        assert admin.get("/hq/v1/tag-rules").json() == rules
        wait_until(lambda: hub.query("SELECT auto_tags FROM members WHERE member_id = ?", (MEMBER,))
                   == [('["high_value"]',)], 10, what="the automatic tag through the feed")
        assert hub.query("SELECT tags, auto_tags FROM members WHERE member_id = ?", (TAGGED,)) == [
            ('["mother-baby"]', "[]")]

        bad = [(_tiers(10**30), 400), ({"tiers": _tiers(5)["tiers"][:2]}, 422), ({"tiers": []}, 400)]
        for body, status in bad:
            resp = admin.put("/hq/v1/tiers", json=body)
            assert resp.status_code == status and "code" in resp.json(), resp.text
        assert httpx.get(hq.url + "/hq/v1/tiers").status_code == 401
        region = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": "region-east", "password": "region-demo"})
        as_region = {"Authorization": f"Bearer {region.json()['token']}"}
        assert httpx.get(hq.url + "/hq/v1/tiers", headers=as_region).status_code == 200
        denied = httpx.put(hq.url + "/hq/v1/tiers", json=_tiers(1), headers=as_region)
        assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")  # chain-wide rules are HQ's
