"""`backroom bench console`: every page of the HQ console on a chain of `--stores` stores with `--days` of history.

Builds the chain with hq_sync/server/storage/history.py into a SQLite file in a temporary directory,
or reuses `--db FILE` (built there on first use and kept: a year of 50 stores takes minutes to write
and some GB). Starts `backroom hq serve` on it as a subprocess, logs in as each measured role
(`--roles`, the demo logins; the token goes as the console's session cookie), and fetches every page
the console's navigation shows that role, the pages each of them links to below itself (one of each
kind) and the views of DETAIL_PATHS (searches, the longest member history), `--repeat` times
one after another after one untimed warm-up fetch. Per page: client-measured p50/p95/max and the
server's own figure from `Server-Timing: app;dur=<ms>`. A page that answers 404 is reported as
missing, any other non-200 answer as a failure. Target: every page's p95 ≤ 500 ms. Prints a
summary, then the figures as one JSON object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from edge.bench import _free_port, _machine, _machine_busy_s, _proc_cpu_s, _self_cpu_s
from edge.bench_ui import _measure

TARGET_P95_MS = 500.0
# Views behind a query, and the longest member history, that the menu's links do not reach.
DETAIL_PATHS = (
    "/hq/ui/members?q=13800138000",
    "/hq/ui/members?q=8000",
    "/hq/ui/members?q=会员001",
    "/hq/ui/members/{busy_member}",
    "/hq/ui/members/M000001",
    "/hq/ui/reports?by=category",
    "/hq/ui/reports?by=hour",
    "/hq/ui/reports?by=region&from={year_ago}&to={today}",
    "/hq/ui/reports?by=day&from={year_ago}&to={today}",
)
MAX_BELOW = 4  # linked pages of different kinds below one menu page
_HREF = re.compile(r'href="(/hq/ui/[^"?#]*)"')
_SKIP = re.compile(r"/events$|/export|[./]csv$|/lang/|/logout$|/static/")  # streams, downloads, actions


def role_logins() -> dict[str, tuple[str, str]]:
    """role -> (username, password) of the demo HQ's logins."""
    from hq_sync.server.service.demo import DEMO_USERS

    return {role: (username, password) for username, password, role, _ in reversed(DEMO_USERS)}


class HqProcess:
    """`backroom hq serve --db FILE` on a free port; its log goes to a file."""

    def __init__(self, db: Path, log_path: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # --demo: a chain generated before a demo login was added gains it (nothing else changes)
        self.command = [sys.executable, "-m", "edge.cli", "hq", "serve", "--demo", "--db", str(db), "--port",
                        str(self.port), "--host", "127.0.0.1", "--log-level", "warning"]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HqProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env)
        deadline = time.monotonic() + 900  # an older chain gains new rollups at its first start: minutes
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"HQ exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"HQ did not answer /healthz within 900 s:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _chain(args: argparse.Namespace) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """(database file, scratch dir, how it was built). Builds the chain unless --db already holds one."""
    from hq_sync.server.storage.db import open_db
    from hq_sync.server.storage.history import generate_chain

    with tempfile.TemporaryDirectory(prefix="backroom-bench-console-") as scratch:
        work = Path(scratch)
        path = Path(args.db) if args.db else work / "hq.sqlite3"
        built: dict[str, Any] = {"reused": True}
        if not path.exists():
            db = open_db(str(path))
            try:
                stats = generate_chain(db, stores=args.stores, days=args.days, tickets_per_day=args.tickets_per_day,
                                       members=args.members,
                                       progress=None if args.json else (lambda m: print("  chain " + m, flush=True)))
            finally:
                db.close()
            built = {"reused": False, **msgspec.to_builtins(stats)}
        yield path, work, built


def _busy_member(db_path: Path) -> str:
    """The member with the most sales: the longest history page."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT member_id FROM hq_sales WHERE member_id IS NOT NULL GROUP BY member_id "
                           "ORDER BY count(*) DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else "M000001"


def console_paths(client: httpx.Client, role: str) -> list[str]:
    """The console's navigation as this role sees it, each menu page followed by the pages it links to
    below itself (one of each kind: a store, a user…), then DETAIL_PATHS."""
    from hq_sync.server.console.nav import pages_for

    paths: list[str] = []
    kinds: set[str] = set()
    for item in pages_for(role):
        paths.append(item.path)
        page = client.get(item.path)
        below = 0
        for href in _HREF.findall(page.text):
            kind = href.rsplit("/", 1)[0]
            if href.startswith(item.path + "/") and not _SKIP.search(href) and kind not in kinds \
                    and below < MAX_BELOW:
                kinds.add(kind)
                paths.append(href)
                below += 1
    return [*paths, *(p for p in DETAIL_PATHS if role_may(role, p))]


def role_may(role: str, path: str) -> bool:
    from hq_sync.server.console.nav import pages_for

    return any(path.startswith(item.path) for item in pages_for(role))


def bench_console(args: argparse.Namespace) -> dict[str, Any]:
    from hq_sync.server.console.session import SESSION_COOKIE

    with _chain(args) as (path, work, built):
        db_bytes = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        today = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Shanghai")).date()
        names = {"busy_member": _busy_member(path), "today": today.isoformat(),
                 "year_ago": (today - datetime.timedelta(days=364)).isoformat()}
        pages: dict[str, dict[str, Any]] = {}
        with HqProcess(path, work / "hq.log") as hq:
            hq0, cli0, all0, w0 = _proc_cpu_s(hq.pid), _self_cpu_s(), _machine_busy_s(), time.perf_counter()
            for role in args.roles.split(","):
                username, password = role_logins()[role]
                login = httpx.post(hq.base + "/hq/v1/auth/login", json={"username": username, "password": password},
                                   timeout=30)
                if login.status_code != 200:
                    raise RuntimeError(f"{username} login failed: {login.status_code} {login.text[:200]}")
                token = login.json()["token"]
                with httpx.Client(base_url=hq.base, timeout=60, follow_redirects=False,
                                  headers={"Accept": "text/html"}, cookies={SESSION_COOKIE: token}) as client:
                    for target in dict.fromkeys(page.format(**names) for page in console_paths(client, role)):
                        pages[f"{role} {target}"] = _measure(client, target, args.repeat)
            wall = time.perf_counter() - w0
            hq_cpu, cli_cpu = _proc_cpu_s(hq.pid) - hq0, _self_cpu_s() - cli0
            others = max(0.0, _machine_busy_s() - all0 - hq_cpu - cli_cpu)
        machine = _machine(path.parent)
    measured = {p: f for p, f in pages.items() if f["status"] == 200}
    return {
        "bench": "console",
        "repeat": args.repeat,
        "db_mb": round(db_bytes / 1e6, 1),
        **built,
        "pages": pages,
        "missing": [p for p, f in pages.items() if f.get("missing")],
        "failed": [p for p, f in pages.items() if f.get("failed")],
        "worst_p95_ms": max((f["p95_ms"] for f in measured.values()), default=None),
        "worst_app_p95_ms": max((f.get("app_p95_ms", 0.0) for f in measured.values()), default=None),
        "target_met": bool(measured) and all(f["p95_ms"] <= TARGET_P95_MS for f in measured.values())
        and not any(f.get("failed") for f in pages.values()),
        "hq_cpu_pct": round(100 * hq_cpu / wall, 1) if wall else None,
        "client_cpu_pct": round(100 * cli_cpu / wall, 1) if wall else None,
        "others_cpu_pct": round(100 * others / wall, 1) if wall else None,
        "machine": machine,
    }


def _summary(f: dict[str, Any]) -> list[str]:
    built = "reused" if f["reused"] else (f"built in {f['seconds']} s ({f['stores']} stores, {f['days']} days, "
                                          f"{f['tickets']} tickets, {f['lines']} lines)")
    lines = [f"backroom bench console: {len(f['pages'])} pages x {f['repeat']}, database {f['db_mb']} MB, {built}",
             f"  machine    {f['machine']}"]
    for page, p in f["pages"].items():
        if p.get("missing"):
            lines.append(f"  {page:60} missing (404)")
        elif p["status"] != 200:
            lines.append(f"  {page:60} FAILED {p['status']} {p.get('body', '')}")
        else:
            app = f", app p50 {p['app_p50_ms']} p95 {p['app_p95_ms']} ms" if "app_p50_ms" in p else ""
            lines.append(f"  {page:60} p50 {p['p50_ms']} p95 {p['p95_ms']} max {p['max_ms']} ms{app}, {p['bytes']} B"
                         + (f", {p['failures']} failed" if p.get("failures") else ""))
    lines.append(f"  CPU        HQ {f['hq_cpu_pct']}%, bench client {f['client_cpu_pct']}%,"
                 f" other processes {f['others_cpu_pct']}%")
    lines.append(f"  target     every page p95 ≤ {TARGET_P95_MS:g} ms: {'met' if f['target_met'] else 'MISSED'}")
    return lines


def run_console_bench(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if args.repeat < 1 or args.days < 0 or args.tickets_per_day < 1 or args.stores < 1 or args.members < 0:
        print("--repeat, --stores and --tickets-per-day must be positive, --days and --members not negative",
              file=sys.stderr)
        return 2
    unknown = [r for r in args.roles.split(",") if r not in role_logins()]
    if unknown:
        print(f"--roles: unknown {unknown}; known {sorted(role_logins())}", file=sys.stderr)
        return 2
    figures = bench_console(args)
    if not args.json:
        print("\n".join(_summary(figures)))
    print(msgspec.json.encode(figures).decode(), flush=True)
    return 0
