"""`backroom bench ui`: every page of the manager's tablet on a year of a busy store.

Builds the store with edge/reports/history.py (the demo store plus `--days` days of
`--tickets-per-day` tickets) in a temporary directory, or reuses `--data DIR` (built there on first
use, kept afterwards: a year takes minutes to write and some GB). Starts `backroom serve` on it as a
subprocess, logs in as the store manager (the token goes both as `Authorization: Bearer` and as the
tablet's session cookie `backroom_session`), then fetches each path of PAGES `--repeat` times, one
after another, after one untimed warm-up fetch of each. Per path: client-measured p50/p95/max and,
when the response carries `Server-Timing: app;dur=<ms>`, the same of the server's own figure. A
path that answers 404 is reported as missing (its page is not built yet), not as a failure; any
other non-200 answer is a failure. Target: every page's p95 < 300 ms. Prints a summary, then the
figures as one JSON object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from edge.bench import Server, _machine, _machine_busy_s, _pct, _proc_cpu_s, _self_cpu_s
from edge.clock import StoreClock
from edge.config import load_config

PAGES = [
    "/api/v1/reports/dashboard",
    "/api/v1/reports/dashboard?day={yesterday}",
    "/api/v1/reports/promotions",
    "/ui/login",
    "/ui/dashboard",
    "/ui/dashboard?day={yesterday}",
    "/ui/stock",
    "/ui/stock?alerts=1",
    "/ui/stock?q=6901",
    "/ui/stock/expiring",
    "/ui/stock/replenishment",
    "/ui/stock/receive",
    "/ui/stock/counts",
    "/ui/stock/counts/{stocktake}",
    "/ui/stock/transfers",
    "/ui/members",
    "/ui/members?q=8000",
    "/ui/members/M000001",
    "/ui/promotions",
    "/ui/devices",
    "/ui/sync",
    "/ui/eod",
    "/ui/eod?day={yesterday}",
    "/ui/users",
    "/ui/users/U-cashier",
]
TARGET_P95_MS = 300.0
SESSION_COOKIE = "backroom_session"
_APP_DUR = re.compile(r"(?:^|,)\s*app\s*;[^,]*?dur=([0-9.]+)")


def server_timing_ms(header: str | None) -> float | None:
    """The `app` entry's duration of a Server-Timing header, in ms."""
    if not header:
        return None
    found = _APP_DUR.search(header)
    return float(found.group(1)) if found else None


@contextlib.contextmanager
def _year_store(args: argparse.Namespace) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """(data dir, scratch dir, how it was built). Builds the history unless --data already holds a hub."""
    from edge.reports.history import seed_and_generate

    with tempfile.TemporaryDirectory(prefix="backroom-bench-ui-") as scratch:
        work = Path(scratch)
        data = Path(args.data) if args.data else work / "data"
        data.mkdir(parents=True, exist_ok=True)
        built: dict[str, Any] = {"reused": True}
        if not (data / "hub.sqlite3").exists():
            stats = seed_and_generate(data, days=args.days, tickets_per_day=args.tickets_per_day,
                                      progress=None if args.json else (lambda m: print("  history " + m, flush=True)))
            built = {"reused": False, "generation_s": stats.seconds, "tickets": stats.tickets, "lines": stats.lines,
                     "returns": stats.returns}
        yield data, work, built


def _measure(client: httpx.Client, path: str, repeat: int) -> dict[str, Any]:
    first = client.get(path)
    if first.status_code == 404:
        return {"status": 404, "missing": True}
    if first.status_code != 200:
        return {"status": first.status_code, "failed": True, "body": first.text[:200]}
    wall: list[float] = []
    app: list[float] = []
    failures = 0
    size = len(first.content)
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = client.get(path)
        wall.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            failures += 1
        dur = server_timing_ms(resp.headers.get("server-timing"))
        if dur is not None:
            app.append(dur)
    wall.sort()
    app.sort()
    out: dict[str, Any] = {"status": 200, "bytes": size, "p50_ms": round(_pct(wall, 0.5), 2),
                           "p95_ms": round(_pct(wall, 0.95), 2), "max_ms": round(wall[-1], 2)}
    if app:
        out |= {"app_p50_ms": round(_pct(app, 0.5), 2), "app_p95_ms": round(_pct(app, 0.95), 2),
                "app_max_ms": round(app[-1], 2)}
    if failures:
        out |= {"failed": True, "failures": failures}
    return out


def bench_ui(args: argparse.Namespace) -> dict[str, Any]:
    with _year_store(args) as (data, work, built):
        db_bytes = (data / "hub.sqlite3").stat().st_size
        with Server(data, work / "hub.log") as server:
            login = httpx.post(server.base + "/api/v1/auth/login",
                               json={"username": "manager", "password": "manager-demo"}, timeout=30)
            if login.status_code != 200:
                raise RuntimeError(f"manager login failed: {login.status_code} {login.text[:200]}")
            token = login.json()["token"]
            store_today = StoreClock(load_config(data_dir=data).timezone).now().date()
            yesterday = (store_today - datetime.timedelta(days=1)).isoformat()
            # an all-items stock-take, so its count sheet (the biggest page) is measured too
            opened = httpx.post(server.base + "/api/v1/stocktakes", json={"stocktake_id": str(uuid.uuid4())},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60)
            # a rerun on the same data finds the last run's stock-take still open: measure that one
            if opened.status_code not in (200, 201) and opened.json().get("code") != "stocktake_overlap":
                raise RuntimeError(f"opening a stock-take failed: {opened.status_code} {opened.text[:200]}")
            names = {"yesterday": yesterday, "stocktake": opened.json()["stocktake_id"]}
            with httpx.Client(base_url=server.base, timeout=60, follow_redirects=False,
                              headers={"Authorization": f"Bearer {token}", "Accept": "text/html,application/json"},
                              cookies={SESSION_COOKIE: token}) as client:
                hub0, cli0, all0, w0 = _proc_cpu_s(server.pid), _self_cpu_s(), _machine_busy_s(), time.perf_counter()
                pages = {path.format(**names): _measure(client, path.format(**names), args.repeat)
                         for path in PAGES}
                wall = time.perf_counter() - w0
                hub_cpu, cli_cpu = _proc_cpu_s(server.pid) - hub0, _self_cpu_s() - cli0
                others = max(0.0, _machine_busy_s() - all0 - hub_cpu - cli_cpu)
        machine = _machine(data)
    measured = {p: f for p, f in pages.items() if f["status"] == 200}
    return {
        "bench": "ui",
        "repeat": args.repeat,
        "db_mb": round(db_bytes / 1e6, 1),
        **built,
        "pages": pages,
        "missing": [p for p, f in pages.items() if f.get("missing")],
        "failed": [p for p, f in pages.items() if f.get("failed")],
        "worst_p95_ms": max((f["p95_ms"] for f in measured.values()), default=None),
        "target_met": bool(measured) and all(f["p95_ms"] < TARGET_P95_MS for f in measured.values())
        and not any(f.get("failed") for f in pages.values()),
        "hub_cpu_pct": round(100 * hub_cpu / wall, 1) if wall else None,
        "client_cpu_pct": round(100 * cli_cpu / wall, 1) if wall else None,
        "others_cpu_pct": round(100 * others / wall, 1) if wall else None,
        "machine": machine,
    }


def _summary(f: dict[str, Any]) -> list[str]:
    built = "reused" if f["reused"] else f"built in {f['generation_s']} s ({f['tickets']} tickets)"
    lines = [f"backroom bench ui: {len(f['pages'])} paths x {f['repeat']}, database {f['db_mb']} MB, {built}",
             f"  machine    {f['machine']}"]
    for path, p in f["pages"].items():
        if p.get("missing"):
            lines.append(f"  {path:52} missing (404)")
        elif p["status"] != 200:
            lines.append(f"  {path:52} FAILED {p['status']} {p.get('body', '')}")
        else:
            app = f", app p50 {p['app_p50_ms']} p95 {p['app_p95_ms']} ms" if "app_p50_ms" in p else ""
            lines.append(f"  {path:52} p50 {p['p50_ms']} p95 {p['p95_ms']} max {p['max_ms']} ms{app},"
                         f" {p['bytes']} B" + (f", {p['failures']} failed" if p.get("failures") else ""))
    lines.append(f"  CPU        hub {f['hub_cpu_pct']}%, bench client {f['client_cpu_pct']}%,"
                 f" other processes {f['others_cpu_pct']}%")
    lines.append(f"  target     every page p95 < {TARGET_P95_MS:g} ms: {'met' if f['target_met'] else 'MISSED'}")
    return lines


def run_ui_bench(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if args.repeat < 1 or args.days < 0 or args.tickets_per_day < 1:
        print("--repeat and --tickets-per-day must be positive, --days not negative", file=sys.stderr)
        return 2
    figures = bench_ui(args)
    if not args.json:
        print("\n".join(_summary(figures)))
    print(msgspec.json.encode(figures).decode(), flush=True)
    return 0
