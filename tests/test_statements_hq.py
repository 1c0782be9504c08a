"""The chain merchant bill at HQ (docs/payments-hq.md) in the service layer, on both back ends (a SQLite
file and a real PostgreSQL): two stores' sales and a refund come in through ingest as the hubs send them; a
WeChat Pay trade bill covering both stores, written in WeChat's layout by edge/payments/bills.py with every
anomaly kind planted, is split by store (by reference, by the provider's store field, or to no store) and
matched; importing it again changes nothing; a region manager sees and resolves his store's part only; a
later bill with the same problem starts resolved; bad files and inputs are 4xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import msgspec
import pytest
import sync_support

from edge.payments.bills import UNIONPAY_MAPPING, alipay_detail, unionpay_csv, wechat_bill
from edge.payments.statements import StatementRow
from hq_sync.protocol import DeltaLine, DeltaTender, ReturnDelta, ReturnLineDelta, SaleDelta, delta_encoder
from hq_sync.server.api.resources import Hq
from hq_sync.server.service import audit, ingest, statements, stores
from hq_sync.server.service.access import Principal, system_principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, OutRow, PairRequest, b64, new_key

hq_db_url = sync_support.hq_db_url
pg_cluster = sync_support.pg_cluster
AT = "2026-05-01T20:00:00.000+08:00"
FINANCE = Principal("finance", "finance")
EAST = Principal("region-east", "region_manager", ("华东 East",))  # demo-001 only
OPERATOR = Principal("operator", "hq_operator")
ADMIN = system_principal("test-admin")


def _sale(seq: int, at: str, tenders: list[DeltaTender]) -> tuple[OutRow, str]:
    total = sum(t.amount for t in tenders)
    delta = SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U", at=at,
                      lines=[DeltaLine(1, "SKU00027", 1, total, total, 0, total, 0)], tenders=tenders,
                      subtotal=total, discount=0, total=total, tax=0, change=0, journal_seq=seq)
    return OutRow(seq, "sale", delta.sale_id, at, msgspec.Raw(delta_encoder.encode(delta))), delta.sale_id


def _return(seq: int, at: str, sale_id: str, refunds: list[DeltaTender]) -> OutRow:
    total = sum(t.amount for t in refunds)
    delta = ReturnDelta(return_id=str(uuid.uuid4()), sale_id=sale_id, user_id="U", at=at,
                        lines=[ReturnLineDelta(1, 1, total)], refunds=refunds, refund_total=total, journal_seq=seq)
    return OutRow(seq, "return", delta.return_id, at, msgspec.Raw(delta_encoder.encode(delta)))


def _t(hhmm: str) -> str:
    return f"2026-05-01T{hhmm}:00+08:00"


def _pay(txn: str, amount: int, fee: int, hhmm: str, order: str = "", store: str = "") -> StatementRow:
    return StatementRow(row_no=0, kind="payment", transaction_id=txn, merchant_order_no=order, amount=amount, fee=fee,
                        time=_t(hhmm), store=store)


def _refund(txn: str, refund_id: str, amount: int, fee: int, hhmm: str) -> StatementRow:
    return StatementRow(row_no=0, kind="refund", transaction_id=txn, refund_id=refund_id, merchant_refund_no="",
                        amount=amount, fee=fee, time=_t(hhmm))


# The chain's day: store A (demo-001, 华东 East) and store B (demo-002, 华北 North), WeChat tenders with the
# provider's transaction number (A) or the merchant order number (B3) as reference.
BILL = [
    _pay("4200000001", 1000, 6, "10:00"),                   # A1 clean
    _pay("4200000002", 2500, 15, "10:05"),                  # A2 clean
    _pay("4200000003", 850, 5, "10:10"),                    # A3: the store took 800 -> amount_mismatch
    _pay("4200000004", 1200, 7, "10:15"),                   # A4 clean
    _refund("4200000004", "5000000001", 1200, -7, "11:00"),  # A4's refund, clean (the hub sent no reference)
    _refund("4200000002", "5000000002", 500, -3, "11:30"),  # a refund of A2 the store never made -> refund_mismatch
    _pay("4200000101", 3000, 18, "12:00"),                  # B1 clean; B2 (1500) is missing -> sale_no_payment
    _pay("4200000103", 999, 6, "12:20", order="M-B3"),      # B3 by merchant order number
    _pay("4200000199", 999, 6, "12:21", order="M-B3"),      # B3 charged twice -> duplicate_payment
    _pay("4200009999", 777, 5, "13:00", order="X-1"),       # nobody's -> chain paid_no_sale
    _pay("4200008888", 555, 3, "13:30", store="DEV-B"),     # B's device, no sale -> paid_no_sale at B
]


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    for store_id in ("demo-001", "demo-002"):
        stores.pair(server.db, PairRequest(store_id=store_id, public_key=b64(new_key()[1]), outbox_head=0, demo=True),
                    server.private_key, server.public_key, True, AT)
    a1, _ = _sale(1, _t("09:59"), [DeltaTender("wechat", 1000, "4200000001")])
    a2, _ = _sale(2, _t("10:04"), [DeltaTender("wechat", 2500, "4200000002")])
    a3, _ = _sale(3, _t("10:09"), [DeltaTender("cash", 200), DeltaTender("wechat", 800, "4200000003")])
    a4, a4_id = _sale(4, _t("10:14"), [DeltaTender("wechat", 1200, "4200000004")])
    a5, _ = _sale(5, _t("10:20"), [DeltaTender("cash", 500)])
    r1 = _return(6, _t("10:59"), a4_id, [DeltaTender("wechat", 1200)])
    ingest.ingest(server.db, Batch("demo-001", 6, [a1, a2, a3, a4, a5, r1]), AT)
    b1, _ = _sale(1, _t("11:59"), [DeltaTender("wechat", 3000, "4200000101")])
    b2, _ = _sale(2, _t("12:10"), [DeltaTender("wechat", 1500, "4200000102")])
    b3, _ = _sale(3, _t("12:19"), [DeltaTender("wechat", 999, "M-B3")])
    b4, _ = _sale(4, _t("12:30"), [DeltaTender("alipay", 4000, "2026050122001")])  # not on a WeChat bill
    ingest.ingest(server.db, Batch("demo-002", 4, [b1, b2, b3, b4]), AT)
    statements.set_store_code(server.db, FINANCE, "wechat", "DEV-B", "demo-002", AT)
    yield server
    server.close()


def _count(hq: Hq, table: str) -> int:
    with hq.db.read() as tx:
        row = tx.one(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


def _found(view: dict[str, object]) -> list[tuple[object, ...]]:
    return sorted((a["store_id"], a["kind"], a["reference"], a["expected"], a["actual"])  # type: ignore[index]
                  for a in view["anomalies"])  # type: ignore[attr-defined]


def test_ingest_keeps_the_provider_tenders_and_refunds_with_their_references(hq: Hq) -> None:
    with hq.db.read() as tx:
        got = [tuple(r) for r in tx.all("""SELECT store_id, doc_kind, method, amount, reference FROM hq_pay_tenders
                                           ORDER BY store_id, at""")]
    a, b = "demo-001", "demo-002"
    assert got == [(a, "sale", "wechat", 1000, "4200000001"), (a, "sale", "wechat", 2500, "4200000002"),
                   (a, "sale", "wechat", 800, "4200000003"), (a, "sale", "wechat", 1200, "4200000004"),
                   (a, "refund", "wechat", 1200, None), (b, "sale", "wechat", 3000, "4200000101"),
                   (b, "sale", "wechat", 1500, "4200000102"), (b, "sale", "wechat", 999, "M-B3"),
                   (b, "sale", "alipay", 4000, "2026050122001")]  # cash never reaches a provider's bill


def test_an_hq_from_before_the_table_fills_it_once_from_its_sale_tenders(hq: Hq) -> None:
    with hq.db.write() as tx:
        tx.run("DELETE FROM hq_pay_tenders")
        tx.run("DELETE FROM hq_meta WHERE key = 'pay_tenders'")
    create_schema(hq.db)
    create_schema(hq.db)  # once: a second start adds nothing
    with hq.db.read() as tx:
        got = [tuple(r) for r in tx.all("""SELECT store_id, doc_kind, method, amount, reference FROM hq_pay_tenders
                                           ORDER BY store_id, at""")]
    assert got == [("demo-001", "sale", "wechat", 1000, None), ("demo-001", "sale", "wechat", 2500, None),
                   ("demo-001", "sale", "wechat", 800, None), ("demo-001", "sale", "wechat", 1200, None),
                   ("demo-002", "sale", "wechat", 3000, None), ("demo-002", "sale", "wechat", 1500, None),
                   ("demo-002", "sale", "wechat", 999, None), ("demo-002", "sale", "alipay", 4000, None)]


def test_a_chain_bill_is_split_by_store_and_every_planted_anomaly_is_found(hq: Hq) -> None:
    out = statements.import_statement(hq.db, FINANCE, "wechat", wechat_bill(BILL), "wechat-0501.csv", AT)
    assert out["duplicate"] is False
    assert (out["provider"], out["method"], out["rows_in_file"], out["first_day"], out["last_day"]) == (
        "wechat", "wechat", 11, "2026-05-01", "2026-05-01")
    split = {s["store_id"]: (s["rows"], s["paid"], s["refunded"], s["fees"], s["matched"], s["anomalies"])
             for s in out["stores"]}
    assert split == {
        "demo-001": (6, 1000 + 2500 + 850 + 1200, 1200 + 500, 6 + 15 + 5 + 7 - 7 - 3, 4, 2),
        "demo-002": (4, 3000 + 999 + 999 + 555, 0, 18 + 6 + 6 + 3, 2, 3),
        "": (1, 777, 0, 5, 0, 1),
    }
    assert out["totals"] == {"paid": 11880, "refunded": 1700, "fees": 61, "net": 11880 - 1700 - 61}
    assert _found(out) == [
        ("", "paid_no_sale", "4200009999", None, 777),
        ("demo-001", "amount_mismatch", "4200000003", 800, 850),
        ("demo-001", "refund_mismatch", "5000000002", None, 500),
        ("demo-002", "duplicate_payment", "4200000199", 999, 999),
        ("demo-002", "paid_no_sale", "4200008888", None, 555),
        ("demo-002", "sale_no_payment", "4200000102", 1500, None),
    ]
    rows = {r["transaction_id"]: (r["store_id"], r["attributed_by"], r["matched"])
            for r in statements.view(hq.db, FINANCE, out["statement_id"], 100)["rows"] if r["kind"] == "payment"}
    assert rows["4200000103"] == ("demo-002", "reference", True)  # by the merchant order number
    assert rows["4200008888"] == ("demo-002", "store_field", False)  # by the mapped device
    assert rows["4200009999"] == ("", "none", False)
    assert [e.action for e in audit.audit_page(hq.db, ADMIN, action="statement.import").entries] == [
        "statement.import"]


def test_importing_the_same_bill_again_changes_nothing(hq: Hq) -> None:
    data = wechat_bill(BILL)
    first = statements.import_statement(hq.db, FINANCE, "wechat", data, "a.csv", AT)
    tables = ("hq_statements", "hq_statement_rows", "hq_statement_stores", "hq_statement_anomalies", "hq_audit")
    before = [_count(hq, t) for t in tables]
    again = statements.import_statement(hq.db, FINANCE, "wechat", data, "a-again.csv", AT)
    assert again["duplicate"] is True and again["statement_id"] == first["statement_id"]
    assert [_count(hq, t) for t in tables] == before
    assert {k: v for k, v in again.items() if k != "duplicate"} == {k: v for k, v in first.items() if k != "duplicate"}


def test_a_region_manager_sees_and_resolves_his_stores_part_only(hq: Hq) -> None:
    sid = statements.import_statement(hq.db, FINANCE, "wechat", wechat_bill(BILL), "a.csv", AT)["statement_id"]
    mine = statements.view(hq.db, EAST, sid, 100)
    assert [s["store_id"] for s in mine["stores"]] == ["demo-001"]
    assert {a["store_id"] for a in mine["anomalies"]} == {"demo-001"}
    assert {r["store_id"] for r in mine["rows"]} == {"demo-001"}
    assert (mine["rows_in_file"], mine["totals"]["paid"]) == (None, 5550)
    listed = statements.listing(hq.db, EAST)["statements"]
    assert [(s["stores"], s["rows"], s["paid"], s["anomalies"], s["open_anomalies"]) for s in listed] == [
        (1, 6, 5550, 2, 2)]
    assert [(s["stores"], s["rows"], s["anomalies"]) for s in statements.listing(hq.db, FINANCE)["statements"]] == [
        (2, 11, 6)]
    by_store = {(a["store_id"], a["kind"]): a["anomaly_no"] for a in statements.view(hq.db, FINANCE, sid)["anomalies"]}
    for other in (("demo-002", "sale_no_payment"), ("", "paid_no_sale")):  # another region's, the chain's
        with pytest.raises(HqError) as refused:
            statements.resolve(hq.db, EAST, sid, by_store[other], "not mine", AT)
        assert (refused.value.status, refused.value.code) == (403, "out_of_scope")
    done = statements.resolve(hq.db, EAST, sid, by_store[("demo-001", "amount_mismatch")],
                              "customer tipped 0.50 through WeChat; booked as other income", AT)
    assert done["resolved_by"] == "region-east"
    with pytest.raises(HqError) as twice:
        statements.resolve(hq.db, FINANCE, sid, by_store[("demo-001", "amount_mismatch")], "again", AT)
    assert (twice.value.status, twice.value.code) == (409, "anomaly_resolved")
    entry = audit.audit_page(hq.db, ADMIN, action="statement.resolve").entries
    assert [(e.actor, e.before["kind"], e.after["note"][:8]) for e in entry] == [
        ("region-east", "amount_mismatch", "customer")]
    assert statements.listing(hq.db, EAST)["statements"][0]["open_anomalies"] == 1
    with pytest.raises(HqError) as upload:
        statements.import_statement(hq.db, EAST, "wechat", wechat_bill(BILL[:2]), "b.csv", AT)
    assert (upload.value.status, upload.value.code) == (403, "forbidden")
    with pytest.raises(HqError) as operator:
        statements.listing(hq.db, OPERATOR)
    assert operator.value.status == 403


def test_a_later_bill_with_the_same_problem_starts_resolved(hq: Hq) -> None:
    sid = statements.import_statement(hq.db, FINANCE, "wechat", wechat_bill(BILL), "day.csv", AT)["statement_id"]
    no = next(a["anomaly_no"] for a in statements.view(hq.db, FINANCE, sid)["anomalies"]
              if a["kind"] == "sale_no_payment")
    statements.resolve(hq.db, FINANCE, sid, no, "WeChat confirmed the payment failed; customer paid cash", AT)
    redownloaded = wechat_bill(BILL, mch_id="1900000110")  # other bytes, the same payments
    later = statements.import_statement(hq.db, FINANCE, "wechat", redownloaded, "day-again.csv", AT)
    assert later["duplicate"] is False and later["rows_new"] == 0
    assert {(a["kind"], a["resolved"]) for a in later["anomalies"] if a["store_id"] == "demo-002"} == {
        ("sale_no_payment", True), ("duplicate_payment", False), ("paid_no_sale", False)}


def test_alipay_and_mapped_csv_bills_are_split_too(hq: Hq) -> None:
    alipay = [StatementRow(row_no=0, kind="payment", transaction_id="2026050122001", merchant_order_no="B4",
                           amount=4000, fee=24, time=_t("12:31"), store="S-002"),
              StatementRow(row_no=0, kind="payment", transaction_id="2026050122777", merchant_order_no="B9",
                           amount=300, fee=2, time=_t("12:40"), store="demo-001")]  # 门店编号 = a store id
    out = statements.import_statement(hq.db, FINANCE, "alipay", alipay_detail(alipay, zipped=True), "ali.zip", AT)
    assert {s["store_id"]: (s["rows"], s["matched"]) for s in out["stores"]} == {"demo-001": (1, 0),
                                                                                  "demo-002": (1, 1)}
    assert _found(out) == [("demo-001", "paid_no_sale", "2026050122777", None, 300)]
    card = [StatementRow(row_no=0, kind="payment", transaction_id="123456789012", amount=100, time=_t("09:00"),
                         store="T-9")]
    with pytest.raises(HqError) as unmapped:
        statements.import_statement(hq.db, FINANCE, "csv", unionpay_csv(card), "up.csv", AT)
    assert (unmapped.value.status, unmapped.value.code) == (409, "no_csv_mapping")
    statements.set_csv_mapping(hq.db, FINANCE, UNIONPAY_MAPPING.encode(), AT)
    up = statements.import_statement(hq.db, FINANCE, "csv", unionpay_csv(card), "up.csv", AT)
    assert (up["method"], _found(up)) == ("unionpay", [("", "paid_no_sale", "123456789012", None, 100)])


BAD = [("wechat", b"", 422, "empty_file"), ("wechat", b"not,a,bill\n1,2,3\n", 422, "bad_statement"),
       ("wechat", wechat_bill(BILL).replace(b"`12.00,", b"`12.001,", 1), 422, "bad_statement"),  # a fraction of a fen
       ("alipay", "交易时间,金额\n".encode("gbk"), 422, "bad_statement"), ("paypal", b"x", 400, "bad_provider")]


def test_a_bad_file_is_a_4xx_and_leaves_nothing(hq: Hq) -> None:
    for provider, data, status, code in BAD:
        with pytest.raises(HqError) as refused:
            statements.import_statement(hq.db, FINANCE, provider, data, "bad.csv", AT)
        assert (refused.value.status, refused.value.code) == (status, code), provider
    assert _count(hq, "hq_statements") == _count(hq, "hq_statement_rows") == 0
    with pytest.raises(HqError) as mapping:
        statements.set_csv_mapping(hq.db, FINANCE, b"[columns]\namount = 1\n", AT)
    assert (mapping.value.status, mapping.value.code) == (422, "bad_mapping")
    with pytest.raises(HqError) as note:
        statements.resolve(hq.db, FINANCE, "no-such", 1, "  ", AT)
    assert (note.value.status, note.value.code) == (422, "note_required")
    with pytest.raises(HqError) as unknown:
        statements.view(hq.db, FINANCE, "no-such")
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_statement")
