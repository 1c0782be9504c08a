"""Members across the chain (docs/sync.md "Members across the chain"): the directory through the feed, a
lookup miss asking HQ, chain-wide balances beside this store's part, and duplicates merged at HQ.

Real `backroom hq serve` and two real hubs (demo-001, demo-002; behind fault proxies where a test cuts
them off), plus the pure merge planner and HQ's ingest in process (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sync_support
from hypothesis import given
from hypothesis import strategies as st
from sync_support import FaultProxy, HqServer, SyncHub, sell, wait_until

from devices.receipt import layout, money
from edge.device_link.receipts import decode_sale, receipt_for
from edge.journal.chain import verify as chain_verify
from edge.members import pii
from edge.members.chainwide import member_effects
from edge.members.service import commit_topup, find_member
from edge.sales.models import TopupRequest
from edge.stock.ledger import Actor
from edge.storage.db import Database
from hq_sync import hub_state
from hq_sync.protocol import DeltaTender, MemberDelta, ReturnDelta, SaleDelta, TopupDelta, delta_encoder
from hq_sync.server.service import members as hq_members
from hq_sync.server.service import pii as hq_pii
from hq_sync.server.service.access import system_principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import sequence_pending
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.merges import combine_profiles, merge_by_hand, pick_winner, plan_merge
from hq_sync.server.service.stores import ensure_store
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import (
    Batch,
    EscrowGrant,
    MemberBalances,
    MemberMerged,
    MemberRow,
    OutRow,
    PairResult,
    b64,
    feed_body_decoder,
    feed_body_encoder,
    new_key,
    sign_entry,
)
from tests.ui_support import ui_login

pg_cluster = sync_support.pg_cluster  # fixtures shared by the sync tests
hq_db_url = sync_support.hq_db_url

ADMIN = system_principal("hq")
FAST = {"idle_s": "0.05", "long_poll_s": "5", "digest_interval_s": "1", "backoff_max_s": "0.5"}


# -- pure: the merge planner and the effects a store adds to HQ's snapshot ------------------------------------------

def test_the_earliest_created_record_wins_whatever_the_offsets_and_the_id_breaks_a_tie() -> None:
    assert pick_winner([("MB", "2026-11-23T10:00:00.500+08:00"), ("MA", "2026-11-23T10:00:01+08:00")]) == (
        "MB", ["MA"])
    # 09:59 in Shanghai is 01:59 UTC, earlier than 02:30 UTC written with another offset.
    assert pick_winner([("MX", "2026-11-23T02:30:00+00:00"), ("MY", "2026-11-23T09:59:00+08:00"),
                        ("MZ", "not a time")]) == ("MY", ["MX", "MZ"])
    assert pick_winner([("M2", "2026-11-23T10:00:00+08:00"), ("M1", "2026-11-23T02:00:00+00:00")]) == ("M1", ["M2"])
    with pytest.raises(ValueError):
        pick_winner([])


@pytest.mark.parametrize(("balance", "points", "escrow", "ledger", "moves"), [
    (0, 0, {}, [], []),
    (2000, 0, {("S2", "value"): 2000}, [("L", "value", -2000, "merge_out"), ("W", "value", 2000, "merge_in")],
     [("S2", "value", 2000)]),
    (2000, 35, {("S2", "value"): 1500, ("S1", "points"): 35, ("S1", "value"): 0},
     [("L", "value", -2000, "merge_out"), ("W", "value", 2000, "merge_in"),
      ("L", "points", -35, "merge_out"), ("W", "points", 35, "merge_in")],
     [("S1", "points", 35), ("S2", "value", 1500)]),
])
def test_a_merge_moves_every_fen_and_point_of_the_loser_to_the_winner(
        balance: int, points: int, escrow: dict[tuple[str, str], int], ledger: list[Any], moves: list[Any]) -> None:
    plan = plan_merge("W", "L", balance, points, escrow)
    assert (plan.ledger, plan.escrow) == (ledger, moves)
    assert sum(d for _, _, d, _ in plan.ledger) == 0  # nothing created, nothing lost
    assert sum(d for m, lg, d, _ in plan.ledger if m == "W" and lg == "value") == balance


@given(balance=st.integers(0, 10**9), points=st.integers(0, 10**9),
       escrow=st.dictionaries(st.tuples(st.sampled_from(["S1", "S2", "S3"]), st.sampled_from(["value", "points"])),
                              st.integers(0, 10**9), max_size=6))
def test_a_merge_conserves_every_ledger_and_leaves_the_loser_nothing(
        balance: int, points: int, escrow: dict[tuple[str, str], int]) -> None:
    plan = plan_merge("W", "L", balance, points, escrow)
    for name, held in (("value", balance), ("points", points)):
        assert sum(d for m, lg, d, _ in plan.ledger if lg == name and m == "L") == -held
        assert sum(d for m, lg, d, _ in plan.ledger if lg == name and m == "W") == held
    assert {(s, lg): a for s, lg, a in plan.escrow} == {k: v for k, v in escrow.items() if v > 0}
    assert all(kind == ("merge_out" if m == "L" else "merge_in") for m, _, _, kind in plan.ledger)


def test_a_merge_refuses_itself_and_negative_holdings() -> None:
    with pytest.raises(ValueError):
        plan_merge("W", "W", 0, 0, {})
    with pytest.raises(ValueError):
        plan_merge("W", "L", -1, 0, {})


def test_the_winner_keeps_its_profile_and_takes_what_it_lacks() -> None:
    winner = MemberRow("W", "gold", "13900000001", None, "", None, ["vip"], "S1", "t1")
    loser = MemberRow("L", "regular", "13900000001", "CARD77", "王芳", "1990-01-02", ["vip", "new"], "S2", "t2")
    merged, rest = combine_profiles(winner, loser)
    assert merged == MemberRow("W", "gold", "13900000001", "CARD77", "王芳", "1990-01-02", ["vip", "new"], "S1", "t1")
    assert (rest.phone, rest.card_no, rest.name) == (None, None, "王芳")
    other = MemberRow("L2", "regular", "13900000001", "CARD88", "", None, [], "S2", "t3")
    assert combine_profiles(merged, other)[1].card_no == "CARD88"  # its own card still finds it, as an alias


def test_the_effects_a_store_adds_to_hqs_snapshot_are_those_hq_applies() -> None:
    sale = SaleDelta(sale_id="s", receipt_no="R", till_id="T", user_id="u", at="t", lines=[],
                     tenders=[DeltaTender("stored_value", 500)], subtotal=900, discount=0, total=900, tax=0, change=0,
                     journal_seq=1, member_id="M1", points_earned=9, points_redeemed=400, value_spent=500,
                     points_reward=100)
    assert member_effects(sale) == ("M1", -500, 9 - 400 - 100)
    assert member_effects(msgspec.structs.replace(sale, member_id=None)) is None
    cash = msgspec.structs.replace(sale, points_earned=0, points_redeemed=0, value_spent=0, points_reward=0)
    assert member_effects(cash) is None
    refund = ReturnDelta(return_id="r", sale_id="s", user_id="u", at="t", lines=[], refund_total=700,
                         refunds=[DeltaTender("stored_value", 500), DeltaTender("points", 200),
                                  DeltaTender("cash", 0)], journal_seq=2, member_id="M1", points_reversed=9,
                         points_reward_returned=100)
    assert member_effects(refund) == ("M1", 500, 200 - 9 + 100)
    assert member_effects(TopupDelta(topup_id="x", member_id="M2", amount=3000, method="cash", user_id="u", at="t",
                                     journal_seq=3)) == ("M2", 3000, 0)


# -- HQ in process: duplicates found on upload, later deltas of the old id, a merge by hand ---------------------------

def _row(seq: int, delta: Any, ref: str) -> OutRow:
    tag = type(delta).__struct_config__.tag
    return OutRow(seq, tag, ref, "2026-11-23T10:00:00+08:00", msgspec.Raw(delta_encoder.encode(delta)))


def _member(member_id: str, phone: str, at: str, store: str, card: str | None = None) -> MemberDelta:
    return MemberDelta(member_id=member_id, tier="regular", at=at, phone=phone, card_no=card, name="", home_store=store)


def _topup(member_id: str, amount: int) -> TopupDelta:
    return TopupDelta(topup_id=str(uuid.uuid4()), member_id=member_id, amount=amount, method="cash", user_id="u",
                      at="2026-11-23T10:00:00+08:00", journal_seq=1)


def _name_tier(hub: SyncHub, member_id: str) -> tuple[str, str] | None:
    """A member's name (sealed: docs/privacy.md) and tier in a hub's cache."""
    rows = hub.query("SELECT pii, tier FROM members WHERE member_id = ?", (member_id,))
    if not rows:
        return None
    return pii.load(hub.data_dir / pii.KEY_FILE).open_personal(member_id, rows[0][0]).name, str(rows[0][1])


def _feed(db: Any) -> list[tuple[str, Any]]:
    with db.read() as tx:
        key = bytes(tx.all("SELECT private_key FROM hq_keys WHERE id = 1")[0][0])
    sequence_pending(db, key)  # on PostgreSQL, what an HQ worker's sequencer does after each commit
    with db.read() as tx:  # member profiles are sealed in hq_feed (docs/privacy.md)
        return [(str(r[0]), feed_body_decoder.decode(hq_pii.open_feed_body(tx, str(r[2]), bytes(r[1]))))
                for r in tx.all("SELECT store_id, body, kind FROM hq_feed ORDER BY seq")]


def test_hq_merges_an_offline_duplicate_on_upload_and_applies_later_deltas_of_the_old_id_to_the_winner(
        hq_db_url: str) -> None:
    db = open_db(hq_db_url)
    try:
        create_schema(db)
        with db.write() as tx:
            for store in ("S1", "S2"):
                ensure_store(tx, store)
                tx.run("UPDATE hq_stores SET public_key = ? WHERE store_id = ?", (b"k" * 32, store))
            tx.run("INSERT INTO hq_keys (id, private_key, public_key) VALUES (1, ?, ?)", (b"\x01" * 32, b"\x02" * 32))
            tx.run("INSERT INTO hq_tiers VALUES ('regular', '普通', 'Regular', 0, 100, 0)")
        # S2's sign-up (later) arrives first, with a top-up; then S1's (earlier), with its own top-up.
        ack = ingest(db, Batch("S2", 2, [_row(1, _member("L", "13700000001", "2026-11-23T10:05:00+08:00", "S2"), "L"),
                                         _row(2, _topup("L", 2000), "t2")]), "now")
        assert ack.acked == 2 and ack.quarantined == []
        ack = ingest(db, Batch("S1", 2, [_row(1, _member("W", "13700000001", "2026-11-23T09:58:00+08:00", "S1",
                                                         card="C123"), "W"), _row(2, _topup("W", 3000), "t1")]), "now")
        assert ack.acked == 2 and ack.quarantined == []
        view = hq_members.member_view(db, ADMIN, "L")  # the old id shows the member it was merged into
        assert (view["member_id"], view["balance"], view["aliases"]) == ("W", 5000, ["L"])
        assert view["escrow"] == {"S1": {"value": 3000, "points": 0}, "S2": {"value": 2000, "points": 0}}
        with db.read() as tx:
            assert hq_members.find_member(tx, phone="13700000001") == "W"
            assert hq_members.find_member(tx, member_id="L") == "W"
            assert tx.all("SELECT member_id, kind, delta FROM hq_member_ledger WHERE kind IN ('merge_in', 'merge_out') "
                          "ORDER BY entry_id") == [("L", "merge_out", -2000), ("W", "merge_in", 2000)]
            assert tx.one("SELECT balance, phone_hash FROM hq_members WHERE member_id = 'L'") == (0, None)
            assert tx.one("SELECT actor, action, target FROM hq_audit") == ("hq-sync", "member.merge", "member:W")
            assert tx.one("SELECT sum(delta) FROM hq_member_ledger") == (5000,)
        kinds = [(store, type(body).__struct_config__.tag) for store, body in _feed(db)]
        assert ("*", "member_merged") in kinds and ("S2", "member_balances") in kinds
        merged = [b for _, b in _feed(db) if type(b).__struct_config__.tag == "member_merged"]
        assert [(b.loser, b.winner) for b in merged] == [("L", "W")]
        to_s2 = [b for s, b in _feed(db) if s == "S2" and type(b).__struct_config__.tag == "member_balances"]
        assert (to_s2[-1].rows, to_s2[-1].acked) == ([("W", 5000, 0)], 2)

        # S2, before hearing of the merge, spends 1500 of the old id offline: it counts against the winner.
        spend = SaleDelta(sale_id="sale-1", receipt_no="R1", till_id="T", user_id="u", at="t",
                          lines=[], tenders=[DeltaTender("stored_value", 1500)], subtotal=1500, discount=0,
                          total=1500, tax=0, change=0, journal_seq=3, member_id="L", value_spent=1500)
        ack = ingest(db, Batch("S2", 3, [_row(3, spend, "sale-1")]), "now")
        assert (ack.acked, ack.quarantined) == (3, [])
        view = hq_members.member_view(db, ADMIN, "W")
        assert (view["balance"], view["escrow"]["S2"]["value"]) == (3500, 500)
        with db.read() as tx:
            assert tx.one("SELECT member_id FROM hq_sales WHERE sale_id = 'sale-1'") == ("W",)

        # By hand: a third record of the same person (another phone) merged by an admin; twice is refused.
        ingest(db, Batch("S1", 3, [_row(3, _member("X", "13700000002", "2026-11-24T10:00:00+08:00", "S1"), "X"),
                                   ]), "now")
        out = merge_by_hand(db, ADMIN, b"\x01" * 32, "W", "X", "now")
        assert (out["winner"], out["loser"], out["balance"]) == ("W", "X", 3500)
        with pytest.raises(HqError) as again:
            merge_by_hand(db, ADMIN, b"\x01" * 32, "W", "X", "now")
        assert again.value.code == "already_merged"
        with pytest.raises(HqError) as same:
            merge_by_hand(db, ADMIN, b"\x01" * 32, "W", "W", "now")
        assert same.value.code == "same_member"
        assert hq_members.member_view(db, ADMIN, "X")["aliases"] == ["L", "X"]
    finally:
        db.close()


# -- a hub in process: HQ's figures plus this store's effects, a merge from the feed -------------------------------

NOW = "2026-05-01T10:00:00.000+08:00"


def test_a_hub_shows_hqs_figure_plus_its_own_later_effects_and_applies_a_merge_once(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    assert sync_support.cli("seed", "--demo", "--data", str(data)).returncode == 0
    db = Database(data / "hub.sqlite3")
    try:
        hq_private, hq_public = new_key()
        store_private, store_public = new_key()
        db.write_sync(lambda c: hub_state.store_paired(
            c, PairResult("demo-001", b64(hq_public), 0), hq_url="http://hq", private_key=store_private,
            public_key=store_public, hq_public_key=hq_public, at=NOW))
        seq = iter(range(1, 100))

        def feed(body: Any) -> None:
            entry = sign_entry(hq_private, next(seq), "*", NOW, feed_body_encoder.encode(body))
            out = db.write_sync(lambda c: hub_state.apply_feed(c, [entry], entry.seq, NOW))
            assert out.refused == []

        def shown(member_id: str) -> tuple[int, int, str | None, int, int]:
            m = find_member(db.reader(), member_id=member_id, show_phone=True)
            assert m is not None and m.spendable_here is not None
            return m.balance, m.points, m.balance_as_of, m.spendable_here.balance, m.spendable_here.points

        feed(MemberBalances(rows=[("M000002", 5000, 100)], as_of="2026-05-01T10:00:01+08:00", store="demo-001"))
        assert shown("M000002") == (5000, 100, "2026-05-01T10:00:01+08:00", 0, 0)
        topup = TopupRequest(topup_id=uuid.uuid4(), amount=300, method="cash")
        db.write_sync(lambda c: commit_topup(c, "M000002", topup, "d1", Actor("u"), NOW))
        assert shown("M000002")[::3] == (5300, 300)  # at once, before HQ has heard of it
        head = int(db.reader().execute("SELECT max(seq) FROM outbox").fetchone()[0])
        # HQ's next figure holds the top-up (this store's stream through `head`): not counted twice.
        feed(MemberBalances(rows=[("M000002", 5300, 100)], as_of="2026-05-01T10:00:02+08:00", store="demo-001",
                            acked=head))
        assert shown("M000002")[:2] == (5300, 100)
        feed(MemberBalances(rows=[("M000002", 1, 1)], as_of="2026-05-01T10:00:00+08:00", store="demo-001",
                            acked=head))
        assert shown("M000002")[:2] == (5300, 100)  # an older figure never replaces a newer one

        feed(EscrowGrant(grant_id="G-1", member_id="M000003", ledger="value", amount=700))
        merged = MemberMerged(loser="M000003", winner="M000002")
        feed(merged)
        feed(merged)  # twice: applied once
        assert shown("M000003")[3:] == (1000, 0)  # the old id is the winner; its escrow moved here
        reader = db.reader()
        loser_held = reader.execute("SELECT balance FROM member_balance WHERE member_id = 'M000003'").fetchone()
        assert tuple(loser_held) == (0,)
        assert tuple(reader.execute("SELECT count(*) FROM journal WHERE kind = 'member_merge'").fetchone()) == (1,)
        assert [tuple(r) for r in reader.execute("SELECT member_id, kind, delta FROM value_ledger WHERE kind "
                                                 "LIKE 'merge%' ORDER BY entry_id")] == [
            ("M000003", "merge_out", -700), ("M000002", "merge_in", 700)]
        feed(EscrowGrant(grant_id="G-2", member_id="M000003", ledger="value", amount=50))  # named by its old id
        assert shown("M000002")[3] == 1050
        assert chain_verify(db.reader()).ok
    finally:
        db.close()


# -- real HQ, real hubs ------------------------------------------------------------------------------------------------

def _paired(*hubs: SyncHub) -> bool:
    return all(h.query("SELECT count(*) FROM sync_state")[0][0] for h in hubs)


def _caught_up(hub: SyncHub) -> bool:
    return bool(hub.query("SELECT acked_seq = (SELECT coalesce(max(seq), 0) FROM outbox) FROM sync_state")[0][0])


def _manager(hub: SyncHub) -> httpx.Client:
    r = httpx.post(hub.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"},
                   timeout=10)
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)


def _sign_up(till: httpx.Client, phone: str, **extra: Any) -> dict[str, Any]:
    r = till.post("/api/v1/members", json={"phone": phone, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _top_up(till: httpx.Client, member_id: str, amount: int) -> None:
    r = till.post(f"/api/v1/members/{member_id}/topups", json={"topup_id": str(uuid.uuid4()), "amount": amount,
                                                               "method": "cash"})
    assert r.status_code == 201, r.text


def test_a_sign_up_at_one_store_is_found_at_another_within_3_s_and_hq_edits_follow(tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: _paired(a, b), 15, what="pairing")
        till_a, till_b = a.till(), b.till()
        member = _sign_up(till_a, "13712345678", name="林小姐")
        member_id = member["member_id"]
        # The feed brings the profile to B's cache (no lookup asks HQ): within 3 s.
        hashed = pii.load(b.data_dir / pii.KEY_FILE).phone_hash("13712345678")  # sealed (docs/privacy.md)
        wait_until(lambda: b.query("SELECT member_id FROM members WHERE phone_hash = ?", (hashed,)) == [(member_id,)],
                   3.0, interval=0.02, what="the sign-up in B's member cache")
        found = till_b.get("/api/v1/members/lookup", params={"phone": "13712345678"})
        assert found.status_code == 200, found.text
        assert (found.json()["member_id"], found.json()["phone"]) == (member_id, "137****5678")  # a cashier
        sale = sell(till_b, 1, member_id)
        assert sale.status_code == 201, sale.text
        assert sale.json()["member"]["member_id"] == member_id
        # An HQ admin's edit reaches both stores the same way.
        edited = hq.admin().patch(f"/hq/v1/members/{member_id}", json={"name": "林芳", "tier": "silver"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["changed"] == ["name", "tier"]
        for hub in (a, b):
            wait_until(lambda h=hub: _name_tier(h, member_id) == ("林芳", "silver"), 3.0, interval=0.02,
                       what="the HQ edit at every store")
        taken = hq.admin().patch(f"/hq/v1/members/{member_id}", json={"phone": "13800138000"})  # M000001's
        assert (taken.status_code, taken.json()["code"]) == (409, "member_exists")
        bad = hq.admin().patch(f"/hq/v1/members/{member_id}", json={"phone": "12"})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_field")
        assert hq.admin().patch("/hq/v1/members/NOPE", json={"name": "x"}).status_code == 404
        assert hq.query("SELECT actor, target FROM hq_audit WHERE action = 'member.edit'") == [
            ("hq", f"member:{member_id}")]
    finally:
        a.stop()
        b.stop()
        hq.stop()


def test_a_lookup_miss_asks_hq_shows_chain_wide_balances_and_says_so_when_hq_is_away(tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    up_b = FaultProxy(hq.port)
    up_b.mode = "clean"
    up_b.stall = ("/hq/v1/sync/feed",)  # B hears nothing through the feed: only its lookups can find members
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, up_b.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: _paired(a, b), 15, what="pairing")
        till_a, till_b = a.till(), b.till()
        first = _sign_up(till_a, "13712340001", card_no="CARD0001")["member_id"]
        _top_up(till_a, first, 5000)
        second = _sign_up(till_a, "13712340002")["member_id"]
        fourth = _sign_up(till_a, "13712340004")["member_id"]
        wait_until(lambda: _caught_up(a), 10, what="A's push")
        assert b.query("SELECT count(*) FROM members WHERE member_id IN (?, ?, ?)", (first, second, fourth)) == [(0,)]
        # Signing up at B a phone HQ knows: the existing member, not a second record.
        again = till_b.post("/api/v1/members", json={"phone": "13712340004", "name": "又一次"})
        assert (again.status_code, again.json()["code"], again.json()["member_id"]) == (409, "member_exists", fourth)

        found = _manager(b).get("/api/v1/members/lookup", params={"phone": "13712340001"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert (body["member_id"], body["phone"], body["balance"], body["spendable_here"]) == (
            first, "13712340001", 5000, {"balance": 0, "points": 0})
        assert body["balance_as_of"] is not None
        assert b.query("SELECT member_id FROM members WHERE card_hash = ?",
                       (pii.load(b.data_dir / pii.KEY_FILE).card_hash("CARD0001"),)) == [(first,)]  # cached
        by_card = till_b.get("/api/v1/members/lookup", params={"card": "CARD0001"})
        assert by_card.json()["member_id"] == first
        # A spends 1200 of it; B's next lookup refreshes the chain-wide figure from HQ.
        spent = sell(till_a, 1, first, tenders=None)
        assert spent.status_code == 201
        q = till_a.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": first}).json()
        paid = till_a.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}],
            "member_id": first, "tenders": [{"method": "stored_value", "amount": q["total"]}]})
        assert paid.status_code == 201, paid.text
        assert paid.json()["member"]["balance"] == 5000 - q["total"]  # A's receipt: chain-wide, at once
        assert paid.json()["member"]["spendable_here"]["balance"] == 5000 - q["total"]
        wait_until(lambda: _caught_up(a), 10, what="A's push")
        again = till_b.get(f"/api/v1/members/{first}")
        assert (again.json()["balance"], again.json()["points"]) == (
            5000 - q["total"], spent.json()["points_earned"] + paid.json()["points_earned"])
        # A sale at B naming a member B has never seen: fetched from HQ before the quote.
        sale = sell(till_b, 1, second)
        assert sale.status_code == 201, sale.text
        unknown = till_b.get("/api/v1/members/lookup", params={"phone": "13712349999"})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_member")

        third = _sign_up(till_a, "13712340003")["member_id"]
        wait_until(lambda: _caught_up(a), 10, what="A's push")
        hq.stop()  # HQ away: a miss says so; what B has cached still answers
        offline = till_b.get("/api/v1/members/lookup", params={"phone": "13712340003"})
        assert (offline.status_code, offline.json()["code"]) == (404, "member_unknown_offline")
        assert till_b.get(f"/api/v1/members/{third}").json()["code"] == "member_unknown_offline"
        q = till_b.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": third})
        assert (q.status_code, q.json()["code"]) == (404, "member_unknown_offline")
        cached = till_b.get("/api/v1/members/lookup", params={"phone": "13712340001"})
        assert (cached.status_code, cached.json()["member_id"]) == (200, first)
        standalone = SyncHub(tmp_path, None, store="demo-009").start()
        try:
            plain = standalone.till().get("/api/v1/members/lookup", params={"phone": "13712340003"})
            assert (plain.status_code, plain.json()["code"]) == (404, "unknown_member")
            mine = standalone.till().get("/api/v1/members/M000001").json()
            assert (mine["balance"], mine["spendable_here"]["balance"], mine["balance_as_of"]) == (20000, 20000, None)
        finally:
            standalone.stop()
    finally:
        a.stop()
        b.stop()
        up_b.close()
        hq.stop()


def test_an_offline_duplicate_sign_up_is_merged_and_both_stores_resolve_it_to_one_member(tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    up_a, up_b = FaultProxy(hq.port, seed=1), FaultProxy(hq.port, seed=2)
    up_a.mode = up_b.mode = "clean"
    a = SyncHub(tmp_path, up_a.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, up_b.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: _paired(a, b), 15, what="pairing")
        wait_until(lambda: all(h.query("SELECT feed_cursor FROM sync_state")[0][0] > 0 for h in (a, b)), 15,
                   what="opening feeds")
        up_a.mode = up_b.mode = "down"  # both stores cut off from HQ
        till_a, till_b = a.till(), b.till()
        phone = "13698765432"
        winner = _sign_up(till_a, phone, name="周先生")["member_id"]  # the earlier sign-up
        _top_up(till_a, winner, 3000)
        loser = _sign_up(till_b, phone, card_no="CARD7788")["member_id"]
        _top_up(till_b, loser, 2000)
        earned = sell(till_b, 2, loser)  # cash, earns points for the loser at B
        assert earned.status_code == 201, earned.text
        points = earned.json()["points_earned"]
        assert points > 0
        assert winner != loser

        up_a.mode = up_b.mode = "clean"  # back online
        wait_until(lambda: hq.query("SELECT alias, member_id FROM hq_member_aliases") == [(loser, winner)], 20,
                   what="the merge at HQ")
        for hub in (a, b):
            wait_until(lambda h=hub: h.query("SELECT member_id FROM member_aliases WHERE alias = ?", (loser,))
                       == [(winner,)] and _caught_up(h), 20, what="the merge at every store")
        view = hq.admin().get(f"/hq/v1/members/{loser}").json()
        assert (view["member_id"], view["balance"], view["points"], view["aliases"]) == (winner, 5000, points, [loser])
        assert view["escrow"] == {"demo-001": {"value": 3000, "points": 0},
                                  "demo-002": {"value": 2000, "points": points}}
        expected_here = {a: {"balance": 3000, "points": 0}, b: {"balance": 2000, "points": points}}
        for hub in (a, b):
            till = hub.till()
            by_phone = till.get("/api/v1/members/lookup", params={"phone": phone}).json()
            by_old_id = till.get(f"/api/v1/members/{loser}").json()
            for seen in (by_phone, by_old_id):
                assert (seen["member_id"], seen["balance"], seen["points"]) == (winner, 5000, points), seen
                assert seen["spendable_here"] == expected_here[hub]
            assert hub.query("SELECT balance, points FROM member_balance WHERE member_id = ?", (loser,)) == [(0, 0)]
            assert hub.query("SELECT count(*) FROM journal WHERE kind = 'member_merge'") == [(1,)]
        assert b.till().get("/api/v1/members/lookup", params={"card": "CARD7788"}).json()["member_id"] == winner
        # A sale at B naming the old id is the winner's, and spends what B holds of it.
        q = b.till().post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": loser})
        assert (q.status_code, q.json()["member"]["member_id"]) == (200, winner)
        paid = b.till().post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}],
            "member_id": loser, "tenders": [{"method": "stored_value", "amount": q.json()["total"]}]})
        assert paid.status_code == 201, paid.text
        total, points = q.json()["total"], points + paid.json()["points_earned"]
        assert paid.json()["member"] | {"balance_as_of": None} == {
            "member_id": winner, "tier": "regular", "points": points, "balance": 5000 - total, "balance_as_of": None,
            "spendable_here": {"balance": 2000 - total, "points": points}}
        assert paid.json()["member"]["balance_as_of"] is not None
        receipt = layout(receipt_for(decode_sale(paid.content), "demo-002"), 42)
        assert any(line.startswith("余额 Balance") and line.endswith(money(5000 - total)) for line in receipt)
        assert any(line.startswith("截至 As of") for line in receipt)
        page = ui_login(b, "manager", lang="en").get(f"/ui/members/{loser}")  # the tablet shows the same
        assert page.status_code == 200, page.text
        assert "Spendable at this store" in page.text and "Whole chain, as of" in page.text
        assert money(5000 - total).strip("¥") in page.text and money(2000 - total).strip("¥") in page.text
        _top_up(b.till(), loser, 700)  # the old id's top-up is the winner's, spendable here
        assert b.till().get(f"/api/v1/members/{winner}").json()["spendable_here"]["balance"] == 2000 - total + 700
        wait_until(lambda: _caught_up(b), 10, what="B's push")
        assert hq.query("SELECT balance FROM hq_members WHERE member_id = ?", (winner,)) == [(5000 - total + 700,)]
        assert hq.query("SELECT count(*) FROM hq_deltas WHERE status = 'quarantined'") == [(0,)]
        merges = hq.query("SELECT action, target FROM hq_audit WHERE action = 'member.merge'")
        assert merges == [("member.merge", f"member:{winner}")]
    finally:
        a.stop()
        b.stop()
        up_a.close()
        up_b.close()
        hq.stop()
