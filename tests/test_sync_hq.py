"""HQ's storage and rules, in process, on both back ends (a SQLite file and a real PostgreSQL server):
pairing codes, exactly-once ingest, quarantine, escrow grants and reclaims, the signed feed, digests."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
import sync_support
from sync_support import read_feed

from hq_sync.protocol import DeltaLine, DeltaTender, EscrowReleaseDelta, SaleDelta, TopupDelta, delta_encoder
from hq_sync.server.api.resources import Hq
from hq_sync.server.service.access import system_principal
from hq_sync.server.service.digests import check_digests
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.escrow import EscrowPolicy, run_policy
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.members import authorize, grant, member_view
from hq_sync.server.service.reports import report
from hq_sync.server.service.stores import list_stores, make_pair_code, pair, quarantine
from hq_sync.wire import (
    AuthorizeRequest,
    Batch,
    DigestRow,
    EscrowReclaim,
    OutRow,
    PairRequest,
    b64,
    entry_problem,
    feed_body_decoder,
    new_key,
)

pg_cluster = sync_support.pg_cluster  # fixtures shared by the sync tests
hq_db_url = sync_support.hq_db_url

AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = system_principal()


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    yield server
    server.close()


def _pair(hq: Hq, store_id: str, head: int = 0) -> None:
    _, public = new_key()
    pair(hq.db, PairRequest(store_id=store_id, public_key=b64(public), outbox_head=head, demo=True),
         hq.private_key, hq.public_key, True, AT)


def _sale(seq: int, member_id: str | None = None, value_spent: int = 0, total: int = 1000,
          sale_id: str | None = None) -> OutRow:
    delta = SaleDelta(sale_id=sale_id or str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U-cashier",
                      at=AT, lines=[DeltaLine(1, "SKU00027", 2, total // 2, total, 0, total, 83)],
                      tenders=[DeltaTender("stored_value" if value_spent else "cash", total)], subtotal=total,
                      discount=0, total=total, tax=83, change=0, journal_seq=seq, member_id=member_id,
                      value_spent=value_spent)
    return OutRow(seq, "sale", delta.sale_id, AT, msgspec.Raw(delta_encoder.encode(delta)))


def _push(hq: Hq, store_id: str, rows: list[OutRow]) -> tuple[int, int, int, list[tuple[int, str]]]:
    ack = ingest(hq.db, Batch(store_id=store_id, head=max((r.seq for r in rows), default=0), rows=rows), AT)
    return ack.acked, ack.applied, ack.duplicates, ack.quarantined


def _sales_at_hq(hq: Hq, store_id: str) -> tuple[int, int]:
    with hq.db.read() as tx:
        row = tx.one("SELECT count(*), count(DISTINCT sale_id) FROM hq_sales WHERE store_id = ?", (store_id,))
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_pairing_code_pairs_one_store_once(hq: Hq) -> None:
    code = make_pair_code(hq.db, ADMIN, "store-9")
    _, key1 = new_key()
    _, key2 = new_key()

    def ask(code_: str, key: bytes, store: str = "store-9") -> int:
        return pair(hq.db, PairRequest(store_id=store, public_key=b64(key), outbox_head=7, code=code_),
                    hq.private_key, hq.public_key, hq.demo, AT).base_seq

    with pytest.raises(HqError) as wrong:
        ask("AAAA-AAAA", key1)
    assert (wrong.value.status, wrong.value.code) == (403, "bad_code")
    with pytest.raises(HqError) as other_store:
        ask(code, key1, store="demo-002")
    assert other_store.value.code == "bad_code"
    assert ask(code.lower().replace("-", ""), key1) == 7  # typed sloppily: case and dash do not matter
    assert ask(code, key1) == 7  # the same hub retrying gets the same answer
    with pytest.raises(HqError) as used:
        ask(code, key2)
    assert used.value.code == "code_used"
    with pytest.raises(HqError) as not_demo:
        pair(hq.db, PairRequest(store_id="store-9", public_key=b64(key2), outbox_head=0, demo=True),
             hq.private_key, hq.public_key, hq.demo, AT)
    assert not_demo.value.code == "not_demo"


def test_each_delta_is_applied_once_and_the_ack_is_the_highest_contiguous_seq(hq: Hq) -> None:
    _pair(hq, "demo-001")
    rows = [_sale(seq) for seq in range(1, 8)]
    assert _push(hq, "demo-001", rows[:5]) == (5, 5, 0, [])
    assert _push(hq, "demo-001", rows[:5]) == (5, 0, 5, [])  # a resent batch changes nothing
    assert _push(hq, "demo-001", rows[2:7]) == (7, 2, 3, [])  # overlap: only 6 and 7 are new
    gap = [_sale(9), _sale(10)]
    assert _push(hq, "demo-001", gap) == (7, 0, 0, [])  # 8 is missing: 9 and 10 wait for the resend
    assert _sales_at_hq(hq, "demo-001") == (7, 7)
    assert _push(hq, "demo-001", [_sale(8), *gap]) == (10, 3, 0, [])
    assert _sales_at_hq(hq, "demo-001") == (10, 10)
    store = next(s for s in list_stores(hq.db, ADMIN) if s["store_id"] == "demo-001")
    assert (store["acked_seq"], store["sales"], store["lag"], store["quarantined"]) == (10, 10, 0, 0)
    assert report(hq.db, ADMIN, "stores")[:2] == [
        {"rank": 1, "store_id": "demo-001", "region": "华东 East", "sales": 10, "total": 10000},
        {"rank": 2, "store_id": "demo-002", "region": "华北 North", "sales": 0, "total": 0}]
    assert report(hq.db, ADMIN, "categories") == [{"category": "fresh-veg", "lines": 10, "net": 10000}]
    assert report(hq.db, ADMIN, "regions") == [{"region": "华东 East", "sales": 10, "total": 10000}]


def test_a_bad_delta_is_quarantined_with_its_reason_and_the_stream_goes_on(hq: Hq) -> None:
    _pair(hq, "demo-001")
    junk = OutRow(2, "sale", "junk", AT, msgspec.Raw(b"\x93\x01\x02"))
    taken = str(uuid.uuid4())
    acked, applied, _, quarantined = _push(hq, "demo-001", [_sale(1, sale_id=taken), junk, _sale(3),
                                                            _sale(4, sale_id=taken)])
    assert (acked, applied) == (4, 2)
    assert [seq for seq, _ in quarantined] == [2, 4]
    assert quarantined[0][1].startswith("undecodable")
    assert quarantined[1][1] == f"sale {taken} is already held at HQ"
    shown = quarantine(hq.db, ADMIN, "demo-001")
    assert [(q["seq"], q["kind"], q["ref"]) for q in shown] == [(2, "sale", "junk"), (4, "sale", taken)]
    # A quarantined row is tried again when it is resent; fixed bytes now apply and leave quarantine.
    assert _push(hq, "demo-001", [_sale(2)]) == (4, 1, 0, [])
    assert [q["seq"] for q in quarantine(hq.db, ADMIN, "demo-001")] == [4]


def test_spends_beyond_the_escrow_a_store_holds_are_quarantined_never_applied(hq: Hq) -> None:
    _pair(hq, "demo-001")
    assert member_view(hq.db, ADMIN, "M000001")["balance"] == 20000
    grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 3000, AT)
    acked, applied, _, quarantined = _push(hq, "demo-001", [
        _sale(1, "M000001", value_spent=2000, total=2000),
        _sale(2, "M000001", value_spent=1500, total=1500),  # 1000 left in escrow: refused
        _sale(3, "M000001", value_spent=1000, total=1000),
    ])
    assert (acked, applied) == (3, 2)
    assert quarantined == [(2, "overspend: member M000001 beyond this store's escrow (value 1000, points 0)")]
    view = member_view(hq.db, ADMIN, "M000001")
    assert (view["balance"], view["escrow"], view["unallocated_balance"]) == (
        17000, {}, 17000)


def test_a_top_up_is_the_stores_escrow_and_pre_pairing_history_moves_no_money(hq: Hq) -> None:
    _pair(hq, "demo-002", head=1)
    old = _sale(1, "M000002", value_spent=900, total=900)  # standalone days: HQ's ledger was the truth
    topup = TopupDelta(topup_id="T-1", member_id="M000002", amount=5000, method="cash", user_id="U", at=AT,
                       journal_seq=2)
    rows = [old, OutRow(2, "topup", "T-1", AT, msgspec.Raw(delta_encoder.encode(topup))),
            _sale(3, "M000002", value_spent=4000, total=4000)]
    assert _push(hq, "demo-002", rows) == (3, 3, 0, [])
    view = member_view(hq.db, ADMIN, "M000002")
    assert (view["balance"], view["escrow"]["demo-002"]["value"]) == (1000, 1000)


def test_online_authorisation_grants_from_unallocated_balance_and_reclaims_from_other_stores(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    g = authorize(hq.db, hq.private_key, "demo-001", AuthorizeRequest("sale-1", "M000001", "value", 15000), AT)
    assert (g.member_id, g.ledger, g.amount) == ("M000001", "value", 15000)
    again = authorize(hq.db, hq.private_key, "demo-001", AuthorizeRequest("sale-1", "M000001", "value", 15000), AT)
    assert again.grant_id == g.grant_id  # a retried authorisation is the same grant
    # The money exists (5000 unallocated + 15000 at demo-001) but demo-001 does not release it within
    # the (here zero) wait: never "insufficient", but held elsewhere.
    with pytest.raises(HqError) as held:
        authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-2", "M000001", "value", 10000), AT)
    assert (held.value.status, held.value.code, held.value.extra) == (
        402, "held_elsewhere", {"available": 5000, "held_elsewhere": 15000, "ledger": "value"})
    # demo-001 is asked for the 5000 demo-002 lacks, on its feed, signed by HQ.
    page = read_feed(hq.db, "demo-001", 0, 500)
    reclaims = [feed_body_decoder.decode(e.body) for e in page.entries if e.store == "demo-001"]
    reclaim = [b for b in reclaims if isinstance(b, EscrowReclaim)]
    assert [(r.member_id, r.ledger, r.amount) for r in reclaim] == [("M000001", "value", 5000)]
    assert all(entry_problem(e, hq.public_key, "demo-001", 0) is None for e in page.entries)
    release = EscrowReleaseDelta(request_id=reclaim[0].request_id, member_id="M000001", ledger="value", amount=5000,
                                 at=AT)
    assert _push(hq, "demo-001", [OutRow(1, "release", release.request_id, AT,
                                         msgspec.Raw(delta_encoder.encode(release)))]) == (1, 1, 0, [])
    g2 = authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-2", "M000001", "value", 10000), AT)
    assert g2.amount == 10000
    view = member_view(hq.db, ADMIN, "M000001")
    assert (view["balance"], view["unallocated_balance"]) == (20000, 0)
    assert {s: h["value"] for s, h in view["escrow"].items()} == {"demo-001": 10000, "demo-002": 10000}
    # Beyond the chain-wide holdings (what demo-002 may get at most is 10000 held at demo-001): insufficient.
    with pytest.raises(HqError) as short:
        authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-3", "M000001", "value", 10001), AT)
    assert (short.value.status, short.value.code, short.value.extra) == (402, "insufficient_balance",
                                                                         {"available": 0})
    with pytest.raises(HqError) as points:
        authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-4", "M000001", "points", 10**9), AT)
    assert (points.value.status, points.value.code) == (402, "insufficient_points")


def _release_when_asked(hq: Hq, store_id: str, member_id: str, seq: int, give: int | None = None) -> threading.Thread:
    """A store that answers HQ's reclaim from another thread, as a hub's feed and push loops do: it reads
    its feed until the reclaim shows up, then pushes the release (all that was asked, or `give`)."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page = read_feed(hq.db, store_id, 0, 500)
            asks = [b for e in page.entries if isinstance(b := feed_body_decoder.decode(e.body), EscrowReclaim)
                    and b.member_id == member_id]
            if asks:
                release = EscrowReleaseDelta(request_id=asks[-1].request_id, member_id=member_id,
                                             ledger=asks[-1].ledger, amount=asks[-1].amount if give is None else give,
                                             at=AT)
                ingest(hq.db, Batch(store_id=store_id, head=seq, rows=[
                    OutRow(seq, "release", release.request_id, AT, msgspec.Raw(delta_encoder.encode(release)))]),
                    AT, releases=hq.releases)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_authorisation_that_must_reclaim_waits_for_the_release_and_grants_in_one_call(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 20000, AT)  # all of it held at demo-001
    woken: list[bool] = []
    ready = threading.Event()

    def watcher() -> None:  # a third thread waiting on the same member: the ingest's notify reaches it
        with hq.releases.watch("M000001"):
            seen = hq.releases.version("M000001")
            ready.set()
            woken.append(hq.releases.wait("M000001", seen, 10.0))

    watching = threading.Thread(target=watcher, daemon=True)
    watching.start()
    assert ready.wait(10)
    store = _release_when_asked(hq, "demo-001", "M000001", 1)
    g = authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-1", "M000001", "value", 6640), AT,
                  releases=hq.releases, wait_s=10.0)
    store.join(10)
    watching.join(10)
    assert woken == [True]  # woken by the release, not by the timeout
    assert (g.member_id, g.ledger, g.amount) == ("M000001", "value", 6640)
    view = member_view(hq.db, ADMIN, "M000001")
    assert {s: h["value"] for s, h in view["escrow"].items()} == {"demo-001": 20000 - 6640, "demo-002": 6640}
    assert view["unallocated_balance"] == 0


def test_a_store_that_releases_less_than_asked_because_it_spent_it_makes_the_answer_insufficient(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 20000, AT)
    # demo-001 spent 19000 offline (its sale reaches HQ first), then releases the 1000 it has left.
    assert _push(hq, "demo-001", [_sale(1, "M000001", value_spent=19000, total=19000)])[:2] == (1, 1)
    with pytest.raises(HqError) as short:
        authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-2", "M000001", "value", 1500), AT,
                  releases=hq.releases, wait_s=10.0)
    assert (short.value.code, short.value.extra) == ("insufficient_balance", {"available": 0})
    store = _release_when_asked(hq, "demo-001", "M000001", 2, give=1000)
    g = authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-3", "M000001", "value", 1000), AT,
                  releases=hq.releases, wait_s=10.0)
    store.join(10)
    assert g.amount == 1000
    view = member_view(hq.db, ADMIN, "M000001")
    assert (view["balance"], view["unallocated_balance"], view["escrow"]) == (1000, 0, {"demo-002": {"value": 1000,
                                                                                                  "points": 0}})


def test_a_store_that_does_not_answer_its_reclaim_is_passed_over_for_one_that_can(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    _, key = new_key()
    pair(hq.db, PairRequest(store_id="store-3", public_key=b64(key), outbox_head=0,
                            code=make_pair_code(hq.db, ADMIN, "store-3")), hq.private_key, hq.public_key, hq.demo, AT)
    grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 12000, AT)
    grant(hq.db, ADMIN, hq.private_key, "M000001", "store-3", "value", 8000, AT)
    # demo-001 (the bigger holder) is asked first and never answers: it is offline.
    with pytest.raises(HqError) as held:
        authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-1", "M000001", "value", 5000), AT)
    assert held.value.code == "held_elsewhere"
    # The next authorisation asks store-3, which answers, and is granted in the same call.
    store = _release_when_asked(hq, "store-3", "M000001", 1)
    g = authorize(hq.db, hq.private_key, "demo-002", AuthorizeRequest("sale-2", "M000001", "value", 5000), AT,
                  releases=hq.releases, wait_s=10.0)
    store.join(10)
    assert g.amount == 5000
    view = member_view(hq.db, ADMIN, "M000001")
    assert {s: h["value"] for s, h in view["escrow"].items()} == {"demo-001": 12000, "store-3": 3000,
                                                                  "demo-002": 5000}


def test_the_escrow_policy_grants_standing_home_escrow_shop_shares_and_reclaims_idle_grants(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    policy = EscrowPolicy(home_share_pct=50, shop_share_pct=20, min_grant=100, idle_reclaim_s=3600)
    # The sweep: each demo member's home store (demo-001) gets half the balance and half the points.
    made = run_policy(hq.db, hq.private_key, policy, set(), True, set(), AT, now_s=1_000_000)
    assert made > 0
    view = member_view(hq.db, ADMIN, "M000001")
    assert view["escrow"] == {"demo-001": {"value": 10000, "points": view["points"] // 2}}
    assert run_policy(hq.db, hq.private_key, policy, set(), True, set(), AT, now_s=1_000_001) == 0  # nothing more
    # M000001 shopped at demo-002: it gets a fifth of the balance, out of the unallocated part.
    run_policy(hq.db, hq.private_key, policy, {("M000001", "demo-002")}, False, set(), AT, now_s=1_000_002)
    view = member_view(hq.db, ADMIN, "M000001")
    assert view["escrow"]["demo-002"]["value"] == 4000
    assert view["unallocated_balance"] == 20000 - 10000 - 4000
    # A member an authorisation is waiting on is left alone.
    run_policy(hq.db, hq.private_key, policy, {("M000002", "demo-002")}, False, {"M000002"}, AT, now_s=1_000_003)
    assert "demo-002" not in member_view(hq.db, ADMIN, "M000002")["escrow"]
    # An hour without a spend at demo-002: the sweep asks for its escrow back (the home store keeps its own).
    run_policy(hq.db, hq.private_key, policy, set(), True, set(), AT, now_s=1_000_002 + 3599)
    asks = [b for e in read_feed(hq.db, "demo-002", 0, 500).entries
            if isinstance(b := feed_body_decoder.decode(e.body), EscrowReclaim)]
    assert asks == []
    run_policy(hq.db, hq.private_key, policy, set(), True, set(), AT, now_s=1_000_002 + 3600)
    asks = [b for e in read_feed(hq.db, "demo-002", 0, 500).entries
            if isinstance(b := feed_body_decoder.decode(e.body), EscrowReclaim)]
    assert sorted((a.member_id, a.ledger, a.amount) for a in asks) == [
        ("M000001", "points", view["escrow"]["demo-002"]["points"]), ("M000001", "value", 4000)]
    assert not [b for e in read_feed(hq.db, "demo-001", 0, 500).entries
                if isinstance(b := feed_body_decoder.decode(e.body), EscrowReclaim)]
    for view in (member_view(hq.db, ADMIN, m) for m in ("M000001", "M000002", "M000003")):
        assert view["balance"] >= 0 and view["unallocated_balance"] >= 0 and view["unallocated_points"] >= 0


def test_the_feed_is_ordered_per_store_and_every_entry_verifies(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-002", "value", 100, AT)
    one = read_feed(hq.db, "demo-001", 0, 1000)
    two = read_feed(hq.db, "demo-002", 0, 1000)
    seqs = [e.seq for e in one.entries]
    assert seqs == sorted(seqs) and one.head == seqs[-1]
    assert {e.store for e in one.entries} == {"demo-001"}  # the demo HQ has published nothing chain-wide yet
    assert not any(e.store == "demo-001" for e in two.entries)
    assert all(entry_problem(e, hq.public_key, "demo-002", 0) is None for e in two.entries)
    assert entry_problem(two.entries[-1], hq.public_key, "demo-001", 0) == "other_store"
    assert entry_problem(two.entries[-1], hq.public_key, "demo-002", two.entries[-1].seq) == "replayed"


def test_a_digest_mismatch_names_the_day_and_asks_for_its_range_again(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _push(hq, "demo-001", [_sale(1, total=1000), _sale(2, total=2000), _sale(3, total=500)])
    day = AT[:10]
    same = [DigestRow(day, "sale", 3, 3500, 1, 3)]
    assert check_digests(hq.db, "demo-001", same, 3, AT).mismatched == []
    more = [DigestRow(day, "sale", 4, 4100, 1, 4)]
    verdict = check_digests(hq.db, "demo-001", more, 4, AT)
    assert (verdict.mismatched, verdict.resend) == ([day], [(1, 4)])
    store = next(s for s in list_stores(hq.db, ADMIN) if s["store_id"] == "demo-001")
    assert store["digest_mismatches"] == 1


def test_a_shopper_whose_stores_hold_their_share_costs_the_policy_no_member_lock(hq: Hq, hq_db_url: str) -> None:
    """The policy finds in a read that a member needs no top-up; only a member who does is locked (a till's
    authorisation for the same member waits behind that lock). With another session holding the member's row,
    a turn for a member already at his shares ends at once, granting nothing."""
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    policy = EscrowPolicy(home_share_pct=50, shop_share_pct=20, min_grant=100, idle_reclaim_s=3600)
    run_policy(hq.db, hq.private_key, policy, {("M000001", "demo-002")}, True, set(), AT, now_s=1_000_000)
    held = member_view(hq.db, ADMIN, "M000001")["escrow"]
    assert held["demo-001"]["value"] == 10000 and held["demo-002"]["value"] == 4000  # at their targets
    if hq.db.dialect != "postgresql":
        return  # SQLite has one writer and no row locks to hold
    import psycopg

    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with psycopg.connect(hq_db_url) as holder:
            holder.execute("SELECT 1 FROM hq_members WHERE member_id = 'M000001' FOR UPDATE")
            done = pool.submit(run_policy, hq.db, hq.private_key, policy, {("M000001", "demo-002")}, False, set(),
                               AT, 1_000_001)
            assert done.result(timeout=10) == 0  # it read, found nothing to do, and never waited for the lock
    finally:
        pool.shutdown(wait=False)  # (had it waited, the lock's end above lets it finish)
    assert member_view(hq.db, ADMIN, "M000001")["escrow"] == held
