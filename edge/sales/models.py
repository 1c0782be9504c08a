"""Wire shapes of the till API for quotes, sales, returns and top-ups (strictly decoded)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from edge.members.models import Spendable
from edge.pricing.engine import PricedLine
from edge.promotions.outcome import Hint

Code = Annotated[str, Meta(min_length=1, max_length=64)]
Qty = Annotated[int, Meta(ge=1, le=9_999)]
Grams = Annotated[int, Meta(ge=1, le=200_000)]
Fen = Annotated[int, Meta(ge=1, le=100_000_000)]
Reference = Annotated[str, Meta(max_length=128)]

TenderMethod = Literal["cash", "card", "alipay", "wechat", "unionpay", "stored_value", "points"]
TopupMethod = Literal["cash", "card", "alipay", "wechat", "unionpay"]
MEMBER_TENDERS = ("stored_value", "points")


class LineIn(msgspec.Struct, frozen=True, omit_defaults=True):
    barcode: Code | None = None
    sku: Code | None = None
    qty: Qty | None = None
    weight_g: Grams | None = None
    reward: bool = False  # 积分兑换: the item is paid with points (edge/members/points.py), the line's net is 0


class QuoteRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    lines: Annotated[list[LineIn], Meta(min_length=1, max_length=500)]
    member_id: Code | None = None
    coupon_codes: Annotated[list[Code], Meta(max_length=20)] = []


class TenderIn(msgspec.Struct, frozen=True, omit_defaults=True):
    method: TenderMethod
    amount: Fen
    reference: Reference | None = None


class SaleRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    sale_id: uuid.UUID
    till_id: Code
    lines: Annotated[list[LineIn], Meta(min_length=1, max_length=500)]
    tenders: Annotated[list[TenderIn], Meta(max_length=10)]
    member_id: Code | None = None
    coupon_codes: Annotated[list[Code], Meta(max_length=20)] = []


class MemberSummary(msgspec.Struct, frozen=True):
    """The member on a quote or sale answer (and its receipt): chain-wide `balance`/`points` as of
    `balance_as_of`, and what this store may spend (edge/members/chainwide.py)."""

    member_id: str
    tier: str
    points: int
    balance: int
    balance_as_of: str | None = None
    spendable_here: Spendable | None = None


class QuoteResult(msgspec.Struct, frozen=True):
    lines: list[PricedLine]
    subtotal: int
    discount: int
    total: int
    tax: int
    points_earned: int
    member: MemberSummary | None = None
    hints: list[Hint] = []  # 凑单: rules the basket misses, and by how much


class SaleResult(msgspec.Struct, frozen=True):
    sale_id: str
    receipt_no: str
    till_id: str
    created_at: str
    lines: list[PricedLine]
    subtotal: int
    discount: int
    total: int
    tax: int
    tenders: list[TenderIn]
    tendered: int
    change: int
    points_earned: int
    points_redeemed: int
    member: MemberSummary | None
    journal_seq: int
    journal_hash: str
    exchange_credit: int = 0
    points_reward: int = 0  # points exchanged for reward lines


class ReturnLineIn(msgspec.Struct, frozen=True, omit_defaults=True):
    line_no: Annotated[int, Meta(ge=1, le=500)]
    qty: Qty | None = None
    weight_g: Grams | None = None


class RefundReferenceIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The reference a till used for the refund of one of the sale's tenders (e.g. the 商户退款单号
    it sent to WeChat Pay); without one, the refund carries the tender's payment reference."""

    tender_no: Annotated[int, Meta(ge=1, le=10)]
    reference: Annotated[str, Meta(min_length=1, max_length=128)]


class ReturnRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    return_id: uuid.UUID
    sale_id: uuid.UUID
    lines: Annotated[list[ReturnLineIn], Meta(min_length=1, max_length=500)]
    refund_method: TenderMethod | None = None
    till_id: Code | None = None
    reason: Annotated[str, Meta(max_length=200)] = ""
    refund_references: Annotated[list[RefundReferenceIn], Meta(max_length=10)] = []


class ReturnedLine(msgspec.Struct, frozen=True):
    line_no: int
    sku: str
    qty: int
    weight_g: int | None
    refund: int


class Refund(msgspec.Struct, frozen=True):
    method: str
    amount: int


class TenderRefund(msgspec.Struct, frozen=True, omit_defaults=True):
    """A part of a return's refund and the sale tender it goes back to (edge/sales/refund_routing.py);
    no `tender_no` when no tender of the sale could take it (it then goes back as cash, or to an
    explicit `refund_method` the sale was not paid with)."""

    method: str
    amount: int
    tender_no: int | None = None
    reference: str | None = None


class ReturnResult(msgspec.Struct, frozen=True):
    return_id: str
    sale_id: str
    created_at: str
    lines: list[ReturnedLine]
    refund_total: int
    refunds: list[Refund]
    points_reversed: int
    member: MemberSummary | None
    journal_seq: int
    journal_hash: str
    points_reward_returned: int = 0  # points given back for returned reward lines
    clawback: int = 0  # 满减 taken back from the refund (hub option return_clawback); refund_total is net of it
    refunds_by_tender: list[TenderRefund] = []  # `refunds` per tender, with the reference the bill will show


class TopupRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    topup_id: uuid.UUID
    amount: Annotated[int, Meta(ge=1, le=500_000)]
    method: TopupMethod
    reference: Reference | None = None
    till_id: Code | None = None


class TopupResult(msgspec.Struct, frozen=True):
    topup_id: str
    member_id: str
    amount: int
    method: str
    balance: int
    points: int
    created_at: str
    journal_seq: int
    journal_hash: str


class ExchangeRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """Return lines of an earlier sale and sell replacements in one transaction.

    The return's refund pays for the new lines first; `tenders` cover what is still due (empty
    when the credit covers it all); any credit left over is refunded like a return's.
    """

    exchange_id: uuid.UUID
    sale_id: uuid.UUID
    till_id: Code
    return_lines: Annotated[list[ReturnLineIn], Meta(min_length=1, max_length=500)]
    lines: Annotated[list[LineIn], Meta(min_length=1, max_length=500)]
    tenders: Annotated[list[TenderIn], Meta(max_length=10)] = []
    member_id: Code | None = None
    refund_method: TenderMethod | None = None
    reason: Annotated[str, Meta(max_length=200)] = ""


class ExchangeResult(msgspec.Struct, frozen=True):
    exchange_id: str
    credit: int
    due: int
    refunded: int
    returned: ReturnResult
    sale: SaleResult
