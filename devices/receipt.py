"""The receipt document a print command carries, and its ESC/POS layout (python-escpos).

The hub fills a `Receipt` from the committed sale; the printer's bridge lays it out for its model:
columns from the python-escpos profile, Chinese in GB18030 mode or as raster per the profile, the
receipt id as a native QR code where the model has one, and a cut where it has a cutter.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import msgspec

from devices.codecs import escpos  # before python-escpos itself: it sets python-escpos's cache directory


class ReceiptLine(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    qty: int | None = None
    weight_g: int | None = None
    unit_price: int
    gross: int
    discount: int = 0
    net: int
    applied: list[str] = []  # names of the promotions behind the discount


class ReceiptTender(msgspec.Struct, frozen=True):
    method: str
    amount: int


class ReceiptMember(msgspec.Struct, frozen=True, kw_only=True):
    member_id: str
    points: int  # chain-wide on a paired hub, as of `balance_as_of` (HQ's last figure plus this store's since)
    balance: int
    points_earned: int = 0
    balance_as_of: str | None = None


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    store_name: str
    receipt_no: str
    sale_id: str
    at: str
    till_id: str = ""
    cashier: str = ""
    lines: list[ReceiptLine]
    subtotal: int
    discount: int = 0
    total: int
    tenders: list[ReceiptTender]
    change: int = 0
    member: ReceiptMember | None = None
    journal_hash: str = ""
    header: list[str] = []
    footer: list[str] = []


TENDER_NAMES = {"cash": "现金 Cash", "card": "银行卡 Card", "alipay": "支付宝 Alipay", "wechat": "微信 WeChat",
                "unionpay": "云闪付 UnionPay", "stored_value": "储值 Stored value", "points": "积分 Points"}


def money(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def two_columns(left: str, right: str, columns: int) -> str:
    """`left` and `right` on one line of `columns` display columns (CJK characters are two wide)."""
    gap = columns - width(left) - width(right)
    if gap < 1:
        cut: list[str] = []
        for ch in left:
            if width("".join(cut) + ch) + width(right) + 1 > columns:
                break
            cut.append(ch)
        left, gap = "".join(cut), max(1, columns - width("".join(cut)) - width(right))
    return left + " " * gap + right


def layout(receipt: Receipt, columns: int) -> list[str]:
    """The receipt's text lines, before any printer commands (shared by ESC/POS and previews)."""
    rule = "-" * columns
    out: list[str] = [receipt.store_name, *receipt.header, rule]
    out.append(two_columns("小票 Receipt", receipt.receipt_no, columns))
    out.append(receipt.at)
    if receipt.till_id or receipt.cashier:
        out.append(two_columns(f"Till {receipt.till_id}", receipt.cashier, columns))
    out.append(rule)
    for line in receipt.lines:
        out.append(line.name)
        if line.weight_g is not None:
            quantity = f"  {line.weight_g / 1000:.3f} kg x {money(line.unit_price)}/kg"
        else:
            quantity = f"  {line.qty or 1} x {money(line.unit_price)}"
        out.append(two_columns(quantity, money(line.gross), columns))
        if line.discount:
            out.append(two_columns("  " + (", ".join(line.applied) or "优惠 Discount"), money(-line.discount),
                                   columns))
    out.append(rule)
    out.append(two_columns("小计 Subtotal", money(receipt.subtotal), columns))
    if receipt.discount:
        out.append(two_columns("优惠 Discount", money(-receipt.discount), columns))
    out.append(two_columns("合计 TOTAL", money(receipt.total), columns))
    for tender in receipt.tenders:
        out.append(two_columns(TENDER_NAMES.get(tender.method, tender.method), money(tender.amount), columns))
    if receipt.change:
        out.append(two_columns("找零 Change", money(receipt.change), columns))
    if receipt.member is not None:
        member = receipt.member
        out.append(rule)
        out.append(two_columns("会员 Member", member.member_id, columns))
        earned = f" (+{member.points_earned})" if member.points_earned else ""
        out.append(two_columns("积分 Points", f"{member.points}{earned}", columns))
        out.append(two_columns("余额 Balance", money(member.balance), columns))
        if member.balance_as_of:  # the chain-wide figures: HQ's as of then, with this store's since
            out.append(two_columns("截至 As of", member.balance_as_of[:16].replace("T", " "), columns))
    if receipt.journal_hash:
        out.append(two_columns("Journal", receipt.journal_hash[:8].upper(), columns))
    out.extend(receipt.footer)
    return out


def render(receipt: Receipt, params: object, capabilities: Sequence[str]) -> bytes:
    """ESC/POS bytes for this receipt on the model described by `params` (escpos.Params)."""
    from escpos.printer import Dummy  # type: ignore[import-untyped]

    assert isinstance(params, escpos.Params)
    columns = escpos.columns(params)
    lines = layout(receipt, columns)
    p = Dummy(profile=params.escpos_profile)
    p.hw("INIT")
    p.set(align="center", double_height=True, bold=True)
    escpos.text_bytes(params, lines[0], p)
    p.set(align="left", normal_textsize=True, bold=False)
    for line in lines[1:]:
        bold = line.startswith("合计")
        if bold:
            p.set(bold=True, double_height=True)
        escpos.text_bytes(params, line, p)
        if bold:
            p.set(bold=False, normal_textsize=True)
    if "qr" in capabilities:
        p.set(align="center")
        p.qr(receipt.sale_id, native=True, size=4)
        p.set(align="left")
    else:
        escpos.text_bytes(params, receipt.sale_id, p)
    if "cut" in capabilities and params.cut != "none":
        p.cut(mode="PART" if params.cut == "partial" else "FULL")
    return bytes(p.output)
