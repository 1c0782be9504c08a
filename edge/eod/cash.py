"""The drawers: the one function that computes a drawer's expected cash (`drawer`: the X report, the
Z report and the shift report all call it), opening floats set for a day, and cash counts (the latest
count of a till is the one that counts; each keeps the expected cash and the variance at the moment it
was made)."""

from __future__ import annotations

import sqlite3

import msgspec

from edge.eod.days import bounds
from edge.eod.models import DENOMINATIONS, Cash, CashCount, CashCountRequest, Figures, TillFloat
from edge.errors import ApiError

_denominations = msgspec.json.Decoder(dict[str, int])


def drawer(opening_float: int, *, tendered: int, change: int, refunds: int, topups: int, payouts: int = 0,
           drops: int = 0) -> Cash:
    """The expected drawer: float + cash tendered - change given - cash refunds + cash top-ups - pay-outs -
    safe drops. Pure; the only place this sum is written."""
    return Cash(opening_float=opening_float, tendered=tendered, change=change, refunds=refunds, topups=topups,
                payouts=payouts, drops=drops,
                expected=opening_float + tendered - change - refunds + topups - payouts - drops)


def drawer_of(figures: Figures, opening_float: int, change: int, payouts: int = 0, drops: int = 0) -> Cash:
    """`drawer` over a till's (or a shift's) figures: the cash parts of its tenders, refunds and top-ups."""
    return drawer(opening_float, tendered=figures.tenders.get("cash", 0), change=change,
                  refunds=figures.refunds.get("cash", 0), topups=figures.topups_by_method.get("cash", 0),
                  payouts=payouts, drops=drops)


def check_denomination_total(denominations: dict[str, int] | None, counted: int) -> None:
    """A denomination count must name real notes and coins and add up to the counted total."""
    if denominations is None:
        return
    total = 0
    for face, pieces in denominations.items():
        if int(face) not in DENOMINATIONS:
            raise ApiError(422, "unknown_denomination", f"{face} fen is not a note or coin of the renminbi")
        total += int(face) * pieces
    if total != counted:
        raise ApiError(422, "denominations_mismatch",
                       f"the denominations add up to {total}, the count says {counted}", denominations_total=total)


def floats(conn: sqlite3.Connection, day: str) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute("SELECT till_id, amount FROM till_floats WHERE day = ?", (day,))}


def set_float(conn: sqlite3.Connection, day: str, till_id: str, amount: int, user_id: str, at: str) -> TillFloat:
    conn.execute(
        """INSERT INTO till_floats (day, till_id, amount, user_id, set_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (day, till_id) DO UPDATE SET amount = excluded.amount, user_id = excluded.user_id,
               set_at = excluded.set_at""",
        (day, till_id, amount, user_id, at),
    )
    return TillFloat(day, till_id, amount, user_id, at)


def check_denominations(req: CashCountRequest) -> None:
    check_denomination_total(req.denominations, req.counted)


def cash_moves(conn: sqlite3.Connection, day: str) -> dict[tuple[str, str], int]:
    """The day's pay-outs and safe drops per (till, kind)."""
    lo, hi = bounds(day)
    return {(r[0], r[1]): int(r[2]) for r in conn.execute(
        "SELECT till_id, kind, sum(amount) FROM cash_moves WHERE created_at >= ? AND created_at < ? GROUP BY 1, 2",
        (lo, hi))}


def _count(row: sqlite3.Row) -> CashCount:
    denoms = _denominations.decode(row["denominations"]) if row["denominations"] is not None else None
    return CashCount(count_id=row["count_id"], day=row["day"], till_id=row["till_id"], counted=row["counted"],
                     expected=row["expected"], variance=row["variance"], denominations=denoms,
                     user_id=row["user_id"], counted_at=row["created_at"])


def counts(conn: sqlite3.Connection, day: str) -> list[CashCount]:
    """Every count of the day, in the order they were made."""
    return [_count(r) for r in conn.execute("SELECT * FROM cash_counts WHERE day = ? ORDER BY seq", (day,))]


def latest_counts(conn: sqlite3.Connection, day: str) -> dict[str, CashCount]:
    return {c.till_id: c for c in counts(conn, day)}  # later counts replace earlier ones


def insert_count(conn: sqlite3.Connection, count: CashCount, digest: str, body: bytes) -> None:
    denoms = msgspec.json.encode(count.denominations, order="sorted").decode() if count.denominations else None
    conn.execute(
        """INSERT INTO cash_counts (count_id, day, till_id, counted, expected, variance, denominations, user_id,
               request_hash, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (count.count_id, count.day, count.till_id, count.counted, count.expected, count.variance, denoms,
         count.user_id, digest, body, count.counted_at),
    )
