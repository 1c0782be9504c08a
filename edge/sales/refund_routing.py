"""Refund routing: which of a sale's tenders a return's refund goes back to, and with what reference.

The refund is shared out over the sale's tenders in REFUND_ORDER (member stored value and points
first, then card and wallets, cash last) and, within one method, in tender order; each tender takes
at most what it has left (what it paid less what earlier returns gave back to it; cash less the
change). The parts are whole fen and add up to the refund exactly; whatever no tender can take
(only after explicit refunds elsewhere, or a sale paid with exchange credit) goes back as cash.

Each part names its `tender_no` and a `reference`: the one the till supplied for that tender's refund
(the merchant refund number it sent to WeChat Pay or Alipay), else the original payment's reference.
A provider's bill names the refund by both, so the statement matcher (edge/payments/matching.py)
pairs it either way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

import msgspec

from edge.errors import ApiError
from edge.sales.models import Refund, TenderRefund

REFUND_ORDER = ("stored_value", "points", "card", "unionpay", "alipay", "wechat", "cash")


class PaidTender(msgspec.Struct, frozen=True):
    """A tender of the sale and what it can still take back."""

    tender_no: int
    method: str
    room: int
    reference: str | None = None


def allocate(
    amount: int, tenders: Sequence[PaidTender], references: Mapping[int, str] | None = None
) -> list[TenderRefund]:
    """Share `amount` out over `tenders` in REFUND_ORDER then tender order, each up to its room."""
    refs = references or {}
    rank = {method: n for n, method in enumerate(REFUND_ORDER)}
    out: list[TenderRefund] = []
    left = amount
    for t in sorted((t for t in tenders if t.method in rank), key=lambda t: (rank[t.method], t.tender_no)):
        if left <= 0:
            break
        if t.room > 0:
            take = min(t.room, left)
            out.append(TenderRefund(t.method, take, t.tender_no, refs.get(t.tender_no, t.reference)))
            left -= take
    if left > 0:
        out.append(TenderRefund("cash", left))
    return out


def allocate_to_method(
    amount: int, method: str, tenders: Sequence[PaidTender], references: Mapping[int, str] | None = None
) -> list[TenderRefund]:
    """An explicit `refund_method`: all of it to that method, named by the sale's tenders of that
    method while they have room; the rest (or all, if the sale has none) without a tender."""
    refs = references or {}
    out: list[TenderRefund] = []
    left = amount
    for t in sorted((t for t in tenders if t.method == method), key=lambda t: t.tender_no):
        if left <= 0:
            break
        if t.room > 0:
            take = min(t.room, left)
            out.append(TenderRefund(method, take, t.tender_no, refs.get(t.tender_no, t.reference)))
            left -= take
    if left > 0:
        out.append(TenderRefund(method, left))
    return out


def by_method(parts: Sequence[TenderRefund]) -> list[Refund]:
    """The parts summed per method, in the order the methods first appear (the answer's `refunds`)."""
    sums: dict[str, int] = {}
    for p in parts:
        sums[p.method] = sums.get(p.method, 0) + p.amount
    return [Refund(method, amount) for method, amount in sums.items()]


def paid_tenders(conn: sqlite3.Connection, sale_id: str, change: int) -> list[PaidTender]:
    """The sale's tenders with what each has left to refund."""
    rows = conn.execute(
        "SELECT tender_no, method, amount, reference FROM sale_tenders WHERE sale_id = ? ORDER BY tender_no", (sale_id,)
    ).fetchall()
    room = {int(r[0]): int(r[2]) for r in rows}
    by_no = {int(r[0]): r for r in rows}
    for no in sorted((n for n, r in by_no.items() if r[1] == "cash"), reverse=True):
        take = min(room[no], change)  # the change came out of the drawer: cash paid less change
        room[no] -= take
        change -= take
    legacy: dict[str, int] = {}
    for tender_no, method, amount in conn.execute(
        """SELECT f.tender_no, f.method, f.amount FROM return_refunds f JOIN returns r ON r.return_id = f.return_id
           WHERE r.sale_id = ?""",
        (sale_id,),
    ):
        if tender_no is not None and tender_no in room:
            room[tender_no] -= amount
        else:  # refunds made before tenders were named: taken from that method's tenders in order
            legacy[method] = legacy.get(method, 0) + amount
    for no in sorted(by_no):
        method = by_no[no][1]
        take = min(max(room[no], 0), legacy.get(method, 0))
        if take:
            room[no] -= take
            legacy[method] -= take
    return [PaidTender(no, by_no[no][1], max(room[no], 0), by_no[no][3]) for no in sorted(by_no)]


def check_references(tenders: Sequence[PaidTender], references: Mapping[int, str]) -> None:
    """A supplied refund reference must name one of the sale's tenders."""
    known = {t.tender_no for t in tenders}
    for tender_no in references:
        if tender_no not in known:
            raise ApiError(422, "unknown_tender", f"the sale has no tender {tender_no}", tender_no=tender_no)
