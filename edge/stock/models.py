"""Stock wire shapes."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from edge.stock.ledger import BatchLevel

Sku = Annotated[str, Meta(min_length=1, max_length=64)]


class Alert(msgspec.Struct, frozen=True):
    alert_id: int
    sku: str
    kind: str
    on_hand: int
    threshold: int
    raised_at: str


class StockView(msgspec.Struct, frozen=True):
    sku: str
    name: str
    unit: str
    on_hand: int
    batches: list[BatchLevel]
    thresholds: dict[str, int | None]
    alerts: list[Alert]


class ReceiveLine(msgspec.Struct, frozen=True, omit_defaults=True):
    sku: Sku
    qty: Annotated[int, Meta(ge=1, le=10_000_000)]
    lot: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    expiry: datetime.date | None = None


class ReceiveRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    receipt_id: uuid.UUID
    lines: Annotated[list[ReceiveLine], Meta(min_length=1, max_length=1000)]
    supplier: Annotated[str, Meta(max_length=100)] = ""


class AdjustRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """A correction (signed qty), a count (the counted level; the ledger records the difference), or
    goods shipped to / received from another store (qty > 0; HQ-routed transfers come with sync)."""

    adjustment_id: uuid.UUID
    sku: Sku
    kind: Literal["adjustment", "count", "transfer_out", "transfer_in"]
    qty: Annotated[int, Meta(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, Meta(min_length=1, max_length=200)]
    lot: Annotated[str, Meta(max_length=64)] | None = None


class MovementResult(msgspec.Struct, frozen=True):
    request_id: str
    movements: list[int]
    on_hand: dict[str, int]
    journal_seq: int
    journal_hash: str
