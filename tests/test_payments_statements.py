"""The providers' bill parsers (edge/payments/statements.py) and the pure matcher (matching.py).

Every layout carries the same planted day: clean payments (by transaction number, by merchant order
number, by amount and time), one of each anomaly kind, clean and mismatched refunds. The matcher
must find exactly the planted anomalies, none on the clean rows, whatever the layout.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.payments import bills, statements
from edge.payments.matching import HubRefund, Tender, match
from edge.payments.statements import StatementError, StatementRow, load_mapping, parse, to_fen

DAY = "2026-12-01T{}+08:00"
PERIOD = (DAY.format("00:00:00"), "2026-12-02T00:00:00+08:00")


def tender(sale: str, amount: int, ref: str | None, at: str, no: int = 1) -> Tender:
    return Tender(sale_id=sale, tender_no=no, method="wechat", amount=amount, reference=ref, time=DAY.format(at))


def refund(ret: str, sale: str, amount: int, at: str, ref: str | None = None, pay_ref: str | None = None) -> HubRefund:
    return HubRefund(
        return_id=ret,
        refund_no=1,
        sale_id=sale,
        method="wechat",
        amount=amount,
        reference=ref,
        payment_reference=pay_ref,
        time=DAY.format(at),
    )


def pay(txn: str, amount: int, at: str, order: str = "", fee: int = 0, kind: str = "payment") -> StatementRow:
    return StatementRow(
        row_no=0,
        kind=kind,  # type: ignore[arg-type]
        transaction_id=txn,
        merchant_order_no=order,
        amount=amount,
        fee=fee,
        time=DAY.format(at),
        store="S01",
    )


def back(
    txn: str, amount: int, at: str, refund_id: str = "", merchant_refund_no: str = "", order: str = ""
) -> StatementRow:
    return StatementRow(
        row_no=0,
        kind="refund",
        transaction_id=txn,
        merchant_order_no=order,
        refund_id=refund_id,
        merchant_refund_no=merchant_refund_no,
        amount=amount,
        fee=-1,
        time=DAY.format(at),
        store="S01",
    )


TENDERS = [
    tender("s1", 1000, "4200001001", "10:00:00"),  # clean, by 微信订单号
    tender("s2", 2550, "ORD2", "10:05:00"),  # clean, by 商户订单号
    tender("s3", 800, None, "10:10:00"),  # clean, by amount and time
    tender("s4", 1200, "4200001004", "10:20:00"),  # amount_mismatch
    tender("s5", 500, "ORD5", "10:30:00"),  # duplicate_payment (two transactions, one order)
    tender("s6", 700, "4200001006", "11:00:00"),  # sale_no_payment
    tender("s10", 1500, None, "13:00:00"),  # duplicate_payment by amount and time
    # rung up before midnight, paid a few seconds after: outside the period, still matched
    msgspec.structs.replace(tender("s11", 900, "4200009911", "00:00:00"), time="2026-11-30T23:59:58+08:00"),
]
REFUNDS = [
    refund("r1", "s1", 400, "15:00:00", ref="RF1", pay_ref="4200001001"),  # clean, by 商户退款单号
    refund("r2", "s2", 600, "15:10:00", pay_ref="ORD2"),  # refund_mismatch: the bill says 650
    refund("r3", "s1", 100, "15:20:00", ref="RF3", pay_ref="4200001001"),  # refund_mismatch: not in the bill
    refund("r4", "s3", 200, "15:30:00"),  # clean, by amount and time
]
ROWS = [
    pay("4200001001", 1000, "10:00:05", fee=6),
    pay("4200001002", 2550, "10:05:03", order="ORD2", fee=15),
    pay("4200001003", 800, "10:11:00", fee=5),
    pay("4200001004", 1100, "10:20:02", fee=7),
    pay("4200001005", 500, "10:30:01", order="ORD5", fee=3),
    pay("4200001055", 500, "10:30:40", order="ORD5", fee=3),
    pay("4200001007", 990, "12:00:00", fee=6),
    pay("4200001010", 1500, "13:01:00", fee=9),
    pay("4200001011", 1500, "13:02:00", fee=9),
    pay("4200009911", 900, "00:00:02", fee=5),  # the sale was rung up before midnight
    back("4200001001", 400, "15:00:09", refund_id="50300001", merchant_refund_no="RF1"),
    back("4200001002", 650, "15:10:04", refund_id="50300002", merchant_refund_no="", order="ORD2"),
    back("4200001009", 250, "15:40:00", refund_id="50300009", merchant_refund_no="RF9"),
    back("4200001003", 200, "15:30:30", refund_id="50300004", merchant_refund_no=""),
]
PLANTED = {
    ("amount_mismatch", "s4", 1200, 1100),
    ("duplicate_payment", "s5", 500, 500),
    ("sale_no_payment", "s6", 700, None),
    ("paid_no_sale", None, None, 990),
    ("duplicate_payment", "s10", 1500, 1500),
    ("refund_mismatch", "s2", 600, 650),
    ("refund_mismatch", "s1", 100, None),
    ("refund_mismatch", None, None, 250),
}
CLEAN = 8  # s1 s2 s3 s5 s10 s11 payments, r1 r4 refunds


def planted(result_anomalies: list[msgspec.Struct]) -> set[tuple[object, ...]]:
    return {(a.kind, a.sale_id, a.expected, a.actual) for a in result_anomalies}  # type: ignore[attr-defined]


def numbered(rows: list[StatementRow]) -> list[StatementRow]:
    return [msgspec.structs.replace(r, row_no=n) for n, r in enumerate(rows, start=1)]


def test_the_planted_day_gives_every_anomaly_and_nothing_else() -> None:
    result = match(numbered(ROWS), TENDERS, REFUNDS, provider="wechat", period=PERIOD)
    assert planted(result.anomalies) == PLANTED
    assert len(result.anomalies) == len(PLANTED)
    assert result.matched == CLEAN
    by = {(m.sale_id, m.kind): m.by for m in result.matches if m.clean}
    assert by[("s1", "payment")] == "transaction"
    assert by[("s2", "payment")] == "order"
    assert by[("s3", "payment")] == "amount_time"
    assert by[("s1", "refund")] == "refund_reference"
    assert by[("s3", "refund")] == "amount_time"
    dup = next(a for a in result.anomalies if a.kind == "duplicate_payment" and a.sale_id == "s5")
    assert dup.reference == "4200001055"  # the later transaction of the two is the duplicate


def test_the_order_of_the_rows_does_not_change_the_outcome() -> None:
    rows = numbered(ROWS)
    first = match(rows, TENDERS, REFUNDS, provider="wechat", period=PERIOD)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        again = match(shuffled, list(reversed(TENDERS)), REFUNDS, provider="wechat", period=PERIOD)
        assert {a.key for a in again.anomalies} == {a.key for a in first.anomalies}
        assert again.matched == first.matched


def test_clean_rows_alone_raise_nothing() -> None:
    rows = numbered([ROWS[i] for i in (0, 1, 2, 4, 9, 10, 13)])
    tenders = [TENDERS[i] for i in (0, 1, 2, 4, 7)]
    result = match(rows, tenders, [REFUNDS[0], REFUNDS[3]], provider="wechat", period=PERIOD)
    assert result.anomalies == []
    assert result.matched == len(rows)


def test_a_tender_outside_the_period_may_match_but_is_never_missing() -> None:
    early = tender("s0", 100, "4200000000", "09:00:00")
    early = msgspec.structs.replace(early, time="2026-11-30T12:00:00+08:00")
    result = match([], [early], [], period=PERIOD)
    assert result.anomalies == []
    assert planted(match([], [early], []).anomalies) == {("sale_no_payment", "s0", 100, None)}


def test_an_unreferenced_payment_outside_the_window_is_not_paired() -> None:
    rows = numbered([pay("4200002001", 800, "10:30:00")])
    result = match(rows, [tender("s3", 800, None, "10:10:00")], [], period=PERIOD, window_s=600)
    assert planted(result.anomalies) == {("paid_no_sale", None, None, 800), ("sale_no_payment", "s3", 800, None)}


def test_a_second_payment_with_a_new_order_number_next_to_a_paid_sale_is_a_duplicate() -> None:
    rows = numbered([pay("4200006001", 700, "10:00:02"), pay("4200006002", 700, "10:01:30", order="RETRY-1")])
    result = match(rows, [tender("s7", 700, "4200006001", "10:00:00")], [], period=PERIOD)
    assert planted(result.anomalies) == {("duplicate_payment", "s7", 700, 700)}
    far = numbered([pay("4200006001", 700, "10:00:02"), pay("4200006002", 700, "11:30:00", order="OTHER")])
    result = match(far, [tender("s7", 700, "4200006001", "10:00:00")], [], period=PERIOD)
    assert planted(result.anomalies) == {("paid_no_sale", None, None, 700)}


def test_a_revoked_payment_pays_nothing() -> None:
    rows = numbered([pay("4200003001", 300, "10:00:01", kind="revoked")])
    result = match(rows, [tender("s8", 300, "4200003001", "10:00:00")], [], period=PERIOD)
    assert planted(result.anomalies) == {("sale_no_payment", "s8", 300, None)}


def test_the_same_refund_twice_in_a_bill_is_a_mismatch() -> None:
    rows = numbered([back("4200001001", 400, "15:00:09", "50300001", "RF1")] * 2)
    result = match(rows, [], [REFUNDS[0]], period=PERIOD)
    assert planted(result.anomalies) == {("refund_mismatch", None, None, 400)}
    assert result.matched == 1


def test_two_partial_refunds_of_one_payment_pair_by_amount() -> None:
    refunds = [
        refund("ra", "s1", 300, "15:00:00", pay_ref="4200001001"),
        refund("rb", "s1", 200, "16:00:00", pay_ref="4200001001"),
    ]
    rows = numbered([back("4200001001", 200, "15:00:05", "50300011"), back("4200001001", 300, "16:00:05", "50300012")])
    result = match(rows, [], refunds, period=PERIOD)
    assert result.anomalies == []
    assert {(m.return_id, m.row_no) for m in result.matches} == {("rb", 1), ("ra", 2)}


@settings(max_examples=60, deadline=None)
@given(
    amounts=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=40),
    referenced=st.lists(st.booleans(), min_size=40, max_size=40),
    plant=st.sampled_from(["none", "short", "missing", "extra", "twice"]),
    seed=st.integers(0, 1000),
)
def test_a_bill_that_mirrors_the_tills_is_clean_and_one_planted_difference_is_found(
    amounts: list[int], referenced: list[bool], plant: str, seed: int
) -> None:
    """Tenders a minute apart; the bill pays each (by reference or, unreferenced, a few seconds later);
    one difference planted at a random tender gives exactly its anomaly."""
    tenders = [
        tender(f"s{n}", amount, f"42{n:08d}" if referenced[n] else None, f"{8 + n // 60:02d}:{n % 60:02d}:00")
        for n, amount in enumerate(amounts)
    ]
    rows = [pay(f"42{n:08d}", t.amount, f"{8 + n // 60:02d}:{n % 60:02d}:05") for n, t in enumerate(tenders)]
    victim = random.Random(seed).randrange(len(tenders))
    v = tenders[victim]
    expected: set[tuple[object, ...]] = set()
    unique = sum(t.amount == v.amount for t in tenders) == 1
    if plant == "short" and v.reference:
        rows[victim] = msgspec.structs.replace(rows[victim], amount=v.amount + 1)
        expected = {("amount_mismatch", v.sale_id, v.amount, v.amount + 1)}
    elif plant == "missing":
        del rows[victim]
        expected = {("sale_no_payment", v.sale_id, v.amount, None)}
    elif plant == "extra":
        rows.append(pay("4299999999", 7777, "23:00:00"))
        expected = {("paid_no_sale", None, None, 7777)}
    elif plant == "twice" and (v.reference or unique):
        rows.append(msgspec.structs.replace(rows[victim], transaction_id="4288888888", merchant_order_no="RETRY"))
        expected = {("duplicate_payment", v.sale_id, v.amount, v.amount)}
    result = match(numbered(rows), tenders, [], provider="wechat", period=PERIOD, window_s=30)
    assert planted(result.anomalies) == expected
    assert result.matched == len(rows) - len(expected) + (1 if plant == "missing" else 0)


# ---------------------------------------------------------------- the layouts


def _alipay(rows: list[StatementRow]) -> list[StatementRow]:
    # Alipay has no revoked rows and no refund number of its own: the 退款批次号 is the merchant's.
    return [r for r in rows if r.kind != "revoked"]


def _unionpay(rows: list[StatementRow]) -> list[StatementRow]:
    # A UnionPay refund carries its own 检索参考号 and the payment's; no merchant refund number.
    return [msgspec.structs.replace(r, merchant_refund_no="") for r in rows]


LAYOUTS: dict[str, tuple[Callable[[list[StatementRow]], bytes], Callable[[bytes], statements.Statement]]] = {
    "wechat": (bills.wechat_bill, statements.parse_wechat),
    "alipay": (lambda rows: bills.alipay_detail(rows), statements.parse_alipay),
    "alipay-zip": (lambda rows: bills.alipay_detail(rows, zipped=True), statements.parse_alipay),
    "unionpay": (
        bills.unionpay_csv,
        lambda data: statements.parse_mapped(data, load_mapping(bills.UNIONPAY_MAPPING.encode())),
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_reads_back_the_rows_and_the_planted_anomalies(layout: str) -> None:
    write, read = LAYOUTS[layout]
    rows = numbered(ROWS)
    if layout.startswith("alipay"):
        rows = [msgspec.structs.replace(r, merchant_refund_no=r.merchant_refund_no or r.refund_id) for r in rows]
    if layout == "unionpay":
        rows = _unionpay(rows)
    data = write(rows)
    statement = read(data)
    assert len(statement.rows) == len(rows)
    got = statement.rows
    assert [(r.kind, r.transaction_id, r.merchant_order_no, r.amount, r.fee, r.time) for r in got] == [
        (r.kind, r.transaction_id, r.merchant_order_no, r.amount, r.fee, r.time) for r in rows
    ]
    # every refund can still be named by its refund number in this layout
    refunds = (
        [msgspec.structs.replace(REFUNDS[0], reference="50300001")] + REFUNDS[1:] if layout == "unionpay" else REFUNDS
    )
    result = match(statement.rows, TENDERS, refunds, provider=statement.provider, period=PERIOD)
    assert planted(result.anomalies) == PLANTED
    assert result.matched == CLEAN
    assert statement.period_start == PERIOD[0]
    assert statement.period_end == PERIOD[1]


def test_wechat_revoked_rows_and_fees_per_provider() -> None:
    rows = numbered([pay("4200004001", 1000, "09:00:00", fee=6), pay("4200004002", 300, "09:10:00", kind="revoked")])
    rows.append(msgspec.structs.replace(back("4200004001", 400, "09:30:00", "50304001", "RF41"), row_no=3))
    statement = statements.parse_wechat(bills.wechat_bill(rows))
    assert [r.kind for r in statement.rows] == ["payment", "revoked", "refund"]
    assert statement.rows[2].refund_id == "50304001"
    assert statement.rows[2].merchant_refund_no == "RF41"
    summary = statements.fees(statement)
    assert (summary.payments, summary.refunds, summary.paid, summary.refunded, summary.fees, summary.net) == (
        1,
        1,
        1000,
        400,
        5,
        595,
    )


def test_row_keys_are_stable_and_keep_repeated_rows_apart() -> None:
    rows = numbered([pay("4200005001", 100, "09:00:00"), pay("4200005001", 100, "09:00:00")])
    assert statements.row_keys("wechat", rows) == ["wechat|payment|4200005001|", "wechat|payment|4200005001|#1"]


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.30", 1230), ("-0.06", -6), ("`0.01", 1), ("￥1,200.00", 120000), ("7", 700), ("", 0), ("0.1", 10)],
)
def test_amounts_are_exact_fen(text: str, fen: int) -> None:
    assert to_fen(text) == fen


@pytest.mark.parametrize("text", ["12.305", "1e400", "abc", "NaN", "Infinity", "99999999999999999.00"])
def test_amounts_that_are_not_fen_are_refused(text: str) -> None:
    with pytest.raises(StatementError):
        to_fen(text)


# ---------------------------------------------------------------- bad files


def _wechat_ok() -> bytes:
    return bills.wechat_bill(numbered(ROWS[:4]))


def _alipay_ok() -> bytes:
    return bills.alipay_detail(numbered(ROWS[:4]))


BAD: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("wechat", "gbk", lambda: _wechat_ok().decode().encode("gbk"), "not UTF-8 text|not utf-8 text"),
    ("wechat", "truncated", lambda: _wechat_ok()[: len(_wechat_ok()) // 2], "truncated|fields"),
    ("wechat", "no totals", lambda: b"\r\n".join(_wechat_ok().split(b"\r\n")[:-3]), "no totals block"),
    (
        "wechat",
        "row lost",
        lambda: b"\r\n".join(_wechat_ok().split(b"\r\n")[:2] + _wechat_ok().split(b"\r\n")[3:]),
        "disagrees with its own totals",
    ),
    ("wechat", "garbage", lambda: bytes(range(256)) * 4, "not"),
    ("wechat", "empty", lambda: b"", "empty"),
    ("wechat", "alipay file", _alipay_ok, "not"),
    ("alipay", "utf-8", lambda: _alipay_ok().decode("gbk").encode("utf-8"), "not GBK|no 支付宝交易号"),
    ("alipay", "truncated", lambda: _alipay_ok()[: len(_alipay_ok()) * 2 // 3], "truncated|fields|not GBK"),
    ("alipay", "garbage", lambda: bytes(range(256)) * 4, "not"),
    ("alipay", "bad zip", lambda: b"PK\x03\x04" + b"\x00" * 40, "zip"),
    ("alipay", "zip without a detail", lambda: _zip({"a.csv": b"hello"}), "holds no"),
    ("alipay", "wechat file", _wechat_ok, "not"),
    ("alipay", "fraction of a fen", lambda: _alipay_ok().replace(b"10.00\t", b"10.005\t", 1), "fraction of a fen"),
    ("csv", "no mapping", lambda: b"x", "needs a mapping"),
]


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buf.getvalue()


@pytest.mark.parametrize(("provider", "what", "make", "says"), BAD, ids=[f"{p}-{w}" for p, w, _m, _s in BAD])
def test_bad_files_are_refused_with_a_reason(provider: str, what: str, make: Callable[[], bytes], says: str) -> None:
    with pytest.raises(StatementError, match=says):
        parse(provider, make())


def test_mapped_csv_refuses_unknown_kinds_and_columns() -> None:
    mapping = load_mapping(bills.UNIONPAY_MAPPING.encode())
    data = bills.unionpay_csv(numbered(ROWS[:2])).replace("消费".encode(), "预授权".encode(), 1)
    with pytest.raises(StatementError, match="not in the mapping's kinds"):
        statements.parse_mapped(data, mapping)
    with pytest.raises(StatementError, match="no column"):
        statements.parse_mapped(b"a,b\n1,2\n", mapping)
    with pytest.raises(StatementError, match="bad mapping"):
        load_mapping(b'provider = "x"\ncolums = 1\n')
    json_mapping = load_mapping(
        b'{"provider": "lakala", "method": "card", "amount_unit": "fen",'
        b' "columns": {"reference": "ref", "amount": "fen", "time": "at"}}',
        "m.json",
    )
    statement = statements.parse_mapped(
        b"ref,fen,at\nL1,1230,2026-12-01 10:00:00\nL2,-230,2026-12-01 11:00:00\n", json_mapping
    )
    assert [(r.kind, r.amount) for r in statement.rows] == [("payment", 1230), ("refund", 230)]
    assert statement.method == "card"
