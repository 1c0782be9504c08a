"""Wire and stored shapes of cashier shifts (交接班): open, close, pay-outs (支出), safe drops (投库), the
shift report. A closed shift's report is stored frozen and answered byte for byte on a retry."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from edge.eod.models import Code, Face, Fen, Figures, Pieces

Amount = Annotated[int, Meta(ge=1, le=100_000_000)]  # a pay-out or drop moves at least one fen
Reason = Annotated[str, Meta(min_length=1, max_length=200)]
Note = Annotated[str, Meta(max_length=500)]
MoveKind = Literal["payout", "drop"]
ShiftStatus = Literal["open", "closed"]


class ShiftOpenRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    shift_id: uuid.UUID
    till_id: Code
    opening_float: Fen | None = None  # None: the hub's till_float


class ShiftCloseRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    counted: Fen
    denominations: dict[Face, Pieces] | None = None  # {"10000": 3}: fen value -> pieces; must add up to counted
    note: Note | None = None


class PayoutRequest(msgspec.Struct, frozen=True):
    payout_id: uuid.UUID
    amount: Amount
    reason: Reason


class DropRequest(msgspec.Struct, frozen=True):
    drop_id: uuid.UUID
    amount: Amount
    reason: Reason


class CashMove(msgspec.Struct, frozen=True, kw_only=True):
    move_id: str
    kind: MoveKind
    shift_id: str
    till_id: str
    amount: int
    reason: str
    user_id: str
    at: str
    journal_seq: int


class Shift(msgspec.Struct, kw_only=True):
    """A shift and its figures: live while open, frozen at close. `figures.cash` is its drawer."""

    shift_id: str
    till_id: str
    user_id: str  # who opened it (the cashier whose shift it is)
    status: ShiftStatus
    opened_at: str
    opening_float: int
    open_seq: int
    as_of: str
    figures: Figures
    payouts: list[CashMove] = []
    drops: list[CashMove] = []
    closed_at: str | None = None
    closed_by: str | None = None
    counted: int | None = None
    variance: int | None = None  # counted - expected: negative is a shortage
    denominations: dict[str, int] | None = None
    note: str | None = None
    close_seq: int | None = None
    journal_hash: str | None = None


class ShiftList(msgspec.Struct, frozen=True):
    shifts: list[Shift]
    total: int
