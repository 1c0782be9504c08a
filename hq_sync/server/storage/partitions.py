"""Monthly partitions of HQ's big store facts on PostgreSQL (sales, lines, tenders, promotion amounts).

The tables are declared `PARTITION BY RANGE (day)` (storage/distribution.py names them and their column;
`day` is the sale's store-local 'YYYY-MM-DD'). `ensure_partitions` creates, for each of them:
- a default partition, the safety net for a day outside every month made (a store whose clock was off, a
  sale from a year ago sent late);
- this month's partition and the next `ahead` months', so a month's first sale never waits on DDL;
- a month's partition for every month found in the default partition, moving those rows into it (so an
  old database converted at start, or a late sale, ends in its month too).
It runs inside create_schema at start and on a timer (`partition_schedule`). Partitions are named
`<table>_pYYYYMM` and `<table>_default`. SQLite keeps plain tables: this does nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.server.storage.distribution import partitioned

log = logging.getLogger(__name__)

AHEAD_MONTHS = 2
EVERY_S = 6 * 3600.0
# One number for pg_advisory_xact_lock: workers starting together make the schema and partitions in turn.
SCHEMA_LOCK = 7_140_014
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _add_months(first: datetime.date, n: int) -> datetime.date:
    k = first.year * 12 + first.month - 1 + n
    return datetime.date(k // 12, k % 12 + 1, 1)


def month_bounds(month: datetime.date) -> tuple[str, str]:
    """The partition bounds of the month starting `month`: FROM its first day TO the next month's first."""
    return month.isoformat(), _add_months(month, 1).isoformat()


def partition_name(table: str, month: datetime.date) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def is_partitioned(tx: Tx, table: str) -> bool:
    row = tx.one("SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(?)", (table,))
    return row is not None and str(row[0]) == "p"


def partitions_of(tx: Tx, table: str) -> dict[str, str]:
    """PostgreSQL: partition name → its bound (`FOR VALUES FROM (...) TO (...)` or `DEFAULT`)."""
    rows = tx.all("""SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                     JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(?)""", (table,))
    return {str(name): str(bound) for name, bound in rows}


def ensure_partitions(tx: Tx, today: datetime.date, ahead: int = AHEAD_MONTHS,
                      since: datetime.date | None = None) -> list[str]:
    """Make the partitions described above (and every month from `since`, for a history about to be written);
    returns the names made. Call inside a write transaction."""
    if tx.dialect != "postgresql":
        return []
    tx.one("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
    made: list[str] = []
    first = today.replace(day=1)
    for table, column in partitioned().items():
        if not is_partitioned(tx, table):
            continue  # a table an older HQ made plainly and create_schema has not converted (cannot happen after it)
        default = f"{table}_default"
        existing = partitions_of(tx, table)
        if default not in existing:
            tx.run(f"CREATE TABLE {default} PARTITION OF {table} DEFAULT")
            made.append(default)
        months = {_add_months(first, k) for k in range(ahead + 1)}
        month = (since or today).replace(day=1)
        while month < first:
            months.add(month)
            month = _add_months(month, 1)
        for (text,) in tx.all(f"SELECT DISTINCT substr({column}, 1, 7) FROM {default}"):
            match = _MONTH.match(str(text))
            if match:
                months.add(datetime.date(int(match[1]), int(match[2]), 1))
        for month in sorted(months):
            name = partition_name(table, month)
            if name in existing:
                continue
            lo, hi = month_bounds(month)
            held = tx.one(f"SELECT 1 FROM {default} WHERE {column} >= ? AND {column} < ? LIMIT 1", (lo, hi))
            if held is None:
                tx.run(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}')")
            else:  # rows of this month wait in the default partition: move them into the month's own
                tx.run(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                tx.run(f"INSERT INTO {name} SELECT * FROM {default} WHERE {column} >= ? AND {column} < ?", (lo, hi))
                tx.run(f"DELETE FROM {default} WHERE {column} >= ? AND {column} < ?", (lo, hi))
                tx.run(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')")
            made.append(name)
    return made


def run_once(db: HqDb, today: datetime.date | None = None) -> list[str]:
    if db.dialect != "postgresql":
        return []
    with db.write() as tx:
        return ensure_partitions(tx, today or datetime.datetime.now(datetime.UTC).date())


@contextlib.asynccontextmanager
async def partition_schedule(app: Any) -> AsyncIterator[None]:
    """Litestar lifespan: every EVERY_S, the months ahead (PostgreSQL; create_schema made them at start)."""
    hq = app.state.hq

    async def loop() -> None:
        while True:
            await asyncio.sleep(EVERY_S)
            try:
                made = await asyncio.to_thread(run_once, hq.db)
            except Exception:  # noqa: BLE001 -- the timer outlives one failure (the database away)
                log.warning("could not make the sales partitions ahead; trying again later", exc_info=True)
                continue
            if made:
                log.info("made partitions %s", ", ".join(made))

    task = asyncio.create_task(loop(), name="hq-partitions")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
