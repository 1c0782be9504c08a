"""Match a bill's rows against the store's tenders and refunds: a pure function.

`match(rows, tenders, refunds)` pairs every row with what the store recorded and reports what does
not pair. The caller passes the tenders and refunds of the bill's tender method (a WeChat bill:
the `wechat` tenders), from the bill's period and a margin around it; only those inside `period`
are reported as missing from the bill.

Payments, in this order:
1. by reference: a tender whose `reference` is the row's provider transaction number (微信订单号,
   支付宝交易号, 检索参考号…) or its merchant order number (商户订单号). Several rows on one tender:
   the one with the tender's amount (else the earliest) is the payment, the others are
   `duplicate_payment`; a lone row with another amount is `amount_mismatch`;
2. by amount and time: a row no reference matched pairs with the nearest unreferenced tender of the
   same amount within `window_s` seconds;
3. what is left: a row is `duplicate_payment` if a tender of its amount within the window is
   already paid, by reference or not (the customer paid that sale twice), else `paid_no_sale`;
   a tender inside the period that no row paid is `sale_no_payment`. A revoked row (WeChat REVOKED) pays nothing.

Refunds: by the refund's own reference (微信退款单号, 商户退款单号 / 退款批次号) or by the original
payment's reference, preferring the refund of the row's amount; then by amount and time for refunds
that carry no reference. Every difference is a `refund_mismatch`: a refund row the store did not
make, a store refund the bill does not show, or the two with different amounts.

Every anomaly carries a `key` that names the same problem across re-imports of a bill, so the store
records it once and a manager's resolution sticks.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from edge.payments.statements import StatementRow, row_keys

AnomalyKind = Literal["paid_no_sale", "sale_no_payment", "amount_mismatch", "duplicate_payment", "refund_mismatch"]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    "paid_no_sale",
    "sale_no_payment",
    "amount_mismatch",
    "duplicate_payment",
    "refund_mismatch",
)
MatchedBy = Literal["transaction", "order", "refund_reference", "payment_reference", "amount_time"]
DEFAULT_WINDOW_S = 600


class Tender(msgspec.Struct, frozen=True, kw_only=True):
    """A sale's tender as the store recorded it (sale_tenders + the sale's time)."""

    sale_id: str
    tender_no: int
    method: str
    amount: int
    reference: str | None = None
    time: str


class HubRefund(msgspec.Struct, frozen=True, kw_only=True):
    """A return's refund to one tender (return_refunds). `reference` is the refund's own reference
    the till supplied (or the original payment's); `payment_reference` the refunded tender's."""

    return_id: str
    refund_no: int
    sale_id: str
    method: str
    amount: int
    reference: str | None = None
    payment_reference: str | None = None
    tender_no: int | None = None
    time: str


class Match(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A row paired with a tender (payment) or a refund; `clean` when the amounts agree."""

    row_no: int
    kind: Literal["payment", "refund"]
    sale_id: str
    by: MatchedBy
    clean: bool = True
    tender_no: int | None = None
    return_id: str | None = None
    refund_no: int | None = None


class Anomaly(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A difference between the bill and the store. `expected` is the store's amount, `actual`
    the bill's (fen)."""

    kind: AnomalyKind
    key: str
    reference: str | None = None
    sale_id: str | None = None
    expected: int | None = None
    actual: int | None = None
    row_no: int | None = None
    tender_no: int | None = None
    return_id: str | None = None
    refund_no: int | None = None


class MatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """`matched` counts rows paired without an anomaly."""

    matches: list[Match]
    anomalies: list[Anomaly]
    matched: int


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class _ByAmount:
    """Unpaired candidates by amount, sorted by time, for the nearest-in-window search."""

    def __init__(self, items: list[tuple[int, float, int]]) -> None:
        self._times: dict[int, list[float]] = {}
        self._ids: dict[int, list[int]] = {}
        for amount, at, idx in sorted(items):
            self._times.setdefault(amount, []).append(at)
            self._ids.setdefault(amount, []).append(idx)

    def take(self, amount: int, at: float, window_s: float) -> int | None:
        """The nearest unpaired candidate of `amount` within the window, removed from the pool."""
        times = self._times.get(amount)
        if not times:
            return None
        best = _near(times, at, window_s)
        if best is None:
            return None
        ids = self._ids[amount]
        idx = ids[best]
        del times[best], ids[best]
        return idx


def _near(times: list[float], at: float, window_s: float) -> int | None:
    """Index of the time nearest `at` within the window in a sorted list, or None."""
    i = bisect.bisect_left(times, at)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(times) and abs(times[j] - at) <= window_s:
            if best is None or abs(times[j] - at) < abs(times[best] - at):
                best = j
    return best


def _in_period(at: float, period: tuple[float, float] | None) -> bool:
    return period is None or period[0] <= at < period[1]


def match(
    rows: Sequence[StatementRow],
    tenders: Sequence[Tender],
    refunds: Sequence[HubRefund],
    *,
    provider: str = "",
    period: tuple[str, str] | None = None,
    window_s: int = DEFAULT_WINDOW_S,
) -> MatchResult:
    """Pair `rows` with `tenders` and `refunds`; see the module docstring for the rules."""
    keys = row_keys(provider, rows)
    span = (_epoch(period[0]), _epoch(period[1])) if period else None
    matches: list[Match] = []
    anomalies: list[Anomaly] = []
    row_at = [_epoch(r.time) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (row_at[i], rows[i].row_no))

    # ---- payments by reference
    by_ref: dict[str, list[int]] = {}
    for t_idx, tender in enumerate(tenders):
        if tender.reference:
            by_ref.setdefault(tender.reference, []).append(t_idx)
    claims: dict[int, list[tuple[int, MatchedBy]]] = {}  # tender -> rows naming it
    loose: list[int] = []
    for i in order:
        row = rows[i]
        if row.kind != "payment":
            continue
        hit: tuple[int, MatchedBy] | None = None
        if row.transaction_id in by_ref:
            hit = (by_ref[row.transaction_id][0], "transaction")
        elif row.merchant_order_no and row.merchant_order_no in by_ref:
            hit = (by_ref[row.merchant_order_no][0], "order")
        if hit is None:
            loose.append(i)
        else:
            claims.setdefault(hit[0], []).append((i, hit[1]))
    paid = [False] * len(tenders)
    for t_idx, claimants in claims.items():
        tender = tenders[t_idx]
        exact = [c for c in claimants if rows[c[0]].amount == tender.amount]
        first = exact[0] if exact else claimants[0]
        paid[t_idx] = True
        row = rows[first[0]]
        clean = row.amount == tender.amount
        matches.append(
            Match(
                row_no=row.row_no,
                kind="payment",
                sale_id=tender.sale_id,
                tender_no=tender.tender_no,
                by=first[1],
                clean=clean,
            )
        )
        if not clean:
            anomalies.append(
                Anomaly(
                    kind="amount_mismatch",
                    key=f"amount_mismatch|{tender.sale_id}|{tender.tender_no}",
                    reference=tender.reference,
                    sale_id=tender.sale_id,
                    tender_no=tender.tender_no,
                    expected=tender.amount,
                    actual=row.amount,
                    row_no=row.row_no,
                )
            )
        for other, _how in claimants:
            if other == first[0]:
                continue
            dup = rows[other]
            anomalies.append(
                Anomaly(
                    kind="duplicate_payment",
                    key=f"duplicate_payment|{keys[other]}",
                    reference=dup.transaction_id,
                    sale_id=tender.sale_id,
                    tender_no=tender.tender_no,
                    expected=tender.amount,
                    actual=dup.amount,
                    row_no=dup.row_no,
                )
            )

    # ---- payments by amount and time, for tenders without a reference
    tender_at = [_epoch(t.time) for t in tenders]
    pool = _ByAmount([(t.amount, tender_at[k], k) for k, t in enumerate(tenders) if not t.reference])
    left: list[int] = []
    for i in loose:
        row = rows[i]
        took = pool.take(row.amount, row_at[i], window_s)
        if took is None:
            left.append(i)
            continue
        paid[took] = True
        tender = tenders[took]
        matches.append(
            Match(
                row_no=row.row_no, kind="payment", sale_id=tender.sale_id, tender_no=tender.tender_no, by="amount_time"
            )
        )
    # A row left over that has the amount of a tender paid close to it (by reference or not) is most
    # likely the customer paying that sale twice (a till that retried with a new order number).
    paid_times: dict[int, list[float]] = {}
    paid_ids: dict[int, list[int]] = {}
    for at, t_idx in sorted((tender_at[k], k) for k in range(len(tenders)) if paid[k]) if left else ():
        paid_times.setdefault(tenders[t_idx].amount, []).append(at)
        paid_ids.setdefault(tenders[t_idx].amount, []).append(t_idx)
    for i in left:
        row = rows[i]
        times = paid_times.get(row.amount)
        near = _near(times, row_at[i], window_s) if times else None
        if times is not None and near is not None:
            twin = tenders[paid_ids[row.amount][near]]
            anomalies.append(
                Anomaly(
                    kind="duplicate_payment",
                    key=f"duplicate_payment|{keys[i]}",
                    reference=row.transaction_id,
                    sale_id=twin.sale_id,
                    tender_no=twin.tender_no,
                    expected=twin.amount,
                    actual=row.amount,
                    row_no=row.row_no,
                )
            )
        else:
            anomalies.append(
                Anomaly(
                    kind="paid_no_sale",
                    key=f"paid_no_sale|{keys[i]}",
                    reference=row.transaction_id,
                    actual=row.amount,
                    row_no=row.row_no,
                )
            )
    for t_idx, tender in enumerate(tenders):
        if not paid[t_idx] and _in_period(tender_at[t_idx], span):
            anomalies.append(
                Anomaly(
                    kind="sale_no_payment",
                    key=f"sale_no_payment|{tender.sale_id}|{tender.tender_no}",
                    reference=tender.reference,
                    sale_id=tender.sale_id,
                    tender_no=tender.tender_no,
                    expected=tender.amount,
                )
            )

    # ---- refunds
    own_ref: dict[str, list[int]] = {}
    pay_ref: dict[str, list[int]] = {}
    for r_idx, refund in enumerate(refunds):
        if refund.reference:
            own_ref.setdefault(refund.reference, []).append(r_idx)
        if refund.payment_reference and refund.payment_reference != refund.reference:
            pay_ref.setdefault(refund.payment_reference, []).append(r_idx)
    done = [False] * len(refunds)
    loose_refunds: list[int] = []
    for i in order:
        row = rows[i]
        if row.kind != "refund":
            continue
        picked: tuple[int, MatchedBy] | None = None
        named = False
        ways: tuple[tuple[tuple[str, str], MatchedBy], ...] = (
            ((row.refund_id, row.merchant_refund_no), "refund_reference"),
            ((row.transaction_id, row.merchant_order_no), "payment_reference"),
        )
        for refs, how in ways:
            cands: list[int] = []
            for ref in refs:
                if ref:
                    cands += own_ref.get(ref, []) + pay_ref.get(ref, [])
            if not cands:
                continue
            named = True
            free = [c for c in cands if not done[c]]
            same = [c for c in free if refunds[c].amount == row.amount]
            if same or free:
                picked = ((same or free)[0], how)
                break
        if picked is None:
            if named:  # every refund it names is already paired: the bill shows it twice
                anomalies.append(_refund_row_anomaly(row, keys[i]))
            else:
                loose_refunds.append(i)
            continue
        r_idx, how = picked
        done[r_idx] = True
        refund = refunds[r_idx]
        clean = refund.amount == row.amount
        matches.append(
            Match(
                row_no=row.row_no,
                kind="refund",
                sale_id=refund.sale_id,
                return_id=refund.return_id,
                refund_no=refund.refund_no,
                by=how,
                clean=clean,
            )
        )
        if not clean:
            anomalies.append(
                Anomaly(
                    kind="refund_mismatch",
                    key=f"refund_mismatch|{refund.return_id}|{refund.refund_no}",
                    reference=refund.reference or row.refund_id or row.transaction_id,
                    sale_id=refund.sale_id,
                    return_id=refund.return_id,
                    refund_no=refund.refund_no,
                    expected=refund.amount,
                    actual=row.amount,
                    row_no=row.row_no,
                )
            )
    refund_at = [_epoch(r.time) for r in refunds]
    refund_pool = _ByAmount(
        [
            (r.amount, refund_at[k], k)
            for k, r in enumerate(refunds)
            if not r.reference and not r.payment_reference and not done[k]
        ]
    )
    for i in loose_refunds:
        row = rows[i]
        got = refund_pool.take(row.amount, row_at[i], window_s)
        if got is None:
            anomalies.append(_refund_row_anomaly(row, keys[i]))
            continue
        done[got] = True
        refund = refunds[got]
        matches.append(
            Match(
                row_no=row.row_no,
                kind="refund",
                sale_id=refund.sale_id,
                return_id=refund.return_id,
                refund_no=refund.refund_no,
                by="amount_time",
            )
        )
    for r_idx, refund in enumerate(refunds):
        if not done[r_idx] and _in_period(refund_at[r_idx], span):
            anomalies.append(
                Anomaly(
                    kind="refund_mismatch",
                    key=f"refund_mismatch|{refund.return_id}|{refund.refund_no}",
                    reference=refund.reference or refund.payment_reference,
                    sale_id=refund.sale_id,
                    return_id=refund.return_id,
                    refund_no=refund.refund_no,
                    expected=refund.amount,
                )
            )
    matches.sort(key=lambda m: m.row_no)
    return MatchResult(matches=matches, anomalies=anomalies, matched=sum(m.clean for m in matches))


def _refund_row_anomaly(row: StatementRow, key: str) -> Anomaly:
    return Anomaly(
        kind="refund_mismatch",
        key=f"refund_mismatch|{key}",
        reference=row.refund_id or row.merchant_refund_no or row.transaction_id,
        actual=row.amount,
        row_no=row.row_no,
    )
