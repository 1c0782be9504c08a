"""`backroom bench shifts`: the cost of a cashier shift's report and close on a busy shift.

A demo hub in a temporary (or `--data`) directory; a shift opened at till T1; then `--tills` x 250 cash
sales committed through the service (half at T1, the rest at T2, interleaved, so the shift's journal
window holds the other till's trade too); then the shift's live report read 20 times on a reader (it
reads the window through the journal's kind index) and the close (report frozen, journaled) timed once;
then `backroom journal verify` over the result, which also checks the closed shift against its record.
Prints a summary, then the figures as one JSON object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from edge.catalog.barcodes import VariableMeasureLayout
from edge.clock import StoreClock
from edge.eod import shifts
from edge.eod.shift_models import ShiftCloseRequest, ShiftOpenRequest
from edge.pricing.engine import Quote
from edge.sales.basket import quote_lines
from edge.sales.checkout import commit_sale, request_hash
from edge.sales.models import LineIn, SaleRequest, TenderIn
from edge.stock.ledger import Actor
from edge.storage.db import Database

READS = 20


def _sell(conn: sqlite3.Connection, *, sale: SaleRequest, quote: Quote, actor: Actor, clock: StoreClock) -> object:
    return commit_sale(conn, sale, request_hash(sale), quote, actor, clock.stamp(), clock.today(), "DEMO001")


def _run(data: Path, sales: int, quiet: bool) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    clock = StoreClock("Asia/Shanghai")
    db = Database(data / "hub.sqlite3")
    t1, t2 = Actor(user_id="U-cashier", till_id="T1"), Actor(user_id="U-cashier", till_id="T2")
    try:
        opened = ShiftOpenRequest(shift_id=uuid.uuid4(), till_id="T1", opening_float=50000)
        db.write_sync(lambda c: shifts.open_shift(c, opened, request_hash(opened), 50000, t1, clock.stamp()))
        lines = [LineIn(sku="SKU00011", qty=1)]
        quote = quote_lines(db.reader(), VariableMeasureLayout(), lines, None)
        started = time.perf_counter()
        for n in range(sales):
            who = t1 if n % 2 == 0 else t2
            sale = SaleRequest(sale_id=uuid.uuid4(), till_id=who.till_id or "", lines=lines,
                               tenders=[TenderIn("cash", 1000)])
            db.write_sync(partial(_sell, sale=sale, quote=quote, actor=who, clock=clock))
        commit_s = time.perf_counter() - started
        reader, shift_id = db.reader(), str(opened.shift_id)
        reads = []
        for _ in range(READS):
            t = time.perf_counter()
            report = shifts.get(reader, shift_id, clock.stamp(), None)
            reads.append((time.perf_counter() - t) * 1000)
        close = ShiftCloseRequest(counted=report.figures.cash.expected)
        t = time.perf_counter()
        db.write_sync(lambda c: shifts.close_shift(c, shift_id, close, request_hash(close), t1, False, clock.stamp()))
        close_ms = (time.perf_counter() - t) * 1000
    finally:
        db.close()
    t = time.perf_counter()
    verified = subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--data", str(data)],
                              capture_output=True, text=True)
    verify_s = time.perf_counter() - t
    reads.sort()
    figures: dict[str, object] = {
        "bench": "shifts", "sales": sales, "shift_tickets": report.figures.tickets,
        "commit_sales_per_s": round(sales / commit_s, 1),
        "report_median_ms": round(statistics.median(reads), 2), "report_max_ms": round(reads[-1], 2),
        "close_ms": round(close_ms, 2), "verify_s": round(verify_s, 2), "verify_ok": verified.returncode == 0}
    if not quiet:
        print(f"{sales} sales ({report.figures.tickets} in the shift at T1) committed at "
              f"{figures['commit_sales_per_s']}/s; shift report median {figures['report_median_ms']} ms "
              f"(max {figures['report_max_ms']} ms over {READS}); close {figures['close_ms']} ms; "
              f"journal verify {figures['verify_s']} s ({verified.stdout.strip()})")
    return figures


def run_shift_bench(args: argparse.Namespace) -> int:
    sales = max(2, args.tills * 250)
    if args.data:
        figures = _run(Path(args.data), sales, args.json)
    else:
        with tempfile.TemporaryDirectory(prefix="backroom-bench-shifts-") as tmp:
            figures = _run(Path(tmp) / "hub", sales, args.json)
    print(json.dumps(figures))
    return 0 if figures["verify_ok"] else 1
