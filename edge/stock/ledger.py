"""The stock movement ledger. On-hand is derived from movements and cached per batch.

Quantities are units for counted items and grams for weighed ones. Every movement is a new row;
the `stock_balance` cache and threshold alerts change in the same transaction. Sales take from the
batch that expires first (FEFO), skipping expired batches; what no batch covers is taken from the
unbatched balance (batch 0), which may go negative: a till never refuses goods that are physically
on the counter because a count was off, and the shortfall shows as an alert.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

import msgspec

MovementKind = Literal["receive", "sale", "return", "adjustment", "transfer_out", "transfer_in", "count"]
UNBATCHED = 0


class Actor(msgspec.Struct, frozen=True):
    user_id: str
    till_id: str | None = None


class BatchLevel(msgspec.Struct, frozen=True):
    batch_id: int
    lot: str
    expiry: str | None
    on_hand: int


def on_hand(conn: sqlite3.Connection, sku: str) -> int:
    row = conn.execute("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ?", (sku,)).fetchone()
    return int(row[0])


def ledger_on_hand(conn: sqlite3.Connection, sku: str) -> int:
    """On-hand summed from the ledger itself (the cache must always equal it)."""
    row = conn.execute("SELECT coalesce(sum(qty), 0) FROM stock_movements WHERE sku = ?", (sku,)).fetchone()
    return int(row[0])


def batch_levels(conn: sqlite3.Connection, sku: str) -> list[BatchLevel]:
    rows = conn.execute(
        """SELECT sb.batch_id, coalesce(b.lot, '') AS lot, b.expiry, sb.on_hand
           FROM stock_balance sb LEFT JOIN batches b ON b.batch_id = sb.batch_id
           WHERE sb.sku = ? ORDER BY b.expiry IS NULL, b.expiry, sb.batch_id""",
        (sku,),
    )
    return [BatchLevel(r[0], r[1], r[2], r[3]) for r in rows]


def fefo(conn: sqlite3.Connection, sku: str, qty: int, today: str) -> list[tuple[int, int]]:
    """Split `qty` over batches first-expiring-first; the rest from the unbatched balance."""
    return _take(_fefo_levels(conn, [sku], today).get(sku, []), qty)


def _fefo_levels(conn: sqlite3.Connection, skus: list[str], today: str) -> dict[str, list[list[int]]]:
    """Each item's sellable batches, [batch_id, on_hand] first-expiring-first (expired ones left out)."""
    levels: dict[str, list[list[int]]] = {}
    for sku, batch_id, on_hand in conn.execute(
        f"""SELECT sb.sku, sb.batch_id, sb.on_hand FROM stock_balance sb JOIN batches b ON b.batch_id = sb.batch_id
            WHERE sb.sku IN ({_marks(len(skus))}) AND sb.on_hand > 0 AND (b.expiry IS NULL OR b.expiry >= ?)
            ORDER BY sb.sku, b.expiry IS NULL, b.expiry, sb.batch_id""",
        (*skus, today),
    ):
        levels.setdefault(sku, []).append([batch_id, on_hand])
    return levels


def _take(levels: list[list[int]], units: int) -> list[tuple[int, int]]:
    """Take `units` from `levels` in order, lowering them (a later line of the same item sees what this one
    took); what they cannot give comes from the unbatched balance."""
    parts: list[tuple[int, int]] = []
    left = units
    for level in levels:
        if left <= 0:
            break
        take = min(left, level[1])
        if take <= 0:
            continue
        level[1] -= take
        parts.append((level[0], take))
        left -= take
    if left > 0:
        parts.append((UNBATCHED, left))
    return parts


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def sell(
    conn: sqlite3.Connection, lines: list[tuple[str, int]], today: str, at: str, actor: Actor, ref: str,
) -> list[list[tuple[int, int]]]:
    """A sale's stock in a few statements instead of four per line: one FEFO read for all its items,
    the movements and the balance deltas written with `executemany`, the thresholds checked once per
    item after the whole sale. `lines` are (sku, units) in line order; returns each line's
    (batch_id, qty) parts, exactly as `fefo` line after line would have split them."""
    skus = list(dict.fromkeys(sku for sku, _ in lines))
    available = _fefo_levels(conn, skus, today)
    split: list[list[tuple[int, int]]] = []
    moves: list[tuple[str, int | None, int, str, str, str | None, str]] = []
    deltas: dict[tuple[str, int], int] = {}
    for sku, units in lines:
        parts = _take(available.get(sku, []), units)
        split.append(parts)
        for batch_id, qty in parts:
            moves.append((sku, batch_id or None, -qty, ref, actor.user_id, actor.till_id, at))
            deltas[sku, batch_id] = deltas.get((sku, batch_id), 0) - qty
    conn.executemany(
        """INSERT INTO stock_movements (sku, batch_id, kind, qty, ref, reason, user_id, till_id, at)
           VALUES (?, ?, 'sale', ?, ?, '', ?, ?, ?)""",
        moves,
    )
    conn.executemany(
        """INSERT INTO stock_balance (sku, batch_id, on_hand) VALUES (?, ?, ?)
           ON CONFLICT (sku, batch_id) DO UPDATE SET on_hand = on_hand + excluded.on_hand""",
        [(sku, batch_id, qty) for (sku, batch_id), qty in deltas.items()],
    )
    check_thresholds_many(conn, skus, at)
    return split


def record(
    conn: sqlite3.Connection,
    *,
    sku: str,
    qty: int,
    kind: MovementKind,
    at: str,
    actor: Actor,
    ref: str | None = None,
    batch_id: int = UNBATCHED,
    reason: str = "",
) -> int:
    """Append one movement (signed qty) and update the cached balance. Returns the movement id."""
    cur = conn.execute(
        """INSERT INTO stock_movements (sku, batch_id, kind, qty, ref, reason, user_id, till_id, at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (sku, batch_id or None, kind, qty, ref, reason, actor.user_id, actor.till_id, at),
    )
    conn.execute(
        """INSERT INTO stock_balance (sku, batch_id, on_hand) VALUES (?, ?, ?)
           ON CONFLICT (sku, batch_id) DO UPDATE SET on_hand = on_hand + excluded.on_hand""",
        (sku, batch_id, qty),
    )
    return int(cur.lastrowid or 0)


def check_thresholds(conn: sqlite3.Connection, sku: str, at: str) -> list[str]:
    """Raise or clear low/high alerts for an item after its stock changed; returns raised kinds."""
    return check_thresholds_many(conn, [sku], at).get(sku, [])


def check_thresholds_many(conn: sqlite3.Connection, skus: list[str], at: str) -> dict[str, list[str]]:
    """`check_thresholds` for several items with one read; the kinds raised, by item."""
    return {sku: _apply_thresholds(conn, sku, low, high, int(level), open_kinds, at)
            for sku, low, high, level, open_kinds in conn.execute(
                f"""SELECT i.sku, i.low_threshold, i.high_threshold,
                           (SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = i.sku),
                           (SELECT group_concat(kind) FROM stock_alerts WHERE sku = i.sku AND cleared_at IS NULL)
                    FROM items i WHERE i.sku IN ({_marks(len(skus))})""",
                skus,
            ).fetchall()}


def _apply_thresholds(
    conn: sqlite3.Connection, sku: str, low: int | None, high: int | None, level: int, open_csv: str | None, at: str,
) -> list[str]:
    open_kinds = set((open_csv or "").split(","))
    raised = []
    for kind, threshold, crossed in (
        ("low", low, low is not None and level < low),
        ("high", high, high is not None and level > high),
    ):
        if crossed and kind not in open_kinds:
            conn.execute(
                "INSERT INTO stock_alerts (sku, kind, on_hand, threshold, raised_at) VALUES (?, ?, ?, ?, ?)",
                (sku, kind, level, threshold, at),
            )
            raised.append(kind)
        elif not crossed and kind in open_kinds:
            conn.execute(
                "UPDATE stock_alerts SET cleared_at = ? WHERE sku = ? AND kind = ? AND cleared_at IS NULL",
                (at, sku, kind),
            )
    return raised


def ensure_batch(conn: sqlite3.Connection, sku: str, lot: str, expiry: str | None, at: str) -> int:
    row = conn.execute("SELECT batch_id FROM batches WHERE sku = ? AND lot = ?", (sku, lot)).fetchone()
    if row:
        return int(row[0])
    cur = conn.execute(
        "INSERT INTO batches (sku, lot, expiry, received_at) VALUES (?, ?, ?, ?)", (sku, lot, expiry, at)
    )
    return int(cur.lastrowid or 0)
