"""Tiers as rules and automatic tags on a standalone hub (docs/members.md), through its API: the same
evaluators HQ runs, applied at sale commit and on a rule change, on a real hub and its SQLite file."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Hub
from tests.ui_support import ui_login

MEMBER = "M000004"  # a regular demo member with no tags
TAGGED = "M000003"  # a regular demo member with the manual tag mother-baby
LINES = [{"sku": "SKU00027", "qty": 1}]


def _tiers(**silver: Any) -> dict[str, Any]:
    return {"tiers": [
        {"tier": "regular", "name_zh": "普通会员", "name_en": "Regular", "rank": 0, "metric": "spend", "threshold": 0},
        {"tier": "silver", "name_zh": "银卡会员", "name_en": "Silver", "discount_bp": 500,
         "points_multiplier_pct": 150, "rank": 1, "metric": "spend", "threshold": 100_000, **silver},
        {"tier": "gold", "name_zh": "金卡会员", "name_en": "Gold", "discount_bp": 1000, "points_multiplier_pct": 200,
         "rank": 2, "metric": "spend", "threshold": 10_000_000},
    ], "window_months": 12, "review_months": 12}


def _sell(till: httpx.Client, member_id: str) -> dict[str, Any]:
    total = till.post("/api/v1/quote", json={"lines": LINES, "member_id": member_id}).json()["total"]
    sale = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": LINES,
                                            "member_id": member_id, "tenders": [{"method": "cash", "amount": total}]})
    assert sale.status_code == 201, sale.text
    return sale.json()  # type: ignore[no-any-return]


def test_demo_tiers_read_as_points_rules(hub: Hub) -> None:
    got = hub.login("cashier").get("/api/v1/tiers")
    assert got.status_code == 200, got.text
    assert [(t["tier"], t["rank"], t["metric"], t["threshold"]) for t in got.json()["tiers"]] == [
        ("regular", 0, "points", 0), ("silver", 1, "points", 1000), ("gold", 2, "points", 5000)]
    assert (got.json()["window_months"], got.json()["review_months"]) == (12, 12)


def test_a_sale_that_reaches_the_threshold_upgrades_at_once_and_the_tier_price_applies(hub: Hub) -> None:
    manager, till = hub.login("manager"), hub.login("cashier")
    first = _sell(till, MEMBER)["total"]
    one_more = till.post("/api/v1/quote", json={"lines": LINES, "member_id": MEMBER}).json()["total"]
    # silver at exactly the two sales' spend: the first alone is one sale short
    put = manager.put("/api/v1/tiers", json=_tiers(threshold=first + one_more))
    assert put.status_code == 200, put.text
    assert hub.query("SELECT tier FROM members WHERE member_id = ?", (MEMBER,)) == [("regular",)]
    _sell(till, MEMBER)
    assert hub.query("SELECT tier FROM members WHERE member_id = ?", (MEMBER,)) == [("silver",)]
    changes = hub.login("cashier").get(f"/api/v1/members/{MEMBER}/tier-changes").json()["changes"]
    assert [(c["from_tier"], c["to_tier"], c["reason"]) for c in changes] == [("regular", "silver", "upgrade")]
    quote = till.post("/api/v1/quote", json={"lines": LINES, "member_id": MEMBER}).json()
    assert [a["rule_id"] for a in quote["lines"][0]["applied"]] == ["tier:silver"]
    member = till.get(f"/api/v1/members/{MEMBER}").json()
    assert member["tier"] == "silver" and member["tier_review_on"] is not None


def test_automatic_tags_count_for_promotions_and_search_and_manual_tags_survive(hub: Hub) -> None:
    manager, till = hub.login("manager"), hub.login("cashier")
    rules = {"rules": [{"kind": "high_value", "name": "big-spender", "min_spend": 1, "window_days": 30},
                       {"kind": "new_member", "name": "new_member", "days": 30}]}
    put = manager.put("/api/v1/tag-rules", json=rules)
    assert put.status_code == 200, put.text
    _sell(till, TAGGED)
    assert manager.get("/api/v1/tag-rules").json() == rules
    again = manager.put("/api/v1/tag-rules", json=rules)  # a recompute
    assert again.status_code == 200, again.text
    member = till.get(f"/api/v1/members/{TAGGED}").json()
    assert member["tags"] == ["mother-baby"]  # manual: untouched by the recompute
    assert member["auto_tags"] == ["big-spender", "new_member"]  # the demo members joined at seeding
    tagged = till.get("/api/v1/members", params={"tag": "big-spender"}).json()
    assert TAGGED in {m["member_id"] for m in tagged["members"]} and tagged["total"] >= 1
    assert all("****" in (m["phone"] or "****") for m in tagged["members"])  # masked for a cashier
    manual = till.get("/api/v1/members", params={"tag": "mother-baby"}).json()
    assert TAGGED in {m["member_id"] for m in manual["members"]}
    promo = {"rule_id": "test-big-spender", "name": "大客户九五折", "name_en": "Big spenders 5% off",
             "eligibility": {"member_tags": ["big-spender"]}, "benefit": {"kind": "percent_off", "discount_bp": 500}}
    assert manager.post("/api/v1/promotions", json=promo).status_code == 201
    applied = till.post("/api/v1/quote", json={"lines": LINES, "member_id": TAGGED}).json()["lines"][0]["applied"]
    assert "test-big-spender" in [a["rule_id"] for a in applied]
    other = till.post("/api/v1/quote", json={"lines": LINES, "member_id": "M000006"}).json()["lines"][0]["applied"]
    assert "test-big-spender" not in [a["rule_id"] for a in other]


def test_the_tablet_finds_members_by_tag_and_shows_the_tier_history(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    profile = tablet.get(f"/ui/members/{MEMBER}").text
    assert "等级变动记录" in profile and "达到该等级门槛" in profile and "银卡会员" in profile
    assert "自动标签" in profile and 'href="/ui/members?tag=big-spender"' in profile
    found = tablet.get("/ui/members", params={"tag": "big-spender"}).text
    assert "带有标签“big-spender”的会员" in found and f'href="/ui/members/{TAGGED}"' in found
    assert 'href="/ui/members/M000006"' not in found
    none = tablet.get("/ui/members", params={"tag": "no-such-tag"}).text
    assert "没有会员带有标签“no-such-tag”。" in none


def test_bad_rules_are_refused_with_a_code_and_change_nothing(hub: Hub) -> None:
    manager, cashier = hub.login("manager"), hub.login("cashier")
    before = manager.get("/api/v1/tiers").json()
    without_gold = _tiers()
    without_gold["tiers"] = without_gold["tiers"][:2]
    base_above_zero = _tiers()
    base_above_zero["tiers"][0]["threshold"] = 1
    cases: list[tuple[str, Any, int, str]] = [
        ("/api/v1/tiers", without_gold, 422, "bad_tiers"),
        ("/api/v1/tiers", base_above_zero, 422, "bad_tiers"),
        ("/api/v1/tiers", _tiers(threshold=10**30), 400, "invalid_field"),
        ("/api/v1/tiers", _tiers(metric="age"), 400, "invalid_field"),
        ("/api/v1/tiers", {**_tiers(), "review_months": 0}, 400, "invalid_field"),
        ("/api/v1/tiers", {"tiers": []}, 400, "invalid_field"),
        ("/api/v1/tag-rules", {"rules": [{"kind": "dormant", "name": "x", "days": 10**20}]}, 400, "invalid_field"),
        ("/api/v1/tag-rules", {"rules": [{"kind": "psychic", "name": "x"}]}, 400, "invalid_field"),
        ("/api/v1/tag-rules", {"rules": [{"kind": "dormant", "name": "x", "days": 9},
                                         {"kind": "new_member", "name": "x", "days": 9}]}, 422, "bad_tag_rules"),
    ]
    for path, body, status, code in cases:
        resp = manager.put(path, json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), (body, resp.text)
    denied = cashier.put("/api/v1/tiers", json=_tiers())
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    assert manager.get("/api/v1/tiers").json() == before
    too_big = cashier.get("/api/v1/members", params={"tag": "x", "limit": 10**30})
    assert too_big.status_code == 400, too_big.text
