"""`backroom bench hq-bill`: HQ imports one chain merchant bill of `--rows` WeChat payments covering
`--stores` stores (docs/payments-hq.md).

Builds an HQ SQLite database (the real schema) holding one day of `--rows` provider tenders spread over
the stores, written straight into `hq_pay_tenders` (the bench is about the bill, not ingest), with a refund
on one in fifty; then the day's trade bill in WeChat's layout (edge/payments/bills.py): most rows named by
微信订单号, some by 商户订单号, some by the store's device only (matched by amount and time), and a few of
each anomaly kind. Times the import as the API runs it (parse, split by store, match per store, store, in
one write transaction), then the re-import of the same file (a digest look-up). Deterministic (fixed
seed). Prints a summary, then the figures as one JSON object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from edge.payments.bills import wechat_bill
from edge.payments.statements import CHINA, StatementRow
from hq_sync.server.service import statements
from hq_sync.server.service.access import Principal
from hq_sync.server.service.stores import ensure_store
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.schema import create_schema

SEED = 20261202
DAY = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA)
FINANCE = Principal("bench-finance", "finance")


def build(db_path: Path, rows: int, stores: int) -> bytes:
    """The HQ database with the stores' tenders; the bill's bytes."""
    rnd = random.Random(SEED)
    db = open_db(str(db_path))
    create_schema(db)
    tenders: list[tuple[object, ...]] = []
    bill: list[StatementRow] = []
    step = 12 * 3600 / rows
    with db.write() as tx:
        for s in range(stores):
            ensure_store(tx, f"S{s:04d}", region=f"R{s % 10}")
            tx.run("""INSERT INTO hq_statement_store_codes (provider, code, store_id, set_at) VALUES (?, ?, ?, ?)""",
                   ("wechat", f"DEV{s:04d}", f"S{s:04d}", DAY.isoformat()))
        for n in range(rows):
            at = (DAY + timedelta(seconds=n * step)).isoformat()
            store = f"S{n % stores:04d}"
            amount = rnd.randint(100, 50000)
            txn, order = f"42000{n:023d}", f"ORD{n:09d}"
            roll = rnd.random()
            reference = txn if roll < 0.90 else (order if roll < 0.95 else None)
            if n % 5000 == 13:  # charged twice below: the till named the merchant order number
                reference = order
            sale_id = f"s{n:08d}"
            tenders.append((store, "sale", sale_id, 1, sale_id, "wechat", amount, reference, at, at[:10]))
            if n % 5000 == 7:  # sale_no_payment: not on the bill
                continue
            paid = amount + 1 if n % 5000 == 11 else amount  # amount_mismatch
            bill.append(StatementRow(row_no=0, kind="payment", transaction_id=txn, merchant_order_no=order,
                                     amount=paid, fee=paid * 6 // 1000, time=at, store=f"DEV{n % stores:04d}"))
            if n % 5000 == 13:  # duplicate_payment: charged twice
                bill.append(StatementRow(row_no=0, kind="payment", transaction_id=f"43000{n:023d}",
                                         merchant_order_no=order, amount=amount, fee=0, time=at,
                                         store=f"DEV{n % stores:04d}"))
            if n % 50 == 3:  # refunded in full
                r_at = (DAY + timedelta(seconds=n * step + 60)).isoformat()
                tenders.append((store, "refund", f"r{n:08d}", 1, sale_id, "wechat", amount, reference, r_at,
                                r_at[:10]))
                bill.append(StatementRow(row_no=0, kind="refund", transaction_id=txn, merchant_order_no=order,
                                         refund_id=f"50000{n:023d}", amount=amount, fee=-(amount * 6 // 1000),
                                         time=r_at, store=f"DEV{n % stores:04d}"))
        for n in range(rows // 5000 + 1):  # paid_no_sale: nobody's, and a store's device with no sale
            bill.append(StatementRow(row_no=0, kind="payment", transaction_id=f"44000{n:023d}", amount=777,
                                     time=(DAY + timedelta(hours=3, seconds=n)).isoformat(),
                                     store="" if n % 2 else f"DEV{n % stores:04d}"))
        tx.copy("hq_pay_tenders", "store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference, at, day",
                tenders)
    db.close()
    return wechat_bill(bill)


def run_hq_bill_bench(args: argparse.Namespace) -> int:
    rows = max(1000, int(getattr(args, "rows", 100_000)))
    stores = max(1, int(getattr(args, "stores", 50)))
    with tempfile.TemporaryDirectory(prefix="backroom-bench-hq-bill-") as tmp:
        path = Path(args.data) / "hq-bill.sqlite3" if args.data else Path(tmp) / "hq.sqlite3"
        t0 = time.perf_counter()
        data = build(path, rows, stores)
        built_s = time.perf_counter() - t0
        db = open_db(str(path))
        try:
            t1 = time.perf_counter()
            out = statements.import_statement(db, FINANCE, "wechat", data, "bench.csv", DAY.isoformat())
            t2 = time.perf_counter()
            again = statements.import_statement(db, FINANCE, "wechat", data, "bench.csv", DAY.isoformat())
            t3 = time.perf_counter()
        finally:
            db.close()
    kinds: dict[str, int] = {}
    for a in out["anomalies"]:
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    by = {s["store_id"]: s for s in out["stores"]}
    figures = {
        "bench": "hq-bill",
        "bill_rows": out["rows_in_file"],
        "stores": len([s for s in by if s]),
        "tenders": rows,
        "file_bytes": len(data),
        "import_s": round(t2 - t1, 3),
        "rows_per_s": round(int(out["rows_in_file"]) / (t2 - t1)),
        "reimport_s": round(t3 - t2, 4),
        "reimport_unchanged": bool(again["duplicate"]) and again["statement_id"] == out["statement_id"],
        "matched": sum(int(s["matched"]) for s in out["stores"]),
        "unattributed_rows": int(by[""]["rows"]) if "" in by else 0,
        "anomalies": kinds,
        "build_s": round(built_s, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if not args.json:
        print(f"{figures['bill_rows']} bill rows over {figures['stores']} stores: import {figures['import_s']} s "
              f"({figures['rows_per_s']} rows/s), re-import {figures['reimport_s']} s; "
              f"{figures['matched']} matched, anomalies {kinds}")
    print(json.dumps(figures))
    return 0
