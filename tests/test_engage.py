"""Referrals and campaigns (docs/members.md "Referrals", "Campaigns").

- The rules (edge/engage/referral_rules.py, campaign_rules.py) table-driven.
- A standalone hub (a real `backroom serve`): a referral chain A→B→C→D signed up over the till API,
  rewards at both levels and the depth limit, self-referral and cycles refused, a resent sale, a
  returned purchase taking the reward back as far as the points are still there.
- HQ in process on a real SQLite file: the same chain arriving as deltas from two stores, exactly once
  on a resent batch, a cycle refused chain-wide, a reversal whose points are partly held by a store.
- Campaigns on a fixed date (2026-05-10) at a hub's SQLite and at HQ: each kind, an idempotent rerun,
  SMS and WeChat `not_configured`.
- One chain test with a real HQ and two real hubs: a referral across the two stores decided at HQ,
  and a birthday coupon that reaches a store's inbox and is redeemed at its till.
"""

from __future__ import annotations

import csv
import datetime
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sync_support
from conftest import Hub, backroom
from sync_support import HqServer, SyncHub, wait_until
from ui_support import post_form, ui_login

from edge.engage import campaign_rules, campaigns, referral_rules
from edge.engage.channels import Outgoing, SmsChannel, WechatChannel, channels_for
from edge.engage.policy import CampaignPolicy, EngagePolicy, ReferralPolicy, SmsConfig, WechatConfig
from edge.members import pii
from edge.storage.migrations import apply_migrations
from hq_sync.protocol import DeltaTender, MemberDelta, ReferralDelta, ReturnDelta, SaleDelta, delta_encoder
from hq_sync.server.service import engage
from hq_sync.server.service import pii as hq_pii
from hq_sync.server.service.feed import hq_key
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.stores import ensure_store
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, MemberRow, OutRow

pg_cluster = sync_support.pg_cluster  # the HQ tests run on SQLite and on a real PostgreSQL
hq_db_url = sync_support.hq_db_url

DAY = datetime.date(2026, 5, 10)
AT = "2026-05-10T10:00:00+08:00"


# -- the rules ------------------------------------------------------------------------------------------------

def test_referral_codes_are_eight_unambiguous_characters_derived_from_the_member_id() -> None:
    codes = {referral_rules.code_for(f"M{n:06d}") for n in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 8 and set(c) <= set(referral_rules.ALPHABET) for c in codes)
    assert not set("01OIL") & set(referral_rules.ALPHABET)
    assert referral_rules.code_for("M000001") == referral_rules.code_for("M000001") != referral_rules.code_for(
        "M000001", 1)
    assert referral_rules.normalise_code(" qp8n-w66j ") == "QP8NW66J"


UP = {"B": "A", "C": "B", "D": "C"}  # D was referred by C, C by B, B by A


@pytest.mark.parametrize(("member", "referrer", "why"), [
    ("E", "D", None),
    ("A", "A", "self_referral"),
    ("A", "D", "referral_cycle"),  # D → C → B → A: A naming D closes a circle
    ("B", "C", "referral_cycle"),
    ("A", "E", None),
])
def test_self_referrals_and_cycles_are_refused(member: str, referrer: str, why: str | None) -> None:
    assert referral_rules.refusal(member, referrer, UP.get) == why


@pytest.mark.parametrize(("policy", "total", "expected"), [
    (ReferralPolicy(), 5000, [(1, "C", "points", 500), (2, "B", "points", 100)]),
    (ReferralPolicy(max_depth=3), 5000, [(1, "C", "points", 500), (2, "B", "points", 100), (3, "A", "points", 20)]),
    (ReferralPolicy(max_depth=1), 5000, [(1, "C", "points", 500)]),
    (ReferralPolicy(reward="coupon"), 5000, [(1, "C", "coupon", 0), (2, "B", "points", 100)]),
    (ReferralPolicy(min_purchase=10000), 5000, []),
    (ReferralPolicy(enabled=False), 5000, []),
    (ReferralPolicy(share_bp=0, max_depth=3), 5000, [(1, "C", "points", 500)]),
])
def test_a_first_purchase_rewards_the_levels_above_down_to_the_depth_limit(
        policy: ReferralPolicy, total: int, expected: list[tuple[int, str, str, int]]) -> None:
    above = referral_rules.upline("D", UP.get, policy.max_depth)
    got = referral_rules.first_purchase_rewards(policy, above, total)
    assert [(r.level, r.beneficiary, r.kind, r.points) for r in got] == expected


def test_a_reversal_takes_back_only_what_is_there() -> None:
    assert referral_rules.take_back(500, 800) == (500, 0)
    assert referral_rules.take_back(500, 200) == (200, 300)
    assert referral_rules.take_back(500, 0) == (0, 500)
    assert referral_rules.keeps_reward(ReferralPolicy(), 5000, 4999) is True
    assert referral_rules.keeps_reward(ReferralPolicy(), 5000, 5000) is False


# -- a standalone hub decides ------------------------------------------------------------------------------------

def _sale(till: httpx.Client, member_id: str, tenders: list[dict[str, Any]] | None = None,
          sale_id: str | None = None) -> httpx.Response:
    lines = [{"sku": "SKU00204", "qty": 1}]
    total = till.post("/api/v1/quote", json={"lines": lines, "member_id": member_id}).json()["total"]
    if tenders is None:
        tenders = [{"method": "cash", "amount": total}]
    else:
        tenders = tenders + [{"method": "cash", "amount": total - sum(t["amount"] for t in tenders)}]
    return till.post("/api/v1/sales", json={"sale_id": sale_id or str(uuid.uuid4()), "till_id": "T1", "lines": lines,
                                            "member_id": member_id, "tenders": tenders})


def _referral_points(hub: Hub, member_id: str) -> list[tuple[Any, ...]]:
    return hub.query("SELECT kind, delta FROM points_ledger WHERE member_id = ? AND kind LIKE 'referral%' "
                     "ORDER BY entry_id", (member_id,))


def test_a_referral_chain_at_a_standalone_hub_rewards_two_levels_once_and_a_return_takes_it_back(
        fresh_hub: Hub) -> None:
    till = fresh_hub.login("cashier")
    ids: dict[str, str] = {}
    code = None
    for n, name in enumerate("ABCD"):
        body: dict[str, Any] = {"phone": f"1390000000{n}", "name": name}
        if code is not None:
            body["referral_code"] = code.lower()[:4] + "-" + code[4:]  # as a customer might type it
        r = till.post("/api/v1/members", json=body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()["member_id"]
        code = r.json()["referral_code"]
        assert code == referral_rules.code_for(ids[name])
    a, b, c, d = (ids[x] for x in "ABCD")
    assert till.get(f"/api/v1/members/{d}").json()["referred_by"] == c

    refused = till.post(f"/api/v1/members/{a}/referrer", json={"referral_code": referral_rules.code_for(a)})
    assert (refused.status_code, refused.json()["code"]) == (422, "self_referral")
    cycle = till.post(f"/api/v1/members/{a}/referrer", json={"referral_code": referral_rules.code_for(d)})
    assert (cycle.status_code, cycle.json()["code"]) == (422, "referral_cycle")
    again = till.post(f"/api/v1/members/{b}/referrer", json={"referral_code": referral_rules.code_for(d)})
    assert again.json()["code"] in ("referral_cycle", "already_referred") and again.status_code in (409, 422)
    unknown = till.post("/api/v1/members", json={"phone": "13900000009", "referral_code": "ZZZZZZZZ"})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_referral_code")
    keys = pii.load(fresh_hub.data_dir / pii.KEY_FILE)  # phones are sealed; lookups hash (docs/privacy.md)
    assert fresh_hub.query("SELECT count(*) FROM members WHERE phone_hash = ?", (keys.phone_hash("13900000009"),)) \
        == [(0,)]
    assert till.post("/api/v1/members", json={"phone": "13900000008", "referral_code": "x" * 30}).status_code == 400

    # D's first purchase: C (level 1) gets 500 points, B (level 2) 100; A is beyond the depth limit.
    sale_id = str(uuid.uuid4())
    first = _sale(till, d, sale_id=sale_id)
    assert first.status_code == 201, first.text
    assert (_referral_points(fresh_hub, c), _referral_points(fresh_hub, b), _referral_points(fresh_hub, a)) == (
        [("referral", 500)], [("referral", 100)], [])
    # The same sale again (a till's retry) and D's second purchase give nothing more.
    assert _sale(till, d, sale_id=sale_id).json()["receipt_no"] == first.json()["receipt_no"]
    assert _sale(till, d).status_code == 201
    assert len(_referral_points(fresh_hub, c)) == 1 and len(_referral_points(fresh_hub, b)) == 1

    # C's first purchase, paid partly with 300 of his referral points: B gets 500, A 100.
    paid = _sale(till, c, tenders=[{"method": "points", "amount": 300}])
    assert paid.status_code == 201, paid.text
    assert _referral_points(fresh_hub, b) == [("referral", 100), ("referral", 500)]
    assert _referral_points(fresh_hub, a) == [("referral", 100)]
    c_points = till.get(f"/api/v1/members/{c}").json()["points"]
    assert c_points == 500 - 300 + paid.json()["points_earned"]

    # D returns the first purchase: the rewards it gave are reversed; C has spent part of his, so what is
    # left is taken and the rest recorded as the shortfall; no balance goes below zero.
    ret = till.post("/api/v1/returns", json={"return_id": str(uuid.uuid4()), "sale_id": sale_id,
                                             "lines": [{"line_no": 1, "qty": 1}]})
    assert ret.status_code == 201, ret.text
    given = till.get(f"/api/v1/members/{d}/referrals").json()
    assert given["referred_by"]["status"] == "reversed"
    assert [(r["level"], r["beneficiary_id"], r["status"], r["taken_back"], r["shortfall"])
            for r in given["rewards_given"]] == [(1, c, "reversed", c_points, 500 - c_points),
                                                 (2, b, "reversed", 100, 0)]
    assert till.get(f"/api/v1/members/{c}").json()["points"] == 0
    assert _referral_points(fresh_hub, c) == [("referral", 500), ("referral_reverse", -c_points)]
    # B's history: whom he referred, and what he earned for whose purchase.
    hist = till.get(f"/api/v1/members/{b}/referrals").json()
    assert [x["member_id"] for x in hist["referred"]] == [c]
    assert {(r["member_id"], r["level"], r["status"]) for r in hist["rewards_earned"]} == {
        (c, 1, "granted"), (d, 2, "reversed")}
    assert fresh_hub.backroom("journal", "verify", "--data", str(fresh_hub.data_dir)).returncode == 0

    # The tablet's member page shows the code, the referrer and the referrals; its sign-up form takes a code.
    tablet = ui_login(fresh_hub, "manager", lang="en")
    page = tablet.get(f"/ui/members/{b}")
    assert page.status_code == 200
    assert referral_rules.code_for(b) in page.text and f"/ui/members/{a}" in page.text and c in page.text
    assert "Reversed (purchase returned)" in page.text and "Inbox" in page.text
    signed = post_form(tablet, "/ui/members", "/ui/members", {"phone": "13900000007", "name": "E",
                                                              "referral_code": referral_rules.code_for(a)})
    assert signed.status_code == 303
    e = signed.headers["location"].rsplit("/", 1)[-1]
    assert till.get(f"/api/v1/members/{e}").json()["referred_by"] == a
    cycle_form = post_form(tablet, "/ui/members", f"/ui/members/{a}/referrer", {"referral_code": "x"})
    assert cycle_form.status_code in (404, 405)  # naming a referrer later is an API call, not a tablet form


# -- HQ decides for a chain ---------------------------------------------------------------------------------------

def _row(seq: int, delta: Any, ref: str) -> OutRow:
    tag = type(delta).__struct_config__.tag
    return OutRow(seq, str(tag), ref, AT, msgspec.Raw(delta_encoder.encode(delta)))


def _member(seq: int, member_id: str, store: str) -> OutRow:
    return _row(seq, MemberDelta(member_id=member_id, tier="regular", at=AT, home_store=store), member_id)


def _referral(seq: int, member_id: str, referrer: str) -> OutRow:
    return _row(seq, ReferralDelta(member_id=member_id, referrer_id=referrer,
                                   code=referral_rules.code_for(referrer), at=AT), member_id)


def _hq_sale(seq: int, sale_id: str, member_id: str, total: int = 5000) -> OutRow:
    return _row(seq, SaleDelta(sale_id=sale_id, receipt_no=f"R{seq}", till_id="T1", user_id="u", at=AT, lines=[],
                               tenders=[DeltaTender("cash", total)], subtotal=total, discount=0, total=total, tax=0,
                               change=0, journal_seq=seq, member_id=member_id), sale_id)


def _hq(url: str) -> Any:
    db = open_db(url)
    create_schema(db)
    hq_key(db)
    with db.write() as tx:
        tx.run("INSERT INTO hq_tiers VALUES ('regular', '普通会员', 'Regular', 0, 100, 0)")
        for store in ("S1", "S2"):
            ensure_store(tx, store)
    return db


def _points(db: Any, member_id: str) -> int:
    with db.read() as tx:
        row = tx.one("SELECT points FROM hq_members WHERE member_id = ?", (member_id,))
    return int(row[0]) if row else -1


def test_hq_grants_referral_rewards_once_chain_wide_refuses_cycles_and_reverses_on_a_return(hq_db_url: str) -> None:
    db = _hq(hq_db_url)
    # Store 1 signs up A, B (referred by A), C (by B) and D (by C); store 2 sees C and D buy.
    s1 = [_member(1, "A", "S1"), _member(2, "B", "S1"), _referral(3, "B", "A"), _member(4, "C", "S1"),
          _referral(5, "C", "B"), _member(6, "D", "S1"), _referral(7, "D", "C")]
    assert ingest(db, Batch("S1", 7, s1), AT).applied == 7
    s2 = [_hq_sale(1, "sale-c", "C"), _hq_sale(2, "sale-d", "D")]
    assert ingest(db, Batch("S2", 2, s2), AT).applied == 2
    assert {m: _points(db, m) for m in "ABCD"} == {"A": 100, "B": 600, "C": 500, "D": 0}
    # The same batch again (a lost ack), and later purchases, change nothing.
    assert ingest(db, Batch("S2", 2, s2), AT).duplicates == 2
    assert ingest(db, Batch("S2", 3, [_hq_sale(3, "sale-c2", "C")]), AT).applied == 1
    assert {m: _points(db, m) for m in "ABCD"} == {"A": 100, "B": 600, "C": 500, "D": 0}
    with db.read() as tx:
        assert tx.all("SELECT member_id, ledger, delta, kind, ref FROM hq_member_ledger ORDER BY entry_id") == [
            ("B", "points", 500, "referral", "sale-c"), ("A", "points", 100, "referral", "sale-c"),
            ("C", "points", 500, "referral", "sale-d"), ("B", "points", 100, "referral", "sale-d")]
        # one entry per change of a referral: 3 recorded, then C's and D's rewarded
        assert tx.one("SELECT count(*) FROM hq_feed WHERE kind = 'referral'") == (5,)

    # A cycle and a self-referral arriving from a store are recorded as refused, never applied.
    s1b = [_referral(8, "A", "D"), _member(9, "E", "S1"), _referral(10, "E", "E")]
    assert ingest(db, Batch("S1", 10, s1b), AT).applied == 3
    with db.read() as tx:
        assert tx.all("SELECT member_id, status, reason FROM hq_referrals WHERE status = 'refused' "
                      "ORDER BY member_id") == [("A", "refused", "referral_cycle"), ("E", "refused", "self_referral")]

    # C returns sale-c. A's 100 points are partly held by store S1 (escrow 60): HQ takes back the 40 it
    # holds unallocated and records a shortfall of 60; B gives back all 500.
    with db.write() as tx:
        tx.run("INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES ('A', 'S1', 'points', 60)")
    ret = ReturnDelta(return_id="ret-c", sale_id="sale-c", user_id="u", at=AT, lines=[],
                      refunds=[DeltaTender("cash", 5000)], refund_total=5000, journal_seq=4, member_id="C")
    assert ingest(db, Batch("S2", 4, [_row(4, ret, "ret-c")]), AT).applied == 1
    assert {m: _points(db, m) for m in "ABC"} == {"A": 60, "B": 100, "C": 500}
    view = engage.referral_view(db, "B")
    assert (view["referred_by"]["status"], view["referral_code"]) == ("pending", referral_rules.code_for("B"))
    assert [(r["member_id"], r["level"], r["status"]) for r in view["rewards_earned"]] == [
        ("C", 1, "reversed"), ("D", 2, "granted")]
    c_view = engage.referral_view(db, "C")["referred_by"]
    assert (c_view["status"], [(r[0], r[1], r[6], r[7], r[8]) for r in c_view["rewards"]]) == (
        "reversed", [(1, "B", "reversed", 500, 0), (2, "A", "reversed", 40, 60)])
    assert ingest(db, Batch("S2", 4, [_row(4, ret, "ret-c")]), AT).duplicates == 1  # resent: nothing more
    assert {m: _points(db, m) for m in "ABC"} == {"A": 60, "B": 100, "C": 500}


def test_sales_from_before_a_store_paired_were_decided_by_the_store_and_are_not_rewarded_again(
        hq_db_url: str) -> None:
    db = _hq(hq_db_url)
    with db.write() as tx:
        tx.run("UPDATE hq_stores SET base_seq = 4 WHERE store_id = 'S1'")
    rows = [_member(1, "A", "S1"), _member(2, "B", "S1"), _referral(3, "B", "A"), _hq_sale(4, "sale-b", "B"),
            _hq_sale(5, "sale-b2", "B")]
    assert ingest(db, Batch("S1", 5, rows), AT).applied == 5
    assert _points(db, "A") == 0
    with db.read() as tx:
        assert tx.one("SELECT status, decided_by, sale_id FROM hq_referrals WHERE member_id = 'B'") == (
            "rewarded", "store", "sale-b")


# -- campaigns on a fixed date ------------------------------------------------------------------------------------

def _hub_db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "hub.sqlite3", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    apply_migrations(conn)
    conn.executemany("INSERT INTO tiers (tier, name_zh, name_en, min_points, tier_rank, threshold) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     [("regular", "普通会员", "Regular", 0, 0, 0), ("silver", "银卡会员", "Silver", 1000, 1, 1000),
                      ("gold", "金卡会员", "Gold", 5000, 2, 5000)])
    members = [("M1", "1990-05-20", "2026-05-01T09:00:00+08:00"),  # birthday this month
               ("M2", "1985-11-02", "2026-01-01T09:00:00+08:00"),  # last bought 70 days ago: dormant
               ("M3", None, "2026-04-01T09:00:00+08:00"),  # moved up to gold two days ago
               ("M4", None, "2026-04-01T09:00:00+08:00"),  # moved down: no message
               ("M5", "1970-06-01", "2026-04-01T09:00:00+08:00")]  # a coupon expiring in 5 days
    for member_id, birthday, created in members:
        pii.insert_member(conn, member_id, pii.Personal(birthday=birthday), tier="regular", tags="[]",
                          home_store=None, created_at=created)
    conn.execute("""INSERT INTO sales (sale_id, receipt_no, till_id, user_id, member_id, subtotal, discount, total, tax,
                        tendered, change, points_earned, request_hash, response, journal_seq, created_at)
                    VALUES ('s1', 'R1', 'T1', 'u', 'M2', 100, 0, 100, 0, 100, 0, 0, 'h', x'00', 1,
                            '2026-03-01T10:00:00+08:00')""")
    conn.executemany("INSERT INTO member_tier_changes (member_id, from_tier, to_tier, at, reason) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [("M3", "silver", "gold", "2026-05-08T03:00:00+08:00", "spend"),
                      ("M4", "gold", "silver", "2026-05-08T03:00:00+08:00", "review"),
                      ("M3", "regular", "silver", "2026-02-01T03:00:00+08:00", "spend")])  # too old
    conn.execute("INSERT INTO promotions (rule_id, rule, active, created_at, updated_at) "
                 "VALUES ('r', '{}', 1, 'x', 'x')")
    conn.executemany("INSERT INTO coupons (code, rule_id, member_id, expires_at, created_at) "
                     "VALUES (?, 'r', ?, ?, 'x')",
                     [("SOON", "M5", "2026-05-15T00:00:00+00:00"), ("LATER", "M5", "2026-06-30T00:00:00+00:00"),
                      ("PAST", "M5", "2026-05-01T00:00:00+00:00")])
    return conn


def _outbox(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(
        "SELECT member_id, campaign, period, channel, status FROM notifications ORDER BY member_id, campaign, channel")]


def test_each_campaign_kind_on_a_fixed_date_once_per_member_and_period_through_three_channels(tmp_path: Path) -> None:
    conn = _hub_db(tmp_path)
    policy = EngagePolicy()
    done = campaigns.run(conn, DAY, AT, policy)
    assert (done.notices, done.created, done.coupons) == (
        4, {"birthday": 3, "dormant": 3, "tier_up": 3, "coupon_expiry": 3}, 1)
    outcomes = campaigns.deliver(campaigns.queued(conn), channels_for(policy))
    campaigns.record(conn, outcomes, AT)
    rows = _outbox(conn)
    assert [r[:3] for r in rows[::3]] == [("M1", "birthday", "2026-05"), ("M2", "dormant", "2026-03-01"),
                                          ("M3", "tier_up", "gold@2026-05-08T03:00:00+08:00"),
                                          ("M5", "coupon_expiry", "SOON")]
    assert {(r[3], r[4]) for r in rows} == {("inbox", "delivered"), ("sms", "not_configured"),
                                           ("wechat", "not_configured")}
    assert conn.execute("SELECT count(*) FROM notifications WHERE status = 'not_configured' AND error LIKE "
                        "'%not configured%' AND sent_at IS NULL").fetchone() == (8,)
    # The birthday coupon is a real coupon of the member, valid through the month, on a coupon-only rule.
    assert conn.execute("SELECT code, member_id, max_uses, starts_at, expires_at FROM coupons WHERE rule_id = "
                        "'campaign-birthday'").fetchall() == [
        ("BDAY-202605-M1", "M1", 1, "2026-04-30T16:00:00.000000Z", "2026-05-31T16:00:00.000000Z")]
    assert conn.execute("SELECT source FROM promotions WHERE rule_id = 'campaign-birthday'").fetchone() == ("local",)
    inbox = campaigns.inbox(conn, "M1")
    assert [(m.campaign, m.payload["coupon_code"]) for m in inbox] == [("birthday", "BDAY-202605-M1")]
    assert "1990" not in inbox[0].payload["body_zh"] + inbox[0].payload["body_en"]  # no birthday in the text

    # The same day again, and the next day: nothing new (same month, same dormant spell, same change, same coupon).
    for day in (DAY, DAY + datetime.timedelta(days=1)):
        again = campaigns.run(conn, day, AT, policy)
        assert (again.created, again.coupons) == ({}, 0)
    assert len(_outbox(conn)) == 12
    # Late June: M5's birthday month, LATER expires within 7 days, M3-M5 have gone dormant; M2 is still in
    # the spell he was told about, and M1's birthday month is over.
    june = campaigns.run(conn, datetime.date(2026, 6, 25), AT, policy)
    assert (june.created, june.coupons) == ({"birthday": 3, "coupon_expiry": 3, "dormant": 9}, 1)


def test_the_campaign_generator_follows_the_policy() -> None:
    members = [campaign_rules.MemberFacts("M1", 5, "2026-05-01"), campaign_rules.MemberFacts("M2", None, "2026-03-11")]
    changes = [campaign_rules.TierChange("M1", "silver", "gold", "2026-05-03T00:00:00+08:00", True)]
    coupons = [campaign_rules.ExpiringCoupon("C", "M1", "2026-05-17T00:00:00+00:00")]
    notices = campaign_rules.generate(DAY, CampaignPolicy(), members, changes, coupons)
    kinds = [(n.member_id, n.campaign) for n in notices]
    assert kinds == [("M1", "birthday"), ("M2", "dormant"), ("M1", "tier_up"), ("M1", "coupon_expiry")]
    off = CampaignPolicy(birthday=False, dormant_days=61, tier_up_lookback_days=6, expiry_days=6)
    assert campaign_rules.generate(DAY, off, members, changes, coupons) == []
    assert campaign_rules.birth_month("1990-05-20") == 5 and campaign_rules.birth_month("garbage") is None


def test_sms_and_wechat_report_not_configured_until_every_field_is_set() -> None:
    note = Outgoing("N-1", "M1", "birthday", {"title_en": "Happy birthday"})
    assert SmsChannel(SmsConfig()).deliver(note).status == "not_configured"
    assert SmsChannel(SmsConfig(gateway_url="http://127.0.0.1:9/sms", sign_name="店")).deliver(note).status == \
        "not_configured"
    assert WechatChannel(WechatConfig(app_id="wx1")).deliver(note).status == "not_configured"
    # Configured, it really sends: to a gateway that is not there, that is a failure, never a success.
    sms = SmsConfig(gateway_url="http://127.0.0.1:9/sms", sign_name="店", template_id="T", access_key_id="k",
                    access_key_secret="s")
    assert SmsChannel(sms, timeout=1).deliver(note).status == "failed"


def test_a_configured_channel_posts_to_its_gateway_without_personal_data() -> None:
    import http.server
    import threading

    from hubproc import free_port

    got: list[bytes] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200 if len(got) == 1 else 500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/send"
        note = Outgoing("N-1", "M000001", "birthday", {"title_zh": "生日快乐", "coupon_code": "BDAY-202605-M000001"})
        wechat = WechatChannel(WechatConfig(app_id="wx1", app_secret="s", template_id="T", gateway_url=url))
        assert wechat.deliver(note).status == "sent"
        failed = SmsChannel(SmsConfig(gateway_url=url, sign_name="店", template_id="T", access_key_id="k",
                                      access_key_secret="s")).deliver(note)
        assert (failed.status, failed.error) == ("failed", "gateway answered 500")
    finally:
        server.shutdown()
    sent = msgspec.json.decode(got[0])
    assert (sent["member_id"], sent["template_id"], sent["data"]["coupon_code"]) == (
        "M000001", "T", "BDAY-202605-M000001")
    assert b"13800138000" not in got[0] + got[1]  # the relay looks the phone up itself


def test_hq_generates_campaigns_on_a_fixed_date_idempotently_and_issues_birthday_chain_coupons(
        hq_db_url: str) -> None:
    db = _hq(hq_db_url)
    with db.write() as tx:
        tx.run("INSERT INTO hq_tiers VALUES ('gold', '金卡会员', 'Gold', 1000, 200, 5000)")
        for member_id, tier, birthday, home, created in (
                ("M1", "regular", "1990-05-20", "S1", "2026-05-01T09:00:00+08:00"),
                ("M2", "regular", None, "S2", "2026-01-01T09:00:00+08:00"),
                ("M3", "gold", None, "S2", "2026-04-20T09:00:00+08:00")):
            hq_pii.insert_member(tx, MemberRow(member_id, tier, None, None, "", birthday, [], home, created))
        tx.run("""INSERT INTO hq_member_tier_changes (member_id, from_tier, to_tier, at, reason)
                  VALUES ('M3', 'regular', 'gold', '2026-05-09T02:00:00+08:00', 'points')""")
    first = engage.run_campaigns(db, DAY, AT)
    assert first == {"day": "2026-05-10", "notices": 3, "coupons": 1,
                     "created": {"birthday": 3, "dormant": 3, "tier_up": 3}}
    assert engage.deliver_queued(db, AT) == {"delivered": 3, "not_configured": 6}
    assert engage.run_campaigns(db, DAY, AT)["created"] == {}
    with db.read() as tx:
        assert tx.one("SELECT code, member_id, store_id, max_uses FROM hq_coupons") == (
            "BDAY-202605-M1", "M1", "S1", 1)
        assert [r[0] for r in tx.all("SELECT kind FROM hq_feed ORDER BY seq")] == ["promotion", "members", "coupon"]
    assert [m["campaign"] for m in engage.inbox(db, "M3")] == ["tier_up"]


# -- a chain: real HQ, two real hubs ---------------------------------------------------------------------------------

FAST = {"idle_s": "0.05", "long_poll_s": "5", "digest_interval_s": "1", "backoff_max_s": "0.5"}


def _birthday_member(month: int) -> str:
    path = Path(__file__).resolve().parent.parent / "edge" / "seed" / "demo" / "members.csv"
    rows = csv.DictReader(path.open(encoding="utf-8"))
    return next(r["member_id"] for r in rows if campaign_rules.birth_month(r["birthday"]) == month)


def test_chain_test_a_referral_across_two_stores_is_rewarded_at_hq_and_a_birthday_coupon_reaches_a_store(
        tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    a = b = None
    try:
        a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()
        b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST).start()
        wait_until(lambda: all(h.query("SELECT count(*) FROM sync_state")[0][0] for h in (a, b)), 20, what="pairing")
        admin, till_a, till_b = hq.admin(), a.till(), b.till()
        before = admin.get("/hq/v1/members/M000001").json()["points"]
        for method, path, body in (("POST", "/hq/v1/campaigns/run", {"day": "2026-02-30"}),
                                   ("POST", "/hq/v1/campaigns/run", {"day": 10**30}),
                                   ("PUT", "/hq/v1/engage/policy", {"referrals": {"share_bp": 10**30}}),
                                   ("PUT", "/hq/v1/engage/policy", {"campaigns": {"typo": 1}})):
            refused = admin.request(method, path, json=body)
            assert refused.status_code == 400 and refused.json()["code"], (path, body, refused.text)
        assert admin.get("/hq/v1/notifications", params={"limit": "9" * 30}).status_code == 400
        assert httpx.post(hq.url + "/hq/v1/campaigns/run", json={}).status_code == 401
        assert httpx.get(hq.url + "/hq/v1/sync/members/M000001/inbox").status_code == 401

        # A customer signs up at store 2 with the code of M000001 (a demo-001 member) and buys there.
        new = till_b.post("/api/v1/members", json={"phone": "13911112222", "name": "新客",
                                                    "referral_code": referral_rules.code_for("M000001")})
        assert new.status_code == 201, new.text
        newcomer = new.json()["member_id"]
        assert _sale(till_b, newcomer).status_code == 201
        # HQ decides: M000001's points grow by the reward in HQ's ledger, once; store 1 shows it in his history.
        wait_until(lambda: admin.get("/hq/v1/members/M000001").json()["points"] == before + 500, 15,
                   what="the referral reward at HQ")
        assert hq.query("SELECT kind, delta, ref FROM hq_member_ledger WHERE member_id = 'M000001' AND kind = "
                        "'referral'") == [("referral", 500, hq.query("SELECT sale_id FROM hq_sales WHERE member_id = ?",
                                                                      (newcomer,))[0][0])]
        wait_until(lambda: a.query("SELECT status FROM referrals WHERE member_id = ?", (newcomer,)) == [("rewarded",)],
                   15, what="the referral in store 1's history")
        earned = till_a.get("/api/v1/members/M000001/referrals").json()["rewards_earned"]
        assert [(r["member_id"], r["level"], r["kind"], r["points"], r["status"]) for r in earned] == [
            (newcomer, 1, "points", 500, "granted")]
        # A paired hub does not run campaigns itself.
        assert till_a.post("/api/v1/campaigns/run", json={}).status_code in (403, 409)

        # HQ runs today's campaigns: a member born this month gets a birthday coupon (a chain coupon held by
        # his home store demo-001) and an inbox message that store 2 reads from HQ.
        today = engage.today_local()
        member = _birthday_member(today.month)
        run = admin.post("/hq/v1/campaigns/run", json={"day": today.isoformat()})
        assert run.status_code == 200, run.text
        assert run.json()["coupons"] >= 1 and run.json()["delivered"]["not_configured"] >= 2
        assert admin.post("/hq/v1/campaigns/run", json={"day": today.isoformat()}).json()["created"] == {}
        token = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": "region-east", "password": "region-demo"})
        region = {"Authorization": f"Bearer {token.json()['token']}"}
        assert httpx.post(hq.url + "/hq/v1/campaigns/run", json={}, headers=region).status_code == 403
        assert hq.query("SELECT actor, action FROM hq_audit WHERE action = 'campaigns.run'") == [
            ("hq", "campaigns.run"), ("hq", "campaigns.run")]
        got = b.till().get(f"/api/v1/members/{member}/inbox")
        assert got.status_code == 200, (got.text, b.log()[-3000:])
        inbox = got.json()
        assert inbox["source"] == "hq"
        birthday = [m for m in inbox["messages"] if m["campaign"] == "birthday"]
        code = campaign_rules.birthday_code(member, today.isoformat()[:7])
        assert [m["payload"]["coupon_code"] for m in birthday] == [code]
        listed = admin.get("/hq/v1/notifications", params={"member_id": member}).json()["notifications"]
        statuses = {r["channel"]: r["status"] for r in listed if r["campaign"] == "birthday"}
        assert statuses == {"inbox": "delivered", "sms": "not_configured", "wechat": "not_configured"}
        # The coupon reaches store 1 (which holds it) and is redeemed at its till.
        wait_until(lambda: a.query("SELECT allocated FROM chain_coupons WHERE code = ?", (code,)) == [(1,)], 15,
                   what="the birthday coupon at store 1")
        lines = [{"sku": "SKU00204", "qty": 1}]
        quote = till_a.post("/api/v1/quote", json={"lines": lines, "member_id": member, "coupon_codes": [code]})
        assert quote.status_code == 200, quote.text
        assert any(x["rule_id"] == "campaign-birthday" for ln in quote.json()["lines"] for x in ln["applied"])
        sale = till_a.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines, "member_id": member, "coupon_codes": [code],
            "tenders": [{"method": "cash", "amount": quote.json()["total"]}]})
        assert sale.status_code == 201, sale.text
        again = till_a.post("/api/v1/quote", json={"lines": lines, "member_id": member, "coupon_codes": [code]})
        assert (again.status_code, again.json()["code"]) == (422, "coupon_used")
    finally:
        for proc in (a, b, hq):
            if proc is not None:
                proc.stop()


# -- the API's edges -----------------------------------------------------------------------------------------------

def test_the_engagement_endpoints_refuse_bad_input_with_4xx_and_a_standalone_hub_runs_campaigns(hub: Hub) -> None:
    till, manager = hub.login("cashier"), hub.login("manager")
    bad: list[tuple[httpx.Client, str, str, Any]] = [
        (till, "POST", "/api/v1/members/M000001/referrer", {}),
        (till, "POST", "/api/v1/members/M000001/referrer", {"referral_code": 12345678901234567890123456789}),
        (till, "POST", "/api/v1/members/M000001/referrer", {"referral_code": "A" * 40}),
        (manager, "POST", "/api/v1/campaigns/run", {"day": "2026-13-40"}),
        (manager, "POST", "/api/v1/campaigns/run", {"day": 10**30}),
        (manager, "POST", "/api/v1/campaigns/run", {"nope": 1}),
        (manager, "PUT", "/api/v1/engage/policy", {"referrals": {"points": 10**30}}),
        (manager, "PUT", "/api/v1/engage/policy", {"referrals": {"max_depth": 0}}),
        (manager, "PUT", "/api/v1/engage/policy", {"campaigns": {"dormant_days": 0}}),
        (manager, "PUT", "/api/v1/engage/policy", {"campaigns": {"channels": ["fax"]}}),
        (manager, "PUT", "/api/v1/engage/policy", {"sms": {"gateway": "typo"}}),
        (manager, "PUT", "/api/v1/engage/policy", [1, 2]),
        (manager, "PUT", "/api/v1/engage/policy", None),
    ]
    for client, method, path, body in bad:
        resp = client.request(method, path, json=body) if body is not None else client.request(method, path)
        assert resp.status_code == 400 and isinstance(resp.json()["code"], str), (path, body, resp.text)
    for path, params in (("/api/v1/notifications", {"limit": "1" * 30}), ("/api/v1/notifications", {"status": "x"}),
                         ("/api/v1/members/M000001/inbox", {"limit": "0"})):
        assert manager.get(path, params=params).status_code == 400, (path, params)
    assert till.get("/api/v1/members/NOPE/referrals").json()["code"] == "unknown_member"
    assert till.get("/api/v1/members/NOPE/inbox").status_code == 404
    assert till.post("/api/v1/campaigns/run", json={}).status_code == 403
    assert till.get("/api/v1/engage/policy").status_code == 403

    # The manager sets the policy (secrets shown as ***) and runs a day's campaigns; a rerun adds nothing.
    policy = manager.put("/api/v1/engage/policy", json={"sms": {"gateway_url": "http://127.0.0.1:9", "sign_name": "店",
                                                                "template_id": "T", "access_key_id": "k",
                                                                "access_key_secret": "s3cret"},
                                                        "campaigns": {"channels": ["inbox", "wechat"]}})
    assert policy.status_code == 200, policy.text
    assert policy.json()["sms"]["access_key_secret"] == "***" and "s3cret" not in policy.text
    kept = manager.put("/api/v1/engage/policy", json=policy.json())
    assert kept.json() == policy.json()
    assert "s3cret" in hub.query("SELECT value FROM settings WHERE key = 'engage_policy'")[0][0]
    run = manager.post("/api/v1/campaigns/run", json={"day": "2026-05-10"})
    assert run.status_code == 200, run.text
    assert run.json()["created"]["birthday"] == 2 * run.json()["coupons"] > 0
    assert set(run.json()["delivered"]) == {"delivered", "not_configured"}
    assert manager.post("/api/v1/campaigns/run", json={"day": "2026-05-10"}).json()["created"] == {}
    listed = manager.get("/api/v1/notifications", params={"status": "not_configured", "limit": 5}).json()
    assert {n["channel"] for n in listed["notifications"]} == {"wechat"}
    member = listed["notifications"][0]["member_id"]
    inbox = till.get(f"/api/v1/members/{member}/inbox").json()
    assert inbox["source"] == "hub" and inbox["messages"]



def test_the_campaigns_cli_runs_a_standalone_hubs_day_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    backroom("seed", "--demo", "--data", str(data))
    first = backroom("campaigns", "run", "--data", str(data), "--day", "2026-05-10")
    done = json.loads(first.stdout.strip().splitlines()[-1])
    assert done["day"] == "2026-05-10" and done["coupons"] == 5 == done["created"]["birthday"] // 3
    assert done["delivered"]["not_configured"] == 2 * done["delivered"]["delivered"]
    again = json.loads(backroom("campaigns", "run", "--data", str(data), "--day", "2026-05-10").stdout.splitlines()[-1])
    assert (again["created"], again["coupons"], again["delivered"]) == ({}, 0, {})
    bad = backroom("campaigns", "run", "--data", str(data), "--day", "2026-02-30", check=False)
    assert bad.returncode == 2 and "--day" in bad.stderr


def test_a_manager_sees_referrals_on_the_tablet_and_signs_up_a_referred_member_in_a_browser(hub: Hub) -> None:
    from playwright.sync_api import sync_playwright
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS, axe_problems, close, log_in, tablet, tap_to

    till = hub.login("cashier")
    brought = till.post("/api/v1/members", json={"phone": "13977776666", "name": "朋友",
                                                  "referral_code": referral_rules.code_for("M000001")})
    assert brought.status_code == 201, brought.text
    friend = brought.json()["member_id"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        found = tablet(browser)
        try:
            log_in(found, hub, "manager")
            assert found.goto("/ui/members/M000001", hub.base_url) == 200
            page = found.page
            facts = page.locator("dl.facts")
            assert referral_rules.code_for("M000001") in facts.inner_text()
            section = page.locator("section[aria-labelledby=member-referrals]")
            assert friend in section.inner_text() and "等待首次消费" in section.inner_text()
            assert page.locator("section[aria-labelledby=member-inbox] h2").inner_text() == "消息"
            assert axe_problems(page) == []
            assert found.goto("/ui/members", hub.base_url) == 200
            page.get_by_label("手机号", exact=True).fill("13977775555")
            page.get_by_label("推荐人的推荐码（可选）").fill(referral_rules.code_for(friend).lower())
            assert tap_to(page, page.get_by_role("button", name="开卡")) == 200
            assert page.locator(".flash.notice").count() == 1
            assert f"/ui/members/{friend}" in page.locator("dl.facts").inner_html()
            assert found.errors == []
        finally:
            close(found)
            browser.close()


def test_every_hq_engagement_endpoint_names_a_known_permission() -> None:
    import inspect
    import re

    from hq_sync.server.api import engage as engage_api
    from hq_sync.server.service.access import permission_table

    known = permission_table()
    for route in engage_api.ADMIN_ROUTES:
        named = re.findall(r'acting\(request, "([a-z_.]+)"\)', inspect.getsource(route.fn))
        assert len(named) == 1 and named[0] in known, route.fn.__name__
    assert "signed_store(request" in inspect.getsource(engage_api.sync_member_inbox.fn)
    assert known["campaigns.manage"] == {"hq_admin", "hq_operator"}
