"""Frozen closings against their journal records: Z reports, closed shifts, pay-outs and safe drops.

The chain proves the journal untouched; this proves the tables people read agree with it. A Z report's
stored JSON must equal its journal record's data (but for the record's own seq and hash), its summary
columns must equal the figures inside, and its perpetual grand totals must be the previous Z's plus its
period. A closed shift's frozen report and columns, and each pay-out and drop, are checked the same way.
Changing any of them with sqlite3 makes `backroom journal verify` fail, naming the journal record.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

_json = msgspec.json.Decoder()
_TOTALS = ("tickets", "net", "tax", "returns", "refunded", "balance", "absolute")


class Broken(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _canonical(obj: Any) -> bytes:
    return msgspec.json.encode(obj, order="sorted")


def _record(conn: sqlite3.Connection, seq: int, kind: str, ref: str, what: str) -> Any:
    row = conn.execute("SELECT kind, ref, body FROM journal WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[0] != kind or row[1] != ref:
        raise Broken(seq, f"{what} names journal record {seq}, which is not its {kind} record")
    return _json.decode(_as_bytes(row[2]))["data"]


def _frozen(stored: bytes, seq_key: str, hash_key: str) -> tuple[Any, Any, Any]:
    body = _json.decode(stored)
    return body, body.pop(seq_key, None), body.pop(hash_key, None)


def _z_reports(conn: sqlite3.Connection) -> None:
    previous: dict[str, int] | None = None
    for r in conn.execute("""SELECT z_no, day, closed_at, user_id, tickets, net, refunded, cash_expected, cash_counted,
                                    cash_variance, anomalies, report, journal_seq FROM z_reports ORDER BY z_no"""):
        z_no, seq = r[0], r[12]
        what = f"Z report {z_no}"
        data = _record(conn, seq, "z_report", f"Z{z_no}", what)
        body, body_seq, _ = _frozen(_as_bytes(r[11]), "journal_seq", "journal_hash")
        if body_seq != seq or _canonical(body) != _canonical(data):
            raise Broken(seq, f"{what}: the stored report differs from its journal record")
        store = data["x"]["store"]
        counts = [t["count"] for t in data["x"]["tills"] if t.get("count") is not None]
        columns = (data["z_no"], data["day"], data["closed_at"], data["closed_by"], store["tickets"], store["net"],
                   store["refunded"], store["cash"]["expected"], sum(c["counted"] for c in counts),
                   sum(c["variance"] for c in counts), len(data["anomalies"]))
        if tuple(r[:11]) != columns:
            raise Broken(seq, f"{what}: the z_reports columns differ from its journal record")
        totals = data.get("totals")
        if totals is not None:
            period, perpetual = totals["period"], totals["perpetual"]
            if previous is not None and any(perpetual[k] != previous[k] + period[k] for k in _TOTALS):
                raise Broken(seq, f"{what}: its grand totals are not the previous Z's plus its period")
            previous = perpetual


def _shifts(conn: sqlite3.Connection) -> None:
    for r in conn.execute("""SELECT shift_id, till_id, user_id, opening_float, open_seq, closed_at, closed_by,
                                    close_seq, counted, expected, variance, report FROM shifts ORDER BY open_seq"""):
        shift_id = r[0]
        what = f"shift {shift_id}"
        opened = _record(conn, r[4], "shift.open", shift_id, what)
        if (opened["till_id"], opened["user_id"], opened["opening_float"]) != (r[1], r[2], r[3]):
            raise Broken(r[4], f"{what}: the shifts row differs from its opening journal record")
        if r[5] is None and r[7] is None and r[11] is None:
            continue
        if r[7] is None or r[11] is None:
            raise Broken(r[4], f"{what}: closed without its closing journal record")
        data = _record(conn, r[7], "shift.close", shift_id, what)
        body, body_seq, _ = _frozen(_as_bytes(r[11]), "close_seq", "journal_hash")
        if body_seq != r[7] or _canonical(body) != _canonical(data):
            raise Broken(r[7], f"{what}: the stored report differs from its closing journal record")
        columns = (data["till_id"], data["user_id"], data["opening_float"], data["open_seq"], data["closed_at"],
                   data["closed_by"], data["counted"], data["figures"]["cash"]["expected"], data["variance"])
        if (r[1], r[2], r[3], r[4], r[5], r[6], r[8], r[9], r[10]) != columns:
            raise Broken(r[7], f"{what}: the shifts columns differ from its closing journal record")


def _cash_moves(conn: sqlite3.Connection) -> None:
    for r in conn.execute("""SELECT move_id, kind, shift_id, till_id, amount, reason, user_id, journal_seq
                             FROM cash_moves ORDER BY journal_seq"""):
        data = _record(conn, r[7], f"cash.{r[1]}", r[0], f"{r[1]} {r[0]}")
        if (data["shift_id"], data["till_id"], data["amount"], data["reason"], data["user_id"]) != tuple(r[2:7]):
            raise Broken(r[7], f"{r[1]} {r[0]}: the cash_moves row differs from its journal record")


def check(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The journal seq and reason of the first frozen row that disagrees with the journal, or None."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    try:
        for table, check_table in (("z_reports", _z_reports), ("shifts", _shifts), ("cash_moves", _cash_moves)):
            if table in tables:  # a database from before the table's migration has none of its rows
                check_table(conn)
    except Broken as exc:
        return exc.seq, exc.reason
    except (KeyError, TypeError, msgspec.DecodeError) as exc:
        return 0, f"a frozen closing is unreadable: {exc!r}"
    return None
