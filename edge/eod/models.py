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
    till_id: Code | None = None  # print the Z on this till's receipt printer (default: the caller's till)


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


class Cash(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The drawer: expected = opening float + cash tendered - change - cash refunds + cash top-ups
    - pay-outs - safe drops (computed only by edge.eod.cash.drawer). `payouts` and `drops` are left out
    of the JSON when 0, so a drawer without them keeps the shape it had before shifts."""

    opening_float: int
    tendered: int
    change: int
    refunds: int
    topups: int
    expected: int
    payouts: int = 0  # 支出: cash paid out of the drawer with a reason (shift pay-outs)
    drops: int = 0  # 投库: cash taken from the drawer into the safe


def no_cash() -> Cash:
    return Cash(opening_float=0, tendered=0, change=0, refunds=0, topups=0, expected=0)


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
    cash: Cash = msgspec.field(default_factory=no_cash)


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
    totals: ZTotals | None = None  # None only in Z reports closed before grand totals existed


class Totals(msgspec.Struct, kw_only=True):
    tickets: int = 0
    net: int = 0  # sales, after discounts
    tax: int = 0
    returns: int = 0
    refunded: int = 0
    balance: int = 0  # net - refunded
    absolute: int = 0  # net + refunded: the NF525 perpetual total in absolute value


class ZTotals(msgspec.Struct, kw_only=True):
    """The Z's period (its business day, `period_from` to `period_to`) and the perpetual grand totals
    (GT, 总累计): the previous Z's perpetual totals plus this period, since the store's first Z."""

    period_from: str
    period_to: str
    period: Totals
    perpetual: Totals


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
