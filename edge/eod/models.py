"""Wire and stored shapes of end of day: figures, cash counts, anomalies, X and Z reports.

The same Structs are the API's answers and the frozen JSON of a stored Z report, so a Z read back
is byte for byte what was closed.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Code = Annotated[str, Meta(min_length=1, max_length=64)]
Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Fen = Annotated[int, Meta(ge=0, le=100_000_000)]
Face = Annotated[str, Meta(pattern=r"^[1-9]\d{0,5}$")]
Pieces = Annotated[int, Meta(ge=0, le=100_000)]

TENDER_METHODS = ("cash", "card", "alipay", "wechat", "unionpay", "stored_value", "points")
EXTERNAL_METHODS = ("card", "alipay", "wechat", "unionpay")  # paid through a terminal or wallet: carry a reference
# Notes and coins of the renminbi, in fen; a denomination count names only these.
DENOMINATIONS = (10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1)

Severity = Literal["critical", "warning", "info"]


class CashCountRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    count_id: uuid.UUID
    till_id: Code
    counted: Fen
    denominations: dict[Face, Pieces] | None = None  # {"10000": 3, "5000": 1}: fen value -> how many
    day: Day | None = None


class TillFloatRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    till_id: Code
    amount: Fen
    day: Day | None = None


class ZCloseRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    day: Day | None = None


class CashCount(msgspec.Struct, frozen=True):
    count_id: str
    day: str
    till_id: str
    counted: int
    expected: int  # the drawer's expected cash when the count was made
    variance: int  # counted - expected: negative is a shortage
    denominations: dict[str, int] | None
    user_id: str
    counted_at: str


class TillFloat(msgspec.Struct, frozen=True):
    day: str
    till_id: str
    amount: int
    user_id: str
    set_at: str


class Cash(msgspec.Struct, kw_only=True):
    """The drawer: expected = opening float + cash tendered - change - cash refunds + cash top-ups."""

    opening_float: int = 0
    tendered: int = 0
    change: int = 0
    refunds: int = 0
    topups: int = 0
    expected: int = 0


class Figures(msgspec.Struct, kw_only=True):
    tickets: int = 0
    gross: int = 0
    discount: int = 0
    net: int = 0
    tax: int = 0
    returns: int = 0
    refunded: int = 0
    refunds: dict[str, int] = {}  # by method; exchange credit is under `exchange_credit`
    exchanges: int = 0
    exchange_credit: int = 0
    topups: int = 0
    topped_up: int = 0
    topups_by_method: dict[str, int] = {}
    tenders: dict[str, int] = {}  # every method, 0 when unused; exchange credit is not a tender here
    cash: Cash = msgspec.field(default_factory=Cash)


class TillFigures(Figures, kw_only=True):
    till_id: str | None  # None: top-ups booked without a till (from the tablet)
    count: CashCount | None = None  # the latest count of the day


class XReport(msgspec.Struct, kw_only=True):
    day: str
    as_of: str
    closed: bool = False
    z_no: int | None = None
    store: Figures | None  # None when the report is limited to one till
    tills: list[TillFigures]


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    severity: Severity
    till_id: str | None
    refs: list[str]
    message: str
    amount: int | None = None


class AnomalyReport(msgspec.Struct, kw_only=True):
    day: str
    closed: bool
    z_no: int | None
    anomalies: list[Anomaly]


class ZReport(msgspec.Struct, kw_only=True):
    z_no: int
    day: str
    closed_at: str
    closed_by: str
    x: XReport
    counts: list[CashCount]  # every count of the day, re-counts included, in order
    anomalies: list[Anomaly]
    journal_seq: int = 0
    journal_hash: str = ""


class AfterClose(msgspec.Struct, frozen=True):
    """Trade booked on a closed day after its Z report: in no Z, so the manager must see it."""

    sales: int
    sales_total: int
    returns: int
    refunded: int


class ZSummary(msgspec.Struct, frozen=True):
    z_no: int
    day: str
    closed_at: str
    closed_by: str
    tickets: int
    net: int
    refunded: int
    cash_expected: int
    cash_counted: int
    cash_variance: int
    anomalies: int
    journal_seq: int


class ZList(msgspec.Struct, frozen=True):
    z_reports: list[ZSummary]
    total: int
