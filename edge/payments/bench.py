"""`backroom bench statements`: import and match a 100,000-row WeChat Pay bill on a hub with as many
tenders.

Builds a hub database (the real migrations) holding one day of `--rows` WeChat tenders and their
sales, plus refunds on one in fifty, written straight into the tables (the bench is about the
statement path, not checkout); then the day's trade bill in the provider's layout (edge/payments/bills.py):
most payments named by 微信订单号, some by 商户订单号, some unreferenced (amount and time), and a few
of each anomaly kind planted. Times the three steps the API and the CLI run: parse, match (reading the
store's tenders and refunds included), record (one write transaction); then the re-import of the
same file (a hash look-up). Deterministic (fixed seed). Prints a summary, then the figures as one JSON
object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from edge.payments import bills, statements, store
from edge.payments.statements import CHINA, StatementRow
from edge.stock.ledger import Actor
from edge.storage.db import Database

SEED = 20261201
DAY = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA)


def _required_columns(conn: sqlite3.Connection, table: str) -> dict[str, Any]:
    """Filler for every NOT NULL column without a default (the bench does not care about them)."""
    filler: dict[str, Any] = {}
    for _cid, name, typ, notnull, default, _pk in conn.execute(f"PRAGMA table_info({table})"):
        if notnull and default is None:
            filler[name] = 0 if "INT" in (typ or "").upper() else (b"{}" if "BLOB" in (typ or "").upper() else "-")
    return filler


def build(conn: sqlite3.Connection, rows: int) -> list[StatementRow]:
    """Sales, tenders and refunds of one day in the hub's tables; the bill's rows for them."""
    rnd = random.Random(SEED)
    sale_fill = _required_columns(conn, "sales")
    ret_fill = _required_columns(conn, "returns")
    sales, tenders, returns, refunds, bill = [], [], [], [], []
    step = 12 * 3600 / rows
    for n in range(rows):
        at = DAY + timedelta(seconds=n * step)
        sale_id = f"b{n:07d}"
        amount = rnd.randint(100, 50000)
        txn = f"42000{n:023d}"
        order = f"ORD{n:09d}"
        roll = rnd.random()
        reference: str | None = txn if roll < 0.90 else (order if roll < 0.95 else None)
        sales.append(
            {
                **sale_fill,
                "sale_id": sale_id,
                "receipt_no": f"R{n:08d}",
                "till_id": "T1",
                "user_id": "u",
                "total": amount,
                "subtotal": amount,
                "created_at": at.isoformat(timespec="milliseconds"),
            }
        )
        tenders.append((sale_id, 1, "wechat", amount, reference))
        paid = amount
        if n % 997 == 1:  # amount_mismatch
            paid = amount + 1
        if n % 991 != 2:  # otherwise: sale_no_payment
            bill.append(
                StatementRow(
                    row_no=0,
                    kind="payment",
                    transaction_id=txn,
                    merchant_order_no=order,
                    amount=paid,
                    fee=paid * 6 // 1000,
                    time=(at + timedelta(seconds=2)).isoformat(),
                )
            )
        if n % 983 == 3:  # duplicate_payment: the same order paid twice
            bill.append(
                StatementRow(
                    row_no=0,
                    kind="payment",
                    transaction_id=f"43000{n:023d}",
                    merchant_order_no=order,
                    amount=amount,
                    fee=0,
                    time=(at + timedelta(seconds=30)).isoformat(),
                )
            )
        if n % 50 == 7:
            back = amount // 3 or 1
            return_id = f"r{n:07d}"
            ret_at = at + timedelta(minutes=20)
            returns.append(
                {
                    **ret_fill,
                    "return_id": return_id,
                    "sale_id": sale_id,
                    "user_id": "u",
                    "refund_total": back,
                    "created_at": ret_at.isoformat(timespec="milliseconds"),
                }
            )
            refunds.append((return_id, 1, "wechat", back, 1, f"RF{n:09d}"))
            got = back + (1 if n % 977 == 7 else 0)  # refund_mismatch now and then
            bill.append(
                StatementRow(
                    row_no=0,
                    kind="refund",
                    transaction_id=txn,
                    merchant_order_no=order,
                    refund_id=f"50300{n:023d}",
                    merchant_refund_no=f"RF{n:09d}",
                    amount=got,
                    fee=-(got * 6 // 1000),
                    time=(ret_at + timedelta(seconds=5)).isoformat(),
                )
            )
    for n in range(rows // 1000):  # paid_no_sale
        at = DAY + timedelta(seconds=n * 40 + 7)
        bill.append(
            StatementRow(row_no=0, kind="payment", transaction_id=f"44000{n:023d}", amount=77777, time=at.isoformat())
        )
    for table, items in (("sales", sales), ("returns", returns)):
        cols = list(items[0])
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(i[c] for c in cols) for i in items],
        )
    conn.executemany(
        "INSERT INTO sale_tenders (sale_id, tender_no, method, amount, reference) VALUES (?, ?, ?, ?, ?)", tenders
    )
    conn.executemany(
        """INSERT INTO return_refunds (return_id, refund_no, method, amount, tender_no, reference)
                        VALUES (?, ?, ?, ?, ?, ?)""",
        refunds,
    )
    bill.sort(key=lambda r: r.time)
    return [StatementRow(**{**_fields(r), "row_no": k}) for k, r in enumerate(bill, start=1)]


def _fields(row: StatementRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__struct_fields__}


def run_statements_bench(args: argparse.Namespace) -> int:
    rows = max(1000, int(getattr(args, "rows", 100_000)))
    with tempfile.TemporaryDirectory(prefix="backroom-bench-statements-") as tmp:
        data_dir = Path(args.data) if args.data else Path(tmp)
        db = Database(data_dir / "hub.db")
        try:
            t0 = time.perf_counter()
            bill_rows = db.write_sync(lambda conn: build(conn, rows))
            path = data_dir / "wechat-trade-bill.csv"
            path.write_bytes(bills.wechat_bill(bill_rows))
            built_s = time.perf_counter() - t0
            data = path.read_bytes()
            t1 = time.perf_counter()
            statement = statements.parse("wechat", data, None)
            t2 = time.perf_counter()
            prepared = store.prepare(db.reader(), statement, statements.content_hash(data), path.name)
            t3 = time.perf_counter()
            actor = Actor(user_id="bench")
            result = db.write_sync(lambda conn: store.record(conn, prepared, actor, DAY.isoformat()))
            t4 = time.perf_counter()
            again = store.already(db.reader(), "wechat", statements.content_hash(path.read_bytes()))
            t5 = time.perf_counter()
        finally:
            db.close()
    kinds: dict[str, int] = {}
    for a in result.anomalies:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    figures = {
        "bench": "statements",
        "bill_rows": result.rows,
        "tenders": rows,
        "file_bytes": len(data),
        "parse_s": round(t2 - t1, 3),
        "match_s": round(t3 - t2, 3),
        "record_s": round(t4 - t3, 3),
        "import_match_s": round(t4 - t1, 3),
        "rows_per_s": round(result.rows / (t4 - t1)),
        "reimport_s": round(t5 - t4, 4),
        "reimport_unchanged": again is not None and again.import_id == result.import_id,
        "matched": result.matched,
        "anomalies": kinds,
        "build_s": round(built_s, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if not args.json:
        print(
            f"{result.rows} bill rows against {rows} tenders: parse {figures['parse_s']} s, match "
            f"{figures['match_s']} s, record {figures['record_s']} s ({figures['rows_per_s']} rows/s); "
            f"{result.matched} matched, anomalies {kinds}"
        )
    print(json.dumps(figures))
    return 0
