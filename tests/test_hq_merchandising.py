"""HQ's catalog, price, promotion, report and transfer services behind the console, in process on both
back ends (a SQLite file and a real PostgreSQL): targeting and region scope, price history and which
stores have a change, CSV imports that apply nothing while a row is bad, promotions from forms with the
hubs' engine, per-rule figures and Z reports from ingest, transfer approval."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import msgspec
import pytest
import sync_support

from hq_sync.protocol import (
    DeltaLine,
    DeltaTender,
    ReturnDelta,
    SaleDelta,
    TransferLineDelta,
    TransferRequestDelta,
    ZReportDelta,
    delta_encoder,
)
from hq_sync.server.api.resources import Hq
from hq_sync.server.service import catalog, price_import, prices, promotions, sales_reports, transfer_approvals
from hq_sync.server.service.access import Principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import read_feed
from hq_sync.server.service.ingest import ingest
from hq_sync.server.service.stores import pair, record_feed_cursors
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, OutRow, PairRequest, PriceChange, PromotionPut, b64, feed_body_decoder, new_key

pg_cluster = sync_support.pg_cluster
hq_db_url = sync_support.hq_db_url

AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = Principal("hq", "hq_admin")
OPERATOR = Principal("operator", "hq_operator")
EAST = Principal("region-east", "region_manager", ("华东 East",))  # demo-001 only
NORTH = Principal("region-north", "region_manager", ("华北 North",))  # demo-002 only


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    yield server
    server.close()


def _pair(hq: Hq, store_id: str) -> None:
    _, public = new_key()
    pair(hq.db, PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, demo=True),
         hq.private_key, hq.public_key, True, AT)


def _feed(hq: Hq, store_id: str, after: int = 0) -> list[tuple[int, object]]:
    return [(e.seq, feed_body_decoder.decode(e.body)) for e in read_feed(hq.db, store_id, after, 1000).entries]


def _count(hq: Hq, sql: str, args: tuple[object, ...] = ()) -> int:
    with hq.db.read() as tx:
        row = tx.one(sql, args)
    assert row is not None
    return int(row[0])


# -- prices -----------------------------------------------------------------------------------------------------

def test_a_region_price_reaches_its_stores_only_and_the_history_says_who_has_it(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    head1 = max(s for s, _ in _feed(hq, "demo-001"))
    head2 = max(s for s, _ in _feed(hq, "demo-002"))
    out = prices.set_price(hq.db, ADMIN, hq.private_key, "SKU00027", 333, [], ["华东 East"], "2026-12-24T08:00", AT)
    assert out["stores"] == ["demo-001"]
    assert out["effective_at"] == "2026-12-24T08:00:00.000+08:00"
    seq = out["feed_seqs"][0]
    east = [b for s, b in _feed(hq, "demo-001", head1)]
    assert east == [PriceChange(prices=[("SKU00027", 333)], effective_at="2026-12-24T08:00:00.000+08:00")]
    assert _feed(hq, "demo-002", head2) == []
    view = prices.item_prices(hq.db, ADMIN, "SKU00027")
    assert view["history"][0]["price"] == 333 and view["history"][0]["previous"] == 290
    assert view["history"][0]["pending"] == ["demo-001"] and view["history"][0]["applied"] == []
    record_feed_cursors(hq.db, [("demo-001", seq)])
    record_feed_cursors(hq.db, [("demo-001", seq - 1)])  # a late poll never moves the cursor back
    view = prices.item_prices(hq.db, ADMIN, "SKU00027")
    assert view["history"][0]["applied"] == ["demo-001"] and view["history"][0]["pending"] == []
    assert {s["store_id"]: s["price"] for s in view["stores"]} == {"demo-001": 333, "demo-002": 290}
    # a region manager sees his store only, and the history of changes that reach it
    east_view = prices.item_prices(hq.db, EAST, "SKU00027")
    assert [s["store_id"] for s in east_view["stores"]] == ["demo-001"]


def test_a_region_manager_reaches_only_his_stores_and_a_refusal_writes_nothing(hq: Hq) -> None:
    before = _count(hq, "SELECT count(*) FROM hq_feed")
    for stores, regions in ((["demo-002"], []), ([], ["华北 North"]), (["demo-001", "demo-002"], [])):
        with pytest.raises(HqError) as err:
            prices.set_price(hq.db, EAST, hq.private_key, "SKU00027", 100, stores, regions, None, AT)
        assert err.value.status == 403 and err.value.code == "out_of_scope"
    for bad, code in (({"stores": ["nowhere"]}, "unknown_store"), ({"regions": ["Mars"]}, "unknown_region")):
        with pytest.raises(HqError) as err:
            prices.set_price(hq.db, ADMIN, hq.private_key, "SKU00027", 100, bad.get("stores", []),
                             bad.get("regions", []), None, AT)
        assert err.value.code == code
    for price, when, code in ((-1, None, "bad_price"), (100_000_001, None, "bad_price"), (100, "tomorrow", "bad_time"),
                              (100, "2026-13-01T00:00", "bad_time"), (100, "2026-12-01", "bad_time")):
        with pytest.raises(HqError) as err:
            prices.set_price(hq.db, ADMIN, hq.private_key, "SKU00027", price, [], [], when, AT)
        assert err.value.code == code
    with pytest.raises(HqError) as err:
        prices.set_price(hq.db, ADMIN, hq.private_key, "NOPE", 100, [], [], None, AT)
    assert err.value.status == 404
    assert _count(hq, "SELECT count(*) FROM hq_feed") == before
    assert _count(hq, "SELECT count(*) FROM hq_price_changes") == 0
    assert _count(hq, "SELECT count(*) FROM hq_audit WHERE action = 'price.set'") == 0
    with pytest.raises(HqError) as err:  # a finance user reads prices but sets none
        prices.set_price(hq.db, Principal("finance", "finance"), hq.private_key, "SKU00027", 1, [], [], None, AT)
    assert err.value.code == "forbidden"
    out = prices.set_price(hq.db, EAST, hq.private_key, "SKU00027", 310, ["demo-001"], [], None, AT)
    assert out["stores"] == ["demo-001"]
    # naming nothing, a region manager reaches all of his stores (never the chain)
    assert prices.set_price(hq.db, EAST, hq.private_key, "SKU00027", 311, [], [], None, AT)["stores"] == ["demo-001"]
    assert _count(hq, "SELECT count(*) FROM hq_audit WHERE action = 'price.set' AND actor = 'region-east'") == 2


# -- CSV import ---------------------------------------------------------------------------------------------------

BAD_FILE = (b"sku,price,store,effective_at\n"
            b"SKU00027,310,demo-001,\n"          # line 2: fine
            b"NOPE,100,,\n"                        # 3: unknown sku
            b"SKU00028,12.5,,\n"                   # 4: bad price (fen are whole)
            b"SKU00029,100,demo-999,\n"            # 5: bad store
            b"SKU00027,320,demo-001,\n"            # 6: duplicate of line 2
            b"SKU00030,100,,next week\n"           # 7: bad time
            b"SKU00031\n")                         # 8: malformed


def test_a_csv_import_with_bad_rows_names_each_line_and_applies_nothing_until_fixed(hq: Hq) -> None:
    before = _count(hq, "SELECT count(*) FROM hq_feed")
    out = price_import.preview(hq.db, ADMIN, BAD_FILE, AT)
    assert out["state"] == "invalid"
    assert [(e[0], e[1]) for e in out["errors"]] == [(3, "unknown_sku"), (4, "bad_price"), (5, "bad_store"),
                                                     (6, "duplicate_row"), (7, "bad_time"), (8, "bad_row")]
    with pytest.raises(HqError) as err:
        price_import.start(hq.db, ADMIN, out["import_id"], AT)
    assert err.value.code == "import_invalid"
    assert _count(hq, "SELECT count(*) FROM hq_feed") == before
    fixed = (b"sku,price_yuan,store,effective_at\n"
             b"SKU00027,3.10,demo-001,\n"
             b"SKU00028,12.50,,\n"
             b"SKU00029,1,\xe5\x8d\x8e\xe5\x8c\x97 North,2026-12-24T08:00:00+08:00\n")  # 华北 North
    ok = price_import.preview(hq.db, ADMIN, fixed, AT)
    assert ok["state"] == "ready" and ok["errors"] == []
    assert [(r["line"], r["price"], r["kind"], r["current_min"]) for r in ok["rows"]] == [
        (2, 310, "store", 290), (3, 1250, "chain", 250), (4, 100, "region", 350)]
    with pytest.raises(HqError):
        price_import.start(hq.db, OPERATOR, ok["import_id"], AT)  # only its maker runs it
    price_import.start(hq.db, ADMIN, ok["import_id"], AT)
    price_import.run_chunks(hq.db, ADMIN, hq.private_key, ok["import_id"], AT)
    done = price_import.view(hq.db, ADMIN, ok["import_id"])
    assert (done["state"], done["done"], done["percent"]) == ("done", 3, 100)
    assert _count(hq, "SELECT count(*) FROM hq_price_changes WHERE source = ?", (f"import:{ok['import_id']}",)) == 3
    assert _count(hq, "SELECT price FROM hq_prices WHERE sku = 'SKU00029' AND store_id = 'demo-002'") == 100
    with pytest.raises(HqError) as err:
        price_import.start(hq.db, ADMIN, ok["import_id"], AT)
    assert err.value.code == "import_done"


def test_a_region_managers_import_may_not_name_the_chain_or_another_region(hq: Hq) -> None:
    out = price_import.preview(hq.db, EAST, b"SKU00027,300\nSKU00027,300,demo-002\nSKU00027,300,demo-001\n", AT)
    assert [(e[0], e[1]) for e in out["errors"]] == [(1, "out_of_scope"), (2, "out_of_scope")]
    for data, code in ((b"", "empty_file"), (b"\xff\xfe", "bad_encoding")):
        with pytest.raises(HqError) as err:
            price_import.preview(hq.db, ADMIN, data, AT)
        assert err.value.code == code


# -- promotions ----------------------------------------------------------------------------------------------------

def _form(**extra: object) -> promotions.PromotionForm:
    base: dict[str, object] = {"rule_id": "enoki-b2g1", "name": "金针菇买2赠1", "name_en": "Enoki: buy 2 get 1",
                               "kind": "buy_n_get_m", "buy": 2, "get": 1, "skus": ["SKU00027"]}
    base.update(extra)
    return msgspec.convert(base, promotions.PromotionForm)


def test_every_rule_kind_has_a_form_that_builds_a_rule_the_hubs_decode() -> None:
    numbers = {"percent_off": {"discount_bp": 1000}, "amount_off": {"amount": 500}, "fixed_price": {"price": 990},
               "buy_n_get_m": {"buy": 2, "get": 1}, "spend_get_off": {"threshold": 20000, "off": 3000},
               "points_multiplier": {"multiplier_pct": 200}, "free_gift": {"gift_sku": "SKU00267"}}
    assert set(numbers) == set(promotions.KINDS)
    for kind, fields in numbers.items():
        rule = promotions.build_rule(_form(kind=kind, **fields), None)
        assert msgspec.to_builtins(rule.benefit)["kind"] == kind
    with pytest.raises(HqError) as err:
        promotions.build_rule(_form(kind="percent_off", discount_bp=0), None)
    assert err.value.code == "invalid_rule"
    with pytest.raises(HqError) as err:
        promotions.build_rule(_form(starts_at="2026-12-02T10:00", ends_at="2026-12-01T10:00"), None)
    assert err.value.code == "invalid_rule"


def test_a_promotion_from_a_form_previews_with_the_engine_goes_down_the_feed_and_stops(hq: Hq) -> None:
    _pair(hq, "demo-001")
    head = max(s for s, _ in _feed(hq, "demo-001"))
    sample = [promotions.SampleLine(sku="SKU00027", qty=3)]
    draft = promotions.preview(hq.db, ADMIN, promotions.PreviewIn(lines=sample, form=_form(regions=["华东 East"])))
    assert draft["draft_applied"] and draft["store_id"] == "demo-001"
    assert draft["total"] == 2 * 290 and draft["lines"][0]["applied"][0]["rule_id"] == "enoki-b2g1"
    with pytest.raises(HqError) as err:  # a region manager cannot reach North
        promotions.create(hq.db, EAST, hq.private_key, _form(regions=["华北 North"]), AT)
    assert err.value.code == "out_of_scope"
    made = promotions.create(hq.db, EAST, hq.private_key, _form(regions=["华东 East"], tiers=["gold"]), AT)
    assert made["rule"]["eligibility"] == {"stores": ["demo-001"], "tiers": ["gold"]}
    with pytest.raises(HqError) as err:
        promotions.create(hq.db, ADMIN, hq.private_key, _form(), AT)
    assert err.value.code == "rule_exists"
    # gold only: a shopper without the tier gets nothing from it
    plain = promotions.preview(hq.db, ADMIN, promotions.PreviewIn(lines=sample, rule_id="enoki-b2g1"))
    assert not plain["draft_applied"] and plain["total"] == 3 * 290
    gold = promotions.preview(hq.db, ADMIN, promotions.PreviewIn(lines=sample, rule_id="enoki-b2g1", tier="gold"))
    assert gold["draft_applied"]
    entries = [b for _, b in _feed(hq, "demo-001", head)]
    assert [type(b) for b in entries] == [PromotionPut] and entries[0].active  # type: ignore[attr-defined]
    listed = {p["rule_id"]: p for p in promotions.listing(hq.db, EAST)}
    assert listed["enoki-b2g1"]["state"] == "active" and listed["enoki-b2g1"]["may_change"]
    assert not any(p["may_change"] for r, p in listed.items() if r != "enoki-b2g1")  # chain-wide rules: not his
    promotions.stop(hq.db, EAST, hq.private_key, "enoki-b2g1", AT)
    stopped = [b for _, b in _feed(hq, "demo-001", head)][-1]
    assert isinstance(stopped, PromotionPut) and stopped.rule_id == "enoki-b2g1" and not stopped.active
    assert promotions.detail(hq.db, ADMIN, "enoki-b2g1")["state"] == "stopped"
    chain_rule = next(r for r in listed if r != "enoki-b2g1")
    with pytest.raises(HqError) as err:
        promotions.stop(hq.db, EAST, hq.private_key, chain_rule, AT)
    assert err.value.status == 403


# -- ingest: per-rule amounts and Z reports; reports and the reconciliation -----------------------------------------

def _row(seq: int, delta: object, kind: str, ref: str, at: str = AT) -> OutRow:
    return OutRow(seq=seq, kind=kind, ref=ref, at=at, payload=msgspec.Raw(delta_encoder.encode(delta)))


def _sale(seq: int, total: int, rules: list[tuple[str, int]], at: str = AT) -> OutRow:
    discount = sum(a for _, a in rules)
    delta = SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U1", at=at,
                      lines=[DeltaLine(1, "SKU00027", 2, 290, total + discount, discount, total, 20, rules=rules)],
                      tenders=[DeltaTender("cash", total)], subtotal=total + discount, discount=discount, total=total,
                      tax=20, change=0, journal_seq=seq)
    return _row(seq, delta, "sale", delta.sale_id, at)


def test_ingest_keeps_each_lines_rule_amounts_and_the_z_reports_which_reconcile(hq: Hq) -> None:
    _pair(hq, "demo-001")
    rows = [_sale(1, 580, [("enoki-b2g1", 290)]), _sale(2, 290, []),
            _sale(3, 400, [("enoki-b2g1", 100), ("tier:gold", 80)], at="2026-05-01T21:30:00.000+08:00")]
    ret = ReturnDelta(return_id=str(uuid.uuid4()), sale_id="x", user_id="U1", at=AT, lines=[], refunds=[],
                      refund_total=50, journal_seq=4)
    z = ZReportDelta(z_no=1, day="2026-05-01", at="2026-05-01T23:00:00.000+08:00", tickets=3, net=1270, refunded=50)
    rows += [_row(4, ret, "return", ret.return_id), _row(5, z, "z_report", "Z1")]
    ack = ingest(hq.db, Batch(store_id="demo-001", head=5, rows=rows), AT)
    assert ack.acked == 5 and ack.quarantined == []
    ingest(hq.db, Batch(store_id="demo-001", head=5, rows=rows), AT)  # a resend counts nothing twice
    with hq.db.write() as tx:  # the demo rule ids are HQ's; the report needs the rule to exist
        tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)",
               ("enoki-b2g1", msgspec.json.encode(msgspec.to_builtins(promotions.build_rule(_form(), None))).decode(),
                AT))
    figures = promotions.report(hq.db, ADMIN, "enoki-b2g1")
    assert (figures["uses"], figures["discount"], figures["covered_sales"]) == (2, 390, 980)
    assert figures["stores"] == [{"store_id": "demo-001", "uses": 2, "discount": 390, "lines": 2,
                                  "covered_sales": 980}]
    assert promotions.report(hq.db, NORTH, "enoki-b2g1")["uses"] == 0
    recon = sales_reports.reconciliation(hq.db, ADMIN, "2026-05-01", "2026-05-01")
    assert recon["mismatches"] == 0
    assert recon["rows"][0] | {"closed_at": None} == {
        "store_id": "demo-001", "day": "2026-05-01", "z_no": 1, "closed_at": None, "z_tickets": 3, "z_net": 1270,
        "z_refunded": 50, "hq_tickets": 3, "hq_net": 1270, "hq_refunded": 50, "matches": True}
    by_hour = sales_reports.sales(hq.db, ADMIN, "hour", "2026-05-01", "2026-05-01")
    assert [(r["hour"], r["tickets"], r["net"]) for r in by_hour["rows"]] == [("10", 2, 870), ("21", 1, 400)]
    by_store = sales_reports.sales(hq.db, EAST, "store", "2026-05-01", "2026-05-01")
    assert [(r["store_id"], r["tickets"], r["net"], r["refunded"]) for r in by_store["rows"]] == [
        ("demo-001", 3, 1270, 50)]
    assert sales_reports.sales(hq.db, NORTH, "region", "2026-05-01", "2026-05-01")["rows"] == []
    by_cat = sales_reports.sales(hq.db, ADMIN, "category", "2026-05-01", "2026-05-01")
    assert [(r["category"], r["lines"], r["net"]) for r in by_cat["rows"]] == [("fresh-veg", 3, 1270)]
    # an HQ that held these sales before it kept the rollups fills them from the sales at its next start
    before = [sales_reports.sales(hq.db, ADMIN, by, "2026-05-01", "2026-05-01") for by in sales_reports.DIMENSIONS]
    with hq.db.write() as tx:
        for table in ("hq_store_hours", "hq_sku_days", "hq_rule_days"):
            tx.run(f"DELETE FROM {table}")
        tx.run("DELETE FROM hq_meta WHERE key = 'sales_rollups'")
    create_schema(hq.db)
    create_schema(hq.db)  # once only
    assert [sales_reports.sales(hq.db, ADMIN, by, "2026-05-01", "2026-05-01")
            for by in sales_reports.DIMENSIONS] == before
    assert promotions.report(hq.db, ADMIN, "enoki-b2g1") == figures
    csv_text = sales_reports.as_csv(sales_reports.sales(hq.db, ADMIN, "day", "2026-05-01", "2026-05-01"))
    assert csv_text.splitlines()[1:] == ["2026-05-01,3,1740,470,1270,423,50"]
    for a, b in (("2026-05-02", "2026-05-01"), ("2026-5-1", ""), ("2020-01-01", "2026-01-01")):
        with pytest.raises(HqError):
            sales_reports.sales(hq.db, ADMIN, "day", a, b)


# -- transfers -------------------------------------------------------------------------------------------------------

def _request(seq: int, transfer_id: str) -> OutRow:
    d = TransferRequestDelta(transfer_id=transfer_id, from_store="demo-002", to_store="demo-001",
                             lines=[TransferLineDelta("SKU00027", 5)], user_id="U1", at=AT, journal_seq=seq)
    return _row(seq, d, "transfer_request", transfer_id)


def test_with_approval_on_a_requested_transfer_waits_until_approved_and_a_rejection_is_never_routed(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    transfer_approvals.set_need_approval(hq.db, ADMIN, True, AT)
    head = max(s for s, _ in _feed(hq, "demo-002"))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    ingest(hq.db, Batch(store_id="demo-001", head=2, rows=[_request(1, first), _request(2, second)]), AT)
    assert _feed(hq, "demo-002", head) == []  # held
    board = transfer_approvals.listing(hq.db, ADMIN, approval="pending")
    assert {t["transfer_id"] for t in board} == {first, second}
    # East's manager sees them (demo-001 asks) but the sender's region (North) decides
    assert all(not t["may_decide"] for t in transfer_approvals.listing(hq.db, EAST))
    with pytest.raises(HqError) as err:
        transfer_approvals.decide(hq.db, EAST, hq.private_key, first, True, "", AT)
    assert err.value.status == 403
    with pytest.raises(HqError) as err:
        transfer_approvals.decide(hq.db, ADMIN, hq.private_key, second, False, "  ", AT)
    assert err.value.code == "reason_required"
    transfer_approvals.decide(hq.db, OPERATOR, hq.private_key, first, True, "", AT)
    transfer_approvals.decide(hq.db, NORTH, hq.private_key, second, False, "北区库存不足", AT)
    routed = [b for _, b in _feed(hq, "demo-002", head)]
    assert [getattr(b, "transfer_id", None) for b in routed] == [first]
    with pytest.raises(HqError) as err:
        transfer_approvals.decide(hq.db, ADMIN, hq.private_key, first, True, "", AT)
    assert err.value.code == "transfer_decided"
    rejected = transfer_approvals.listing(hq.db, ADMIN, approval="rejected")
    assert [(t["transfer_id"], t["approval"]["reason"]) for t in rejected] == [(second, "北区库存不足")]
    with pytest.raises(HqError):  # only an HQ admin changes chain settings
        transfer_approvals.set_need_approval(hq.db, OPERATOR, False, AT)
    transfer_approvals.set_need_approval(hq.db, ADMIN, False, AT)
    third = str(uuid.uuid4())
    ingest(hq.db, Batch(store_id="demo-001", head=3, rows=[_request(3, third)]), AT)
    assert [getattr(b, "transfer_id", None) for _, b in _feed(hq, "demo-002", head)][-1] == third


def test_the_history_of_a_bulk_change_keeps_each_skus_previous_price_and_the_last_of_a_repeated_sku(hq: Hq) -> None:
    with hq.db.read() as tx:
        items = [(str(r[0]), int(r[1])) for r in tx.all("SELECT sku, price FROM hq_items ORDER BY sku LIMIT 250")]
    assert len(items) == 250  # more than prices.BULK: the prices replaced are read in one pass
    catalog.set_prices(hq.db, ADMIN, hq.private_key, [(sku, p + 1) for sku, p in items], None, None, AT)
    catalog.set_prices(hq.db, ADMIN, hq.private_key, [(items[0][0], 7), (items[0][0], 8)], ["demo-001"], None, AT)
    with hq.db.read() as tx:
        chain = {str(r[0]): (int(r[1]), int(r[2])) for r in tx.all(
            "SELECT sku, previous, price FROM hq_price_changes WHERE store_id = '*'")}
        east = tx.all("SELECT sku, previous, price FROM hq_price_changes WHERE store_id = 'demo-001'")
    assert chain == {sku: (p, p + 1) for sku, p in items}
    assert [(str(r[0]), int(r[1]), int(r[2])) for r in east] == [(items[0][0], items[0][1] + 1, 8)]
    assert prices.item_prices(hq.db, ADMIN, items[0][0])["stores"][0]["price"] == 8
