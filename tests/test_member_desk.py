"""The members desk in the service layer (hq_sync/server/service/member_desk.py), on both back ends (a SQLite
file and a real PostgreSQL): search by phone, last four digits, card, id and name, masked per role;
per-store detail only in scope; adjustments append-only, once, audited, within `balance ≥ Σ escrow ≥ 0`;
tier and tags down the feed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sync_support

from hq_sync.server.api.resources import Hq
from hq_sync.server.service import member_desk, members, stores
from hq_sync.server.service.access import Principal, system_principal
from hq_sync.server.service.errors import HqError
from hq_sync.wire import PairRequest, b64, new_key

hq_db_url = sync_support.hq_db_url
pg_cluster = sync_support.pg_cluster
AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = system_principal("test-admin")
EAST = Principal("region-east", "region_manager", ("华东 East",))
FINANCE = Principal("finance", "finance")


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    for store_id in ("demo-001", "demo-002"):
        _, public = new_key()
        stores.pair(server.db, PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, demo=True),
                    server.private_key, server.public_key, True, AT)
    yield server
    server.close()


def _one(hq: Hq, sql: str, args: tuple[object, ...] = ()) -> tuple[object, ...]:
    with hq.db.read() as tx:
        row = tx.one(sql, args)
    assert row is not None
    return row


def test_search_masks_for_roles_without_members_phone_and_records_unmasked_views(hq: Hq) -> None:
    for query in ("13800138000", "8000", "8800000001", "m000001", "董颖"):
        assert [h["member_id"] for h in member_desk.search(hq.db, ADMIN, query, AT)][:1] == ["M000001"], query
    masked = member_desk.search(hq.db, FINANCE, "13800138000", AT)
    assert [(h["phone"], h["card_no"], h["name"], h["birthday"], h["masked"]) for h in masked] == \
        [("138****8000", "880***0001", "董*", None, True)]
    assert member_desk.search(hq.db, ADMIN, "%", AT) == []  # LIKE wildcards are plain characters
    assert member_desk.search(hq.db, ADMIN, "", AT) == []
    with pytest.raises(HqError) as too_long:
        member_desk.search(hq.db, ADMIN, "9" * 65, AT)
    assert too_long.value.status == 400
    with hq.db.read() as tx:
        views = tx.all("SELECT username, member_id, via FROM hq_pii_views ORDER BY view_id")
    assert ("finance", "M000001", "console search") not in views
    assert views.count(("test-admin", "M000001", "console search")) == 5


def test_per_store_detail_stays_in_the_region_and_the_sums_still_add_up(hq: Hq) -> None:
    members.grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 3000, AT)
    members.grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-002", "value", 2000, AT)
    everything = member_desk.detail(hq.db, ADMIN, "M000001", AT)
    east = member_desk.detail(hq.db, EAST, "M000001", AT)
    assert everything["escrow"] == {"demo-001": {"value": 3000, "points": 0}, "demo-002": {"value": 2000, "points": 0}}
    assert east["escrow"] == {"demo-001": {"value": 3000, "points": 0}}
    assert east["escrow_other_stores"] == {"value": 2000, "points": 0}
    assert east["unallocated_balance"] == everything["unallocated_balance"] == everything["balance"] - 5000
    assert east["pii_views"] is None and everything["pii_views"] is not None


def test_adjustments_are_ledger_entries_once_audited_and_keep_escrow_covered(hq: Hq) -> None:
    balance = int(_one(hq, "SELECT balance FROM hq_members WHERE member_id = 'M000001'")[0])
    members.grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", balance - 500, AT)
    up = member_desk.Adjustment("adj-0000-1", "value", 1234, " goodwill ")
    first = member_desk.adjust(hq.db, ADMIN, "M000001", up, AT)
    again = member_desk.adjust(hq.db, ADMIN, "M000001", up, AT)
    assert (first["balance"], first["repeated"], again["balance"], again["repeated"]) == \
        (balance + 1234, False, balance + 1234, True)
    with pytest.raises(HqError) as conflict:
        member_desk.adjust(hq.db, ADMIN, "M000001", member_desk.Adjustment("adj-0000-1", "value", 1, "x"), AT)
    assert conflict.value.code == "id_conflict"
    with pytest.raises(HqError) as held:  # 1734 unallocated: 1735 would dip into demo-001's escrow
        member_desk.adjust(hq.db, ADMIN, "M000001", member_desk.Adjustment("adj-0000-2", "value", -1735, "x"), AT)
    assert (held.value.code, held.value.extra["unallocated"]) == ("escrow_held", 1734)
    with pytest.raises(HqError) as short:
        member_desk.adjust(hq.db, ADMIN, "M000001", member_desk.Adjustment("adj-0000-3", "points", -10**6, "x"), AT)
    assert short.value.code == "insufficient_points"
    done = member_desk.adjust(hq.db, ADMIN, "M000001", member_desk.Adjustment("adj-0000-4", "value", -1734, "x"), AT)
    assert done["balance"] == balance - 500
    assert _one(hq, "SELECT sum(outstanding) FROM hq_escrow WHERE member_id = 'M000001' AND ledger = 'value'") == \
        (balance - 500,)
    assert _one(hq, "SELECT sum(delta) FROM hq_member_ledger WHERE member_id = 'M000001' AND ledger = 'value'") == \
        (balance - 500,)
    assert _one(hq, "SELECT count(*) FROM hq_audit WHERE action = 'member.adjust'") == (2,)
    before, after = _one(hq, "SELECT before_json, after_json FROM hq_audit WHERE action = 'member.adjust' "
                             "ORDER BY audit_id LIMIT 1")
    assert json.loads(str(before))["balance"] == balance and json.loads(str(after))["reason"] == "goodwill"
    for bad in (member_desk.Adjustment("short", "value", 1, "x"), member_desk.Adjustment("adj-0000-5", "cash", 1, "x"),
                member_desk.Adjustment("adj-0000-6", "value", 0, "x"),
                member_desk.Adjustment("adj-0000-7", "value", member_desk.MAX_ADJUST + 1, "x"),
                member_desk.Adjustment("adj-0000-8", "value", 1, "  ")):
        with pytest.raises(HqError) as refused:
            member_desk.adjust(hq.db, ADMIN, "M000001", bad, AT)
        assert 400 <= refused.value.status < 500
    with pytest.raises(HqError) as forbidden:
        member_desk.adjust(hq.db, FINANCE, "M000001", member_desk.Adjustment("adj-0000-9", "value", 1, "x"), AT)
    assert forbidden.value.status == 403
    assert _one(hq, "SELECT count(*) FROM hq_member_adjustments") == (2,)


def test_tier_and_tags_go_down_the_feed_and_a_region_manager_changes_only_his_members(hq: Hq) -> None:
    with hq.db.write() as tx:
        tx.run("UPDATE hq_members SET home_store = 'demo-002' WHERE member_id = 'M000002'")
    feed = int(_one(hq, "SELECT count(*) FROM hq_feed WHERE kind = 'members' AND store_id = '*'")[0])
    done = member_desk.edit(hq.db, hq.private_key, EAST, "M000001", member_desk.ProfileEdit("silver", ["vip", "团购"]),
                            AT)
    assert (done["tier"], done["tags"], done["changed"]) == ("silver", ["vip", "团购"], True)
    assert _one(hq, "SELECT count(*) FROM hq_feed WHERE kind = 'members' AND store_id = '*'") == (feed + 1,)
    with pytest.raises(HqError) as other:
        member_desk.edit(hq.db, hq.private_key, EAST, "M000002", member_desk.ProfileEdit("gold"), AT)
    assert other.value.code == "out_of_scope"
    with pytest.raises(HqError) as other_adjust:
        member_desk.adjust(hq.db, EAST, "M000002", member_desk.Adjustment("adj-east-1", "points", 5, "x"), AT)
    assert other_adjust.value.code == "out_of_scope"
    with pytest.raises(HqError) as tier:
        member_desk.edit(hq.db, hq.private_key, ADMIN, "M000002", member_desk.ProfileEdit("diamond"), AT)
    assert tier.value.code == "unknown_tier"
    assert member_desk.may_change(hq.db, EAST, "M000001") and not member_desk.may_change(hq.db, EAST, "M000002")
    assert _one(hq, "SELECT count(*) FROM hq_audit WHERE action = 'member.edit'") == (1,)
