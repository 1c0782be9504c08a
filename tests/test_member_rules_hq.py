"""HQ's member rules in process on both back ends (a SQLite file and a real PostgreSQL), on a fixed clock:
chain-wide figures from two stores' batches, upgrade after a batch, downgrade only on the review date,
automatic tags recomputed by the daily pass without touching manual tags, changes in the feed."""

from __future__ import annotations

import datetime
import inspect
import re
import uuid
from collections.abc import Iterator

import msgspec
import pytest
import sync_support

from edge.members.tagging import Dormant, HighValue
from edge.members.tiering import TierDef, TierSettings
from hq_sync.protocol import DeltaLine, DeltaTender, ReturnDelta, ReturnLineDelta, SaleDelta, delta_encoder
from hq_sync.server.api import member_rules as member_rules_api
from hq_sync.server.api.resources import Hq
from hq_sync.server.service import member_rules
from hq_sync.server.service.access import Principal, permission_table
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import read_feed
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.stores import pair
from hq_sync.wire import Batch, MembersPut, OutRow, PairRequest, b64, feed_body_decoder, new_key

pg_cluster = sync_support.pg_cluster
hq_db_url = sync_support.hq_db_url

D = datetime.date
DAY = D(2026, 5, 1)
AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = Principal("hq", "hq_admin")
TIERS = TierSettings(tiers=[
    TierDef("regular", "普通会员", "Regular", rank=0, metric="spend", threshold=0),
    TierDef("silver", "银卡会员", "Silver", discount_bp=500, rank=1, metric="spend", threshold=1000),
    TierDef("gold", "金卡会员", "Gold", discount_bp=1000, rank=2, metric="spend", threshold=5000),
])


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    for store_id in ("demo-001", "demo-002"):
        _, public = new_key()
        pair(server.db, PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, demo=True),
             server.private_key, server.public_key, True, AT)
    yield server
    server.close()


def _sale(seq: int, member_id: str, total: int, at: str = AT, discount: int = 0) -> tuple[OutRow, str]:
    delta = SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U-cashier", at=at,
                      lines=[DeltaLine(1, "SKU00027", 1, total + discount, total + discount, discount, total, 0)],
                      tenders=[DeltaTender("cash", total)], subtotal=total + discount, discount=discount, total=total,
                      tax=0, change=0, journal_seq=seq, member_id=member_id)
    return OutRow(seq, "sale", delta.sale_id, at, msgspec.Raw(delta_encoder.encode(delta))), delta.sale_id


def _return(seq: int, sale_id: str, member_id: str, refund: int, at: str = AT) -> OutRow:
    delta = ReturnDelta(return_id=str(uuid.uuid4()), sale_id=sale_id, user_id="U-cashier", at=at,
                        lines=[ReturnLineDelta(1, 1, refund)], refunds=[DeltaTender("cash", refund)],
                        refund_total=refund, journal_seq=seq, member_id=member_id)
    return OutRow(seq, "return", delta.return_id, at, msgspec.Raw(delta_encoder.encode(delta)))


def _push(hq: Hq, store_id: str, rows: list[OutRow], today: D) -> int:
    """Ingest a batch and run the review the sync endpoint runs after it; the tier changes made."""
    ingest(hq.db, Batch(store_id=store_id, head=max(r.seq for r in rows), rows=rows), AT)
    return member_rules.after_batch(hq.db, hq.private_key, member_rules.members_of_batch(rows), today, AT)


def _tier(hq: Hq, member_id: str) -> str:
    with hq.db.read() as tx:
        row = tx.one("SELECT tier FROM hq_members WHERE member_id = ?", (member_id,))
    assert row is not None
    return str(row[0])


def _fed_members(hq: Hq) -> dict[str, tuple[str, list[str]]]:
    """The newest member rows the feed carried to every store: member_id -> (tier, auto tags)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for entry in read_feed(hq.db, "demo-001", 0, 100_000).entries:
        body = feed_body_decoder.decode(entry.body)
        if isinstance(body, MembersPut) and entry.store == "*":
            out.update((m.member_id, (m.tier, m.auto_tags)) for m in body.members)
    return out


def test_chain_wide_spend_upgrades_after_a_batch_and_downgrade_waits_for_the_review_date(hq: Hq) -> None:
    member_rules.put_settings(hq.db, ADMIN, hq.private_key, TIERS, AT)
    row, sale_id = _sale(1, "M000004", 600)
    assert _push(hq, "demo-001", [row], DAY) == 0  # 600 of 1000
    assert _tier(hq, "M000004") == "regular"
    assert _push(hq, "demo-002", [_sale(1, "M000004", 399)[0]], DAY) == 0  # 999: one fen short
    assert _push(hq, "demo-002", [_sale(2, "M000004", 1)[0]], DAY) == 1  # 1000 across two stores
    assert _tier(hq, "M000004") == "silver"
    assert _fed_members(hq)["M000004"][0] == "silver"

    # A refund takes the figures under the threshold: no downgrade before the review date (a year on)...
    _push(hq, "demo-001", [_return(2, sale_id, "M000004", 600)], DAY)
    assert _tier(hq, "M000004") == "silver"
    assert member_rules.daily_pass(hq.db, hq.private_key, D(2027, 4, 30), AT).tier_changes == 0
    assert _tier(hq, "M000004") == "silver"
    # ...and on it, down to the best tier the (empty) window still reaches.
    assert member_rules.daily_pass(hq.db, hq.private_key, D(2027, 5, 1), AT).tier_changes >= 1
    assert _tier(hq, "M000004") == "regular"
    changes = member_rules.tier_changes(hq.db, member_id="M000004")
    assert [(c.from_tier, c.to_tier, c.reason) for c in changes] == [
        ("regular", "silver", "upgrade"), ("silver", "regular", "downgrade")]
    assert _fed_members(hq)["M000004"][0] == "regular"


def test_visits_rule_counts_tickets_chain_wide(hq: Hq) -> None:
    visits = TierSettings(tiers=[TierDef("regular", "普通会员", "Regular", rank=0, metric="visits", threshold=0),
                                 TierDef("silver", "银卡会员", "Silver", rank=1, metric="visits", threshold=3),
                                 TierDef("gold", "金卡会员", "Gold", rank=2, metric="points", threshold=10**9)])
    member_rules.put_settings(hq.db, ADMIN, hq.private_key, visits, AT)
    _push(hq, "demo-001", [_sale(1, "M000006", 10)[0], _sale(2, "M000006", 10)[0]], DAY)
    assert _tier(hq, "M000006") == "regular"
    _push(hq, "demo-002", [_sale(1, "M000006", 10)[0]], DAY)
    assert _tier(hq, "M000006") == "silver"


def test_the_daily_pass_recomputes_automatic_tags_and_keeps_manual_ones(hq: Hq) -> None:
    member_rules.put_tag_rules(hq.db, ADMIN, [HighValue(name="high_value", min_spend=1000, window_days=30),
                                              Dormant(name="dormant", days=30)], AT)
    _push(hq, "demo-001", [_sale(1, "M000003", 600, discount=100)[0], _sale(2, "M000003", 400)[0]], DAY)
    done = member_rules.daily_pass(hq.db, hq.private_key, DAY, AT)
    assert done.members >= 50 and done.tags_changed >= 1
    with hq.db.read() as tx:
        row = tx.one("""SELECT m.tags, s.auto_tags FROM hq_members m JOIN hq_member_status s
                        ON s.member_id = m.member_id WHERE m.member_id = 'M000003'""")
    assert row is not None and (row[0], row[1]) == ('["mother-baby"]', '["high_value"]')
    assert _fed_members(hq)["M000003"] == ("regular", ["high_value"])
    # 30 days on, the purchases are out of the window and the member is dormant; manual tags stay.
    member_rules.daily_pass(hq.db, hq.private_key, D(2026, 5, 31), AT)
    assert _fed_members(hq)["M000003"] == ("regular", ["dormant"])
    with hq.db.read() as tx:
        tags = tx.one("SELECT tags FROM hq_members WHERE member_id = 'M000003'")
    assert tags is not None and tags[0] == '["mother-baby"]'
    # nothing changed since: the next pass sends nothing down the feed
    assert member_rules.daily_pass(hq.db, hq.private_key, D(2026, 5, 31), AT).feed_seqs == []


def test_rule_writes_are_the_admins_and_audited(hq: Hq) -> None:
    for role in ("region_manager", "hq_operator", "finance", "auditor"):
        with pytest.raises(HqError) as refused:
            member_rules.put_settings(hq.db, Principal("someone", role, ("华东 East",)), hq.private_key, TIERS, AT)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
    member_rules.put_settings(hq.db, ADMIN, hq.private_key, TIERS, AT)
    member_rules.put_tag_rules(hq.db, ADMIN, [Dormant(name="dormant", days=30)], AT)
    with hq.db.read() as tx:
        rows = tx.all("SELECT actor, action, target FROM hq_audit WHERE action IN ('tiers.put', 'tag_rules.put') "
                      "ORDER BY audit_id")
    assert [tuple(r) for r in rows] == [("hq", "tiers.put", "tiers"), ("hq", "tag_rules.put", "tag_rules")]


def test_every_member_rules_endpoint_names_a_known_permission() -> None:
    known = permission_table()
    for route in member_rules_api.ROUTES:
        named = re.findall(r'acting\(request, "([a-z_.]+)"\)', inspect.getsource(route.fn))
        assert len(named) == 1 and named[0] in known, route.fn.__name__
