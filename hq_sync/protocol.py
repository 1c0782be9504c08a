"""Deltas a hub sends HQ: one tagged msgspec Struct per ledger event (msgpack on the wire).

New fields are added only with defaults, so an older HQ still reads a newer hub and vice versa.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from edge.lazy_import import LazyDecoder  # a leaf too: imports nothing of ours

# Every integer a store sends fits a signed 64-bit integer (CONTRACT.md): a delta with more does not decode and
# is quarantined, rather than overflowing SQLite or PostgreSQL (BIGINT) in the middle of HQ's ingest.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class DeltaLine(msgspec.Struct, frozen=True, omit_defaults=True):
    line_no: Int64
    sku: str
    qty: Int64
    unit_price: Int64
    gross: Int64
    discount: Int64
    net: Int64
    tax: Int64
    weight_g: Int64 | None = None
    rules: list[tuple[str, Int64]] = []


class DeltaTender(msgspec.Struct, frozen=True, omit_defaults=True):
    method: str
    amount: Int64
    reference: str | None = None


class SaleDelta(msgspec.Struct, frozen=True, tag="sale", omit_defaults=True):
    sale_id: str
    receipt_no: str
    till_id: str
    user_id: str
    at: str
    lines: list[DeltaLine]
    tenders: list[DeltaTender]
    subtotal: Int64
    discount: Int64
    total: Int64
    tax: Int64
    change: Int64
    journal_seq: Int64
    member_id: str | None = None
    points_earned: Int64 = 0
    points_redeemed: Int64 = 0
    value_spent: Int64 = 0
    points_reward: Int64 = 0  # points exchanged for reward lines (积分兑换)
    coupons: list[str] = []  # coupon codes this sale redeemed (HQ counts the chain coupons' uses)


class ReturnLineDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    line_no: Int64
    qty: Int64
    refund: Int64
    weight_g: Int64 | None = None


class ReturnDelta(msgspec.Struct, frozen=True, tag="return", omit_defaults=True):
    return_id: str
    sale_id: str
    user_id: str
    at: str
    lines: list[ReturnLineDelta]
    refunds: list[DeltaTender]
    refund_total: Int64
    journal_seq: Int64
    till_id: str | None = None
    member_id: str | None = None
    points_reversed: Int64 = 0
    points_reward_returned: Int64 = 0  # points given back for returned reward lines


class TopupDelta(msgspec.Struct, frozen=True, tag="topup", omit_defaults=True):
    topup_id: str
    member_id: str
    amount: Int64
    method: str
    user_id: str
    at: str
    journal_seq: Int64
    till_id: str | None = None


class StockDelta(msgspec.Struct, frozen=True, tag="stock", omit_defaults=True):
    movement_id: Int64
    sku: str
    kind: str
    qty: Int64
    user_id: str
    at: str
    journal_seq: Int64
    lot: str | None = None
    expiry: str | None = None
    ref: str | None = None
    reason: str = ""


class MemberDelta(msgspec.Struct, frozen=True, tag="member", omit_defaults=True):
    member_id: str
    tier: str
    at: str
    phone: str | None = None
    card_no: str | None = None
    name: str = ""
    birthday: str | None = None
    tags: list[str] = []
    home_store: str | None = None


class MemberErasedDelta(msgspec.Struct, frozen=True, tag="member_erased", omit_defaults=True):
    """A manager erased the member's personal data at this store (docs/privacy.md): HQ erases it too
    and tells every store. The member id, ledgers and sales stay."""

    member_id: str
    at: str
    user_id: str = ""
    journal_seq: Int64 = 0


class EscrowReleaseDelta(msgspec.Struct, frozen=True, tag="release", omit_defaults=True):
    """The store gave back escrow HQ asked for (`request_id` of HQ's reclaim): HQ may grant it elsewhere."""

    request_id: str
    member_id: str
    ledger: str  # "value" or "points"
    amount: Int64
    at: str


class TransferLineDelta(msgspec.Struct, frozen=True, array_like=True):
    sku: str
    qty: Int64


class TransferRequestDelta(msgspec.Struct, frozen=True, tag="transfer_request", omit_defaults=True):
    """This store (`to_store`) asks `from_store` for stock (调拨); HQ routes it to the sender."""

    transfer_id: str
    from_store: str
    to_store: str
    lines: list[TransferLineDelta]
    user_id: str
    at: str
    journal_seq: Int64
    note: str = ""


class TransferShippedDelta(msgspec.Struct, frozen=True, tag="transfer_shipped", omit_defaults=True):
    """The sender shipped these quantities (its transfer_out movements travel as stock deltas too)."""

    transfer_id: str
    from_store: str
    to_store: str
    lines: list[TransferLineDelta]
    user_id: str
    at: str
    journal_seq: Int64


class TransferReceivedDelta(msgspec.Struct, frozen=True, tag="transfer_received", omit_defaults=True):
    """The receiver counted these quantities in; `discrepancies` = shipped − received per sku (non-zero only)."""

    transfer_id: str
    from_store: str
    to_store: str
    lines: list[TransferLineDelta]
    user_id: str
    at: str
    journal_seq: Int64
    discrepancies: list[TransferLineDelta] = []


class PointsExpiredDelta(msgspec.Struct, frozen=True, tag="points_expired", omit_defaults=True):
    """An unpaired hub expired what was left of a member's points batches dated before `before`
    (edge/members/points.py). A paired hub never sends it: HQ's ledger expires points."""

    member_id: str = ""
    points: Int64 = 0
    before: str = ""
    at: str = ""
    journal_seq: Int64 = 0


class ZReportDelta(msgspec.Struct, frozen=True, tag="z_report", omit_defaults=True):
    """The store closed a business day (edge/eod/closing.py): the Z report's headline figures; the whole
    frozen report is in the hub's journal record `journal_seq`."""

    z_no: Int64 = 0
    day: str = ""
    at: str = ""
    user_id: str = ""
    tickets: Int64 = 0
    net: Int64 = 0
    tax: Int64 = 0
    refunded: Int64 = 0
    tenders: dict[str, Int64] = {}
    cash_expected: Int64 = 0
    cash_counted: Int64 = 0
    cash_variance: Int64 = 0
    anomalies: Int64 = 0
    journal_seq: Int64 = 0


class ReferralDelta(msgspec.Struct, frozen=True, tag="referral", omit_defaults=True):
    """Member `member_id` (B) was referred by `referrer_id` (A), who gave code `code` (edge/engage/referrals.py).
    HQ records it once per member and refuses self-referrals and cycles chain-wide."""

    member_id: str = ""
    referrer_id: str = ""
    code: str = ""
    at: str = ""
    user_id: str = ""


Delta = (SaleDelta | ReturnDelta | TopupDelta | StockDelta | MemberDelta | EscrowReleaseDelta | TransferRequestDelta
         | TransferShippedDelta | TransferReceivedDelta | PointsExpiredDelta | ZReportDelta | ReferralDelta
         | MemberErasedDelta)
TransferDelta = TransferRequestDelta | TransferShippedDelta | TransferReceivedDelta

delta_encoder = msgspec.msgpack.Encoder()
delta_decoder = LazyDecoder(lambda: msgspec.msgpack.Decoder(Delta))  # built on first use
