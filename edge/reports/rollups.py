"""The per-day, per-item sales rollup (`sales_daily_sku`) kept by the code that writes sale lines.

Until m190 a trigger on every `sale_lines` row did this (reading the line's sale for its day); a sale
now adds its lines' sums once per item in one statement (docs/performance.md). The other rollups
(`sales_hourly`, promotions, returns) are still kept by their triggers (m090).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def add_sold_lines(conn: sqlite3.Connection, lines: Iterable[tuple[str, str, int, int | None, int]]) -> None:
    """Add sold lines, each (created_at, sku, qty, weight_g, net), to their day's item totals. The day is
    the first ten characters of `created_at`, which carries the store's offset (as the trigger had it)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for created_at, sku, qty, weight_g, net in lines:
        row = sums.setdefault((created_at[:10], sku), [0, 0, 0, 0])
        row[0] += qty
        row[1] += weight_g or 0
        row[2] += net
        row[3] += 1
    conn.executemany(
        """INSERT INTO sales_daily_sku (day, sku, qty, weight_g, net, lines) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (day, sku) DO UPDATE SET qty = qty + excluded.qty, weight_g = weight_g + excluded.weight_g,
               net = net + excluded.net, lines = lines + excluded.lines""",
        [(day, sku, *row) for (day, sku), row in sums.items()],
    )
