"""A committed sale's receipt document, as the printer's bridge lays it out (devices/receipt.py).

Pure: the sale's stored response in, a `Receipt` out. The hub sends it in a `print` command, so
the bridge never needs the hub's database.
"""

from __future__ import annotations

import msgspec

from devices.receipt import Receipt, ReceiptLine, ReceiptMember, ReceiptTender, money
from edge.lazy_import import LazyDecoder
from edge.sales.models import ExchangeResult, SaleResult

_sale_decoder = LazyDecoder(lambda: msgspec.json.Decoder(SaleResult))  # built on first use
_exchange_decoder = LazyDecoder(lambda: msgspec.json.Decoder(ExchangeResult))
FOOTER = ["谢谢惠顾 Thank you"]


def decode_sale(body: bytes) -> SaleResult:
    return _sale_decoder.decode(body)


def exchange_sale(body: bytes) -> bytes:
    """The new sale of an exchange's stored answer: its receipt (the returned goods' credit shown as the
    `exchange` tender) is what the till prints, and its cash opens the drawer."""
    return msgspec.json.encode(_exchange_decoder.decode(body).sale)


def receipt_for(sale: SaleResult, store_name: str, cashier: str = "") -> Receipt:
    lines = [ReceiptLine(name=line.name, qty=None if line.unit == "kg" else line.qty,
                         weight_g=line.weight_g if line.unit == "kg" else None, unit_price=line.unit_price,
                         gross=line.gross, discount=line.discount, net=line.net,
                         applied=[a.name for a in line.applied])
             for line in sale.lines]
    member = None
    if sale.member is not None:
        member = ReceiptMember(member_id=sale.member.member_id, points=sale.member.points,
                               balance=sale.member.balance, points_earned=sale.points_earned,
                               balance_as_of=sale.member.balance_as_of)
    tenders = [ReceiptTender(method=t.method, amount=t.amount) for t in sale.tenders]
    if sale.exchange_credit:
        tenders.append(ReceiptTender(method="exchange", amount=sale.exchange_credit))
    return Receipt(store_name=store_name, receipt_no=sale.receipt_no, sale_id=sale.sale_id, at=sale.created_at,
                   till_id=sale.till_id, cashier=cashier, lines=lines, subtotal=sale.subtotal,
                   discount=sale.discount, total=sale.total, tenders=tenders, change=sale.change, member=member,
                   journal_hash=sale.journal_hash, footer=FOOTER)


def paid_cash(sale: SaleResult) -> bool:
    return any(t.method == "cash" for t in sale.tenders)


def display_lines(sale: SaleResult, columns: int = 20) -> list[str]:
    """The customer display after a sale: the total, then the change (a 2 x 20 pole display)."""
    return [f"{'TOTAL':<{columns - 10}}{money(sale.total):>10}", f"{'CHANGE':<{columns - 10}}{money(sale.change):>10}"]
