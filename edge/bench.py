"""`backroom bench checkout|lookup`: the hub's two hot paths, measured through its real HTTP API.

Both benches seed a fresh temporary data directory with the demo store (unless `--data` names one),
start `backroom serve` as a subprocess on a free port and drive it over HTTP/1.1 keep-alive
connections, one per till or scanner, from a lean asyncio client (uvloop when installed) in this
process; setup (logins, catalog, top-ups, quotes) uses httpx.

- checkout: `--tills` cashiers, each logged in on its own till, run closed loops of committed sales
  (POST /api/v1/sales): 5-line baskets of demo items scanned by barcode, weighed-item labels
  (prefix 21) and price labels (prefix 23), a third with a member, mixed tenders (cash with change,
  card, Alipay, WeChat Pay, UnionPay, splits, stored value and points within the member's balance).
  Baskets are quoted once before the clock starts so each sale can be tendered exactly, as a till
  does after showing the total; the measured request is the commit alone.
- lookup: an open-loop generator issues GET /api/v1/items/lookup at `--rate` per second over
  `--tills` connections, whether or not earlier answers came back; a request that waits for a free
  connection counts that wait in its latency.

The workload (baskets, members, tenders, scanned codes) comes from a fixed random seed; ids are
random so that a reused `--data` store (which the bench writes sales into) never sees replays.
`--seconds` is the measured window, after a warm-up of a tenth of it (at most 1 s).

Each bench also measures its raw floor in the same run, after the server has stopped: the same work
called directly in this process, without HTTP (checkout: decode, the route's own quote and
`commit_sale` through the hub's single writer, `Database.write_sync`, on a copy of the database
taken before the timed run, WAL and synchronous=FULL, from `--tills` threads and then from one
thread, each for half of `--seconds`; lookup: `lookup_barcode` on a read connection). Hub CPU comes
from /proc/<pid>/stat of the server process and of its child processes (the sale-writer process:
`hub_cpu_ms_per_sale` is all of the hub's processes together, `hub_busiest_cpu_ms_per_sale` the busiest
one's, `hub_processes` each one's); the bench's own CPU and what every other process on the
machine used meanwhile are reported too, since they share its cores. A human summary is printed,
then the figures as one JSON object on the last line (`--json`: only that line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec

from edge.catalog.barcodes import make_variable_measure
from edge.members import pii

SEED = 20240611
WEIGHED_DEMO_LABEL = "2112345015002"  # 1.500 kg of loose Fuji apples (PLU 12345)
PIN = "1234"
TOPUP_FEN = 500_000  # the largest single top-up; more than any member spends in a bench run
BASKETS_PER_TILL = 48
_TICK = os.sysconf("SC_CLK_TCK")
_decode = msgspec.json.decode
_encode = msgspec.json.encode


# -- measuring -----------------------------------------------------------------------------------------

def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _stat_fields(path: str) -> list[str]:
    """The fields of a /proc stat file after the command name: [0] is field 3 (state), [1] the parent's pid,
    [11] and [12] utime and stime."""
    with open(path, encoding="ascii", errors="replace") as fh:
        stat = fh.read()
    return stat[stat.rindex(")") + 2:].split()


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    return _proc_cpu_s_path(f"/proc/{pid}/stat")


def _main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of a process's main thread: the hub's event loop (HTTP, routing, quotes); the rest of
    its CPU is the SQLite writer's and worker threads'."""
    return _proc_cpu_s_path(f"/proc/{pid}/task/{pid}/stat")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the hub's sale-writer process; not the bench's own)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(f"/proc/{entry}/stat")[1])
        except OSError:
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def _proc_name(pid: int) -> str:
    """A short name for a hub process: its `-m` module, else its executable's name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return str(pid)
    if b"-m" in argv and argv.index(b"-m") + 1 < len(argv):
        return argv[argv.index(b"-m") + 1].decode(errors="replace")
    return os.path.basename(argv[0].decode(errors="replace")) or str(pid)


def _wait_for_children(pid: int, timeout_s: float) -> None:
    """Wait (at most `timeout_s`) until the hub has a child process whose database connection is open:
    the sale-writer process the first sale starts (a hub without one just costs the wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in _children(pid):
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{child}/fd/{fd}").endswith(".sqlite3")
                       for fd in os.listdir(f"/proc/{child}/fd")):
                    time.sleep(0.2)  # its writer thread is up a moment after the connection
                    return
        time.sleep(0.05)


def _proc_cpu_s_path(path: str) -> float:
    fields = _stat_fields(path)
    return (int(fields[11]) + int(fields[12])) / _TICK


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat, every core)."""
    with open("/proc/stat", encoding="ascii") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # user nice system [idle iowait] irq softirq steal
    return busy / _TICK


def _fs_type(path: Path) -> str:
    best, fstype = "", "?"
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
                if len(parts[1]) >= len(best):
                    best, fstype = parts[1], parts[2]
    return fstype


def _machine(data_dir: Path) -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model} x{os.cpu_count()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, data on {_fs_type(data_dir)}")


@dataclass
class Window:
    """The measured interval and the CPU each side used in it."""

    t_start: float
    t_end: float
    hub_cpu_s: float = 0.0
    hub_main_cpu_s: float = 0.0  # of which the hub's main thread (the event loop)
    processes: dict[str, float] = field(default_factory=dict)  # each hub process's CPU (the hub, its writer)
    client_cpu_s: float = 0.0
    others_cpu_s: float = 0.0  # what every other process on the machine used meanwhile
    wall_s: float = 0.0

    def pct(self, cpu_s: float) -> float | None:
        """CPU seconds as a percentage of one core over the window."""
        return round(100 * cpu_s / self.wall_s, 1) if self.wall_s else None


async def _sample_cpu(pid: int, window: Window) -> None:
    await asyncio.sleep(max(0.0, window.t_start - time.perf_counter()))
    pids = [pid, *_children(pid)]
    start = {p: _cpu_or_none(p) for p in pids}
    cli0, all0, w0 = _self_cpu_s(), _machine_busy_s(), time.perf_counter()
    main0 = _main_thread_cpu_s(pid)
    await asyncio.sleep(max(0.0, window.t_end - time.perf_counter()))
    for p in pids:
        before, after = start[p], _cpu_or_none(p)
        if before is not None and after is not None:  # a process that ended in the window is not counted
            window.processes["hub" if p == pid else f"{_proc_name(p)}[{p}]"] = after - before
    window.hub_cpu_s = sum(window.processes.values())
    window.hub_main_cpu_s = _main_thread_cpu_s(pid) - main0
    window.client_cpu_s = _self_cpu_s() - cli0
    window.others_cpu_s = max(0.0, _machine_busy_s() - all0 - window.hub_cpu_s - window.client_cpu_s)
    window.wall_s = time.perf_counter() - w0


def _cpu_or_none(pid: int) -> float | None:
    try:
        return _proc_cpu_s(pid)
    except OSError:
        return None


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time, as a till or scanner does.

    A few dozen lines instead of a general client so that the bench, which shares the machine with
    the hub, spends as little CPU per request as it can. Requests are complete prebuilt bytes;
    responses must carry Content-Length (the hub's always do).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports only quack like one
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(ConnectionError("response without content-length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17: stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        status, body = int(head[9:12]), bytes(self.buf[end + 4: total])
        del self.buf[:total]
        waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the hub closed the connection: {exc}"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _http_request(method: str, path: str, port: int, token: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: application/json\r\n")
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


# -- the store under test ------------------------------------------------------------------------------

def _seed(data_dir: Path) -> None:
    from edge.clock import StoreClock
    from edge.config import load_config
    from edge.seed.demo import seed_demo
    from edge.storage.db import Database

    config = load_config(data_dir=data_dir)
    db = Database(config.db_path)
    try:
        db.write_sync(lambda conn: seed_demo(conn, config.store_id, StoreClock(config.timezone)))
        db.write_sync(_hold_tiers)
    finally:
        db.close()


def _hold_tiers(conn: Any) -> None:
    """Baskets are quoted before the clock starts; a member upgraded mid-run (a standalone hub upgrades
    at sale commit, docs/members.md) would make his quotes stale. The bench store's better tiers are
    out of reach, so tiers hold still while the rules still run at every member sale."""
    from edge.members import tiers

    settings = tiers.read_settings(conn)
    lowest = min(t.rank for t in settings.tiers)
    tiers.put_settings(conn, msgspec.structs.replace(settings, tiers=[
        t if t.rank == lowest else msgspec.structs.replace(t, threshold=10_000_000_000) for t in settings.tiers]))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`backroom serve` as a subprocess on a free port; its log goes to a file."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "edge.cli", "serve", "--data", str(data_dir), "--port", str(self.port),
                        "--log-level", "warning"]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
        env["BACKROOM_DEVICES"] = "0"  # checkout and lookup measure the till API, not the broker
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the hub did not answer /healthz within 30 s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text("utf-8", "replace")[-3000:]
        return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)


def stop(proc: subprocess.Popen[Any], sig: signal.Signals = signal.SIGINT, timeout: float = 15.0) -> None:
    """Stop a process the bench started: `sig`, then a kill if it has not exited within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[tuple[Path, Path]]:
    """(data dir, scratch dir). A fresh seeded temporary store unless --data names one."""
    with tempfile.TemporaryDirectory(prefix="backroom-bench-") as scratch:
        work = Path(scratch)
        data = Path(args.data) if args.data else work / "data"
        data.mkdir(parents=True, exist_ok=True)
        if not (data / "hub.sqlite3").exists():
            _seed(data)
        yield data, work


def _login(client: httpx.Client, till_id: str) -> dict[str, Any]:
    r = client.post("/api/v1/auth/login", json={"username": "cashier", "pin": PIN, "till_id": till_id})
    if r.status_code != 200:
        raise RuntimeError(f"cashier login at {till_id} failed: {r.status_code} {r.text[:200]}")
    return dict(r.json())


def _catalog(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get("/api/v1/items", params={"limit": 500, "offset": len(items)}).json()
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


class Scanner:
    """Codes a till scans: shelf barcodes, weighed-item labels (21) and price labels (23)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.counted = [i for i in items if i["unit"] == "each" and i["barcodes"]]
        self.labelled = [i for i in items if i["unit"] == "each" and not i["barcodes"] and i.get("plu")]
        self.weighed = [i for i in items if i["unit"] == "kg" and i.get("plu")]
        if not self.counted or not self.weighed:
            raise RuntimeError("the catalog has no counted items with barcodes or no weighed items with a PLU")

    def weighed_label(self, rng: random.Random) -> str:
        if rng.random() < 0.25:
            return WEIGHED_DEMO_LABEL
        item = rng.choice(self.weighed)
        return make_variable_measure("21", item["plu"], rng.randint(120, 2500))

    def line(self, rng: random.Random) -> dict[str, Any]:
        r = rng.random()
        if r < 0.2:
            return {"barcode": self.weighed_label(rng)}
        if r < 0.25 and self.labelled:
            item = rng.choice(self.labelled)
            return {"barcode": make_variable_measure("23", item["plu"], item["price"])}
        item = rng.choice(self.counted)
        line: dict[str, Any] = {"barcode": rng.choice(item["barcodes"])}
        if rng.random() < 0.3:
            line["qty"] = rng.randint(2, 4)
        return line

    def lookup_code(self, rng: random.Random) -> str:
        if rng.random() < 0.15:
            return self.weighed_label(rng)
        return str(rng.choice(rng.choice(self.counted)["barcodes"]))


# -- checkout --------------------------------------------------------------------------------------------

@dataclass
class MemberState:
    member_id: str
    points: int
    balance: int


@dataclass
class Basket:
    lines: list[dict[str, Any]]
    member: MemberState | None
    total: int


@dataclass
class Till:
    till_id: str
    token: str
    user_id: str
    rng: random.Random
    baskets: list[Basket]
    next_basket: int = 0

    def sale_body(self) -> bytes:
        basket = self.baskets[self.next_basket % len(self.baskets)]
        self.next_basket += 1
        body: dict[str, Any] = {
            "sale_id": str(uuid.uuid4()),  # random: a reused --data store must not see replays
            "till_id": self.till_id,
            "lines": basket.lines,
            "tenders": _tenders(self.rng, basket.total, basket.member),
        }
        if basket.member is not None:
            body["member_id"] = basket.member.member_id
        return _encode(body)


def _tenders(rng: random.Random, total: int, member: MemberState | None) -> list[dict[str, Any]]:
    """Tenders covering `total`: member value/points only within what the member holds."""
    tenders: list[dict[str, Any]] = []
    rest = total
    if member is not None:
        r = rng.random()
        if r < 0.4 and member.balance > 0:
            amount = min(member.balance, rest if rng.random() < 0.5 else max(1, rest // 2))
            tenders.append({"method": "stored_value", "amount": amount})
            member.balance -= amount
            rest -= amount
        elif r < 0.6 and member.points > 0:
            amount = min(member.points, max(1, rest // 5))
            tenders.append({"method": "points", "amount": amount})
            member.points -= amount
            rest -= amount
    if rest <= 0:
        return tenders
    kind = rng.choices(["cash", "card", "alipay", "wechat", "unionpay", "split"], [30, 15, 20, 20, 5, 10])[0]
    if kind == "split" and rest >= 2:
        part = rng.randint(1, rest - 1)
        tenders.append({"method": rng.choice(["card", "wechat", "alipay"]), "amount": part,
                        "reference": f"R{rng.getrandbits(40):012x}"})
        rest -= part
        kind = "cash"
    if kind in ("cash", "split"):
        note = rng.choice([1000, 5000, 10000])  # pay with the next 10, 50 or 100 yuan: change comes back
        tenders.append({"method": "cash", "amount": (rest // note + 1) * note})
    else:
        tenders.append({"method": kind, "amount": rest, "reference": f"R{rng.getrandbits(40):012x}"})
    return tenders


def _prepare_tills(client: httpx.Client, n_tills: int) -> list[Till]:
    rng = random.Random(SEED)
    logins = [_login(client, f"BENCH-{n:02d}") for n in range(1, n_tills + 1)]
    client.headers["authorization"] = f"Bearer {logins[0]['token']}"
    scanner = Scanner(_catalog(client))
    members: list[MemberState] = []
    for n in range(1, 1000):
        r = client.get(f"/api/v1/members/M{n:06d}")
        if r.status_code == 404:
            break
        r.raise_for_status()
        topup = client.post(f"/api/v1/members/M{n:06d}/topups", json={
            "topup_id": str(uuid.uuid4()), "amount": TOPUP_FEN, "method": "cash"})
        if topup.status_code != 201:
            raise RuntimeError(f"top-up of M{n:06d} failed: {topup.status_code} {topup.text[:200]}")
        m = topup.json()
        members.append(MemberState(m["member_id"], m["points"], m["balance"]))
    tills = []
    for n, login in enumerate(logins):
        own = members[n::n_tills]  # a member shops at one till at a time: balances tracked exactly
        baskets = []
        for _ in range(BASKETS_PER_TILL):
            lines = [scanner.line(rng) for _ in range(5)]
            member = rng.choice(own) if own and rng.random() < 1 / 3 else None
            body: dict[str, Any] = {"lines": lines}
            if member is not None:
                body["member_id"] = member.member_id
            q = client.post("/api/v1/quote", json=body)
            if q.status_code != 200:
                raise RuntimeError(f"quote failed: {q.status_code} {q.text[:300]}")
            baskets.append(Basket(lines, member, int(q.json()["total"])))
        tills.append(Till(login["till_id"], login["token"], login["user_id"], random.Random(rng.getrandbits(64)),
                          baskets))
    return tills


def _start_sale_writer(client: httpx.Client, hub_pid: int, till_id: str) -> None:
    """One sale before the measured run: the hub starts its sale-writer process at its first sale
    (edge/sales/sale_writer.py), and the window measures it running."""
    lines = [{"sku": "SKU00033", "qty": 1}]
    quote = client.post("/api/v1/quote", json={"lines": lines})
    quote.raise_for_status()
    sale = client.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": till_id, "lines": lines,
                                              "tenders": [{"method": "card", "amount": quote.json()["total"]}]})
    if sale.status_code != 201:
        raise RuntimeError(f"the first sale failed: {sale.status_code} {sale.text[:300]}")
    _wait_for_children(hub_pid, 10.0)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    committed: int = 0

    def per_second(self, window: Window) -> list[int]:
        """Sales committed in each whole second of the window: a falling series means the hub slows
        down as its tables grow."""
        counts = [0] * max(1, int(window.t_end - window.t_start))
        for t in self.done_at:
            second = int(t - window.t_start)
            if 0 <= second < len(counts):
                counts[second] += 1
        return counts


def _error_key(status: int, content: bytes) -> str:
    try:
        return f"{status} {_decode(content).get('code', '?')}"
    except (msgspec.DecodeError, AttributeError):
        return f"{status} ?"


def _update_member(basket_member: MemberState | None, content: bytes) -> None:
    if basket_member is None:
        return
    member = _decode(content).get("member")
    if member:
        basket_member.points, basket_member.balance = int(member["points"]), int(member["balance"])


async def _till_loop(server: Server, till: Till, window: Window, tally: Tally) -> None:
    conn = await HttpConnection.open("127.0.0.1", server.port)
    try:
        while time.perf_counter() < window.t_end:
            basket = till.baskets[till.next_basket % len(till.baskets)]
            request = _http_request("POST", "/api/v1/sales", server.port, till.token, till.sale_body())
            t0 = time.perf_counter()
            try:
                status, content = await conn.request(request)
            except ConnectionError as exc:
                tally.errors[f"connection: {exc}"] += 1
                conn.close()
                await asyncio.sleep(0.01)
                conn = await HttpConnection.open("127.0.0.1", server.port)
                continue
            t1 = time.perf_counter()
            if status == 201:
                _update_member(basket.member, content)
                if t0 >= window.t_start:
                    tally.latencies.append(t1 - t0)
                    tally.done_at.append(t1)
                    tally.committed += 1
            else:
                tally.errors[_error_key(status, content)] += 1
                if basket.member is not None:  # resync what the till believes the member holds
                    _, found = await conn.request(_http_request(
                        "GET", f"/api/v1/members/{basket.member.member_id}", server.port, till.token))
                    m = _decode(found)
                    basket.member.points, basket.member.balance = int(m["points"]), int(m["balance"])
    finally:
        conn.close()


async def _checkout_http(server: Server, tills: list[Till], warmup: float, seconds: float) -> tuple[Tally, Window]:
    start = time.perf_counter()
    window = Window(start + warmup, start + warmup + seconds)
    tally = Tally()
    await asyncio.gather(_sample_cpu(server.pid, window), *(_till_loop(server, t, window, tally) for t in tills))
    return tally, window


@dataclass
class FloorResult:
    threads: int
    seconds: float
    latencies: list[float]
    quote_s: float
    errors: Counter[str]

    @property
    def sales(self) -> int:
        return len(self.latencies)


def _checkout_floor(data_dir: Path, tills: list[Till], threads: int, seconds: float) -> FloorResult:
    """What POST /api/v1/sales does, without HTTP: decode, the retry check, the route's own quote on
    this thread's reader, then `commit_sale` through the hub's single writer (`write_sync`)."""
    from edge.api.routes import _quote
    from edge.config import HubConfig
    from edge.errors import ApiError
    from edge.hub import Hub
    from edge.sales.checkout import commit_sale, request_hash
    from edge.sales.models import SaleRequest
    from edge.stock.ledger import Actor

    decoder = msgspec.json.Decoder(SaleRequest)
    hub = Hub(HubConfig(data_dir=data_dir))
    reader = hub.db.reader()
    for till in tills:  # start from what the copied database says the members hold
        for basket in till.baskets:
            if basket.member is not None:
                pts, bal = reader.execute("SELECT points, balance FROM member_balance WHERE member_id = ?",
                                          (basket.member.member_id,)).fetchone()
                basket.member.points, basket.member.balance = int(pts), int(bal)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    quote_s = [0.0] * threads
    errors: Counter[str] = Counter()
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]

    def run(n: int) -> None:
        mine = tills[n::threads]
        rd = hub.db.reader()
        barrier.wait()
        i = 0
        while time.perf_counter() < deadline[0]:
            till = mine[i % len(mine)]
            i += 1
            basket = till.baskets[till.next_basket % len(till.baskets)]
            body = till.sale_body()
            t0 = time.perf_counter()
            try:
                req = decoder.decode(body)
                digest = request_hash(req)
                if rd.execute("SELECT request_hash FROM sales WHERE sale_id = ?", (str(req.sale_id),)).fetchone():
                    raise ApiError(409, "id_conflict", "the bench reused a sale_id")
                q = _quote(hub, rd, req.lines, req.member_id, req.coupon_codes)
                t1 = time.perf_counter()
                result = hub.db.write_sync(partial(
                    commit_sale, req=req, digest=digest, quote=q, actor=Actor(till.user_id, req.till_id),
                    at=hub.clock.stamp(), today=hub.clock.today(), store_code=hub.store_code))
            except ApiError as exc:
                errors[f"{exc.status} {exc.code}"] += 1
                continue
            t2 = time.perf_counter()
            latencies[n].append(t2 - t0)
            quote_s[n] += t1 - t0
            _update_member(basket.member, result if isinstance(result, bytes) else result.body)

    workers = [threading.Thread(target=run, args=(n,), name=f"floor-{n}") for n in range(threads)]
    for w in workers:
        w.start()
    t_start = time.perf_counter()
    deadline[0] = t_start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t_start
    hub.close()
    return FloorResult(threads, elapsed, sorted(x for lat in latencies for x in lat), sum(quote_s), errors)


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL database (the online backup API)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(str(dst))
    with target:
        source.backup(target)
    source.close()
    target.close()
    key = pii.key_path(src)  # the copy's members are sealed with the source's keys (docs/privacy.md)
    if key.exists():
        shutil.copy2(key, pii.key_path(dst))


def bench_checkout(args: argparse.Namespace) -> dict[str, Any]:
    n_tills, seconds = int(args.tills), float(args.seconds)
    warmup = min(1.0, max(0.2, seconds / 10))
    floor_seconds = max(1.0, seconds / 2)
    with _store(args) as (data, work):
        with Server(data, work / "hub.log") as server:
            with httpx.Client(base_url=server.base, timeout=30) as client:
                tills = _prepare_tills(client, n_tills)
                _start_sale_writer(client, server.pid, tills[0].till_id)
            floor_data = work / "floor"
            _copy_db(data / "hub.sqlite3", floor_data / "hub.sqlite3")
            tally, window = _run_async(_checkout_http(server, tills, warmup, seconds))
        floor_n = _checkout_floor(floor_data, tills, n_tills, floor_seconds)
        floor_1 = _checkout_floor(floor_data, tills, 1, floor_seconds)
        machine = _machine(data)
    lat = sorted(tally.latencies)
    committed = tally.committed
    return {
        "bench": "checkout",
        "tills": n_tills,
        "seconds": round(seconds, 3),
        "sales": committed,
        "sales_per_s": round(committed / seconds, 1),
        "p50_ms": round(_pct(lat, 0.50) * 1000, 2),
        "p99_ms": round(_pct(lat, 0.99) * 1000, 2),
        "max_ms": round((lat[-1] if lat else 0.0) * 1000, 2),
        "per_second": tally.per_second(window),
        "errors": sum(tally.errors.values()),
        "error_codes": dict(tally.errors),
        "hub_cpu_ms_per_sale": round(window.hub_cpu_s * 1000 / committed, 3) if committed else None,
        "hub_loop_cpu_ms_per_sale": round(window.hub_main_cpu_s * 1000 / committed, 3) if committed else None,
        "hub_busiest_cpu_ms_per_sale": (round(max(window.processes.values()) * 1000 / committed, 3)
                                        if committed and window.processes else None),
        "hub_processes": {name: round(cpu * 1000 / committed, 3) if committed else None
                          for name, cpu in window.processes.items()},
        "hub_cpu_pct": window.pct(window.hub_cpu_s),
        "client_cpu_pct": window.pct(window.client_cpu_s),
        "others_cpu_pct": window.pct(window.others_cpu_s),
        "floor_threads": floor_n.threads,
        "floor_sales_per_s": round(floor_n.sales / floor_n.seconds, 1),
        "floor_p50_ms": round(_pct(floor_n.latencies, 0.50) * 1000, 2),
        "floor_p99_ms": round(_pct(floor_n.latencies, 0.99) * 1000, 2),
        "floor_seq_sales_per_s": round(floor_1.sales / floor_1.seconds, 1),
        "floor_seq_p50_ms": round(_pct(floor_1.latencies, 0.50) * 1000, 2),
        "floor_seq_p99_ms": round(_pct(floor_1.latencies, 0.99) * 1000, 2),
        "floor_seq_quote_ms": round(floor_1.quote_s * 1000 / floor_1.sales, 3) if floor_1.sales else None,
        "floor_errors": sum(floor_n.errors.values()) + sum(floor_1.errors.values()),
        "machine": machine,
    }


def _checkout_summary(f: dict[str, Any]) -> list[str]:
    met_rate = f["sales_per_s"] >= 500
    met_p99 = 0 < f["p99_ms"] < 25
    return [
        f"backroom bench checkout: {f['tills']} tills, closed loop of committed sales over HTTP, {f['seconds']} s",
        f"  machine    {f['machine']}",
        f"  HTTP API   {f['sales']} sales, {f['sales_per_s']} sales/s, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms,"
        f" max {f['max_ms']} ms, errors {f['errors']} {f['error_codes'] or ''}".rstrip(),
        f"             committed in each second: {' '.join(str(n) for n in f['per_second'])}",
        f"  CPU        hub {f['hub_cpu_ms_per_sale']} ms per sale ({f['hub_cpu_pct']}% of one core; event loop"
        f" {f['hub_loop_cpu_ms_per_sale']} ms, writer and other threads the rest),"
        f" busiest process {f['hub_busiest_cpu_ms_per_sale']} ms"
        f" ({', '.join(f'{k} {v} ms' for k, v in f['hub_processes'].items())}),"
        f" bench client {f['client_cpu_pct']}%, other processes {f['others_cpu_pct']}%",
        f"  raw floor  {f['floor_threads']} threads: {f['floor_sales_per_s']} sales/s, p50 {f['floor_p50_ms']} ms,"
        f" p99 {f['floor_p99_ms']} ms",
        f"             1 thread: {f['floor_seq_sales_per_s']} sales/s, p50 {f['floor_seq_p50_ms']} ms,"
        f" p99 {f['floor_seq_p99_ms']} ms (decode+quote {f['floor_seq_quote_ms']} ms of it);"
        f" errors {f['floor_errors']}",
        f"  targets    >= 500 sales/s: {'met' if met_rate else 'MISSED'}; p99 < 25 ms: {'met' if met_p99 else 'MISSED'}"
        + ("" if f["tills"] == 8 else " (targets are for 8 tills)"),
    ]


# -- lookup ----------------------------------------------------------------------------------------------

@dataclass
class LookupTally:
    latencies: list[float] = field(default_factory=list)  # from handing the request to a connection
    from_schedule: list[float] = field(default_factory=list)  # from the instant the schedule said
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0


async def _lookup_http(server: Server, requests: list[bytes], rate: float, conns: int, warmup: float,
                       seconds: float) -> tuple[LookupTally, Window]:
    queue: asyncio.Queue[tuple[float, float, bytes] | None] = asyncio.Queue()
    tally = LookupTally()
    start = time.perf_counter() + 0.05
    window = Window(start + warmup, start + warmup + seconds)
    total = int((warmup + seconds) * rate)

    async def connection() -> None:
        conn = await HttpConnection.open("127.0.0.1", server.port)
        try:
            while (job := await queue.get()) is not None:
                scheduled, handed, request = job
                try:
                    status, content = await conn.request(request)
                except ConnectionError as exc:
                    tally.errors[f"connection: {exc}"] += 1
                    conn.close()
                    conn = await HttpConnection.open("127.0.0.1", server.port)
                    continue
                done = time.perf_counter()
                if status != 200:
                    tally.errors[_error_key(status, content)] += 1
                elif window.t_start <= scheduled < window.t_end:
                    tally.latencies.append(done - handed)
                    tally.from_schedule.append(done - scheduled)
        finally:
            conn.close()

    async def dispatch() -> None:
        i = 0
        while i < total:
            now = time.perf_counter()
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
                now = time.perf_counter()
            while i < total and start + i / rate <= now:
                queue.put_nowait((start + i / rate, now, requests[i % len(requests)]))
                i += 1
        tally.sent = i
        for _ in range(conns):
            queue.put_nowait(None)

    await asyncio.gather(_sample_cpu(server.pid, window), dispatch(), *(connection() for _ in range(conns)))
    return tally, window


def _lookup_floor(db_path: Path, codes: list[str], seconds: float) -> list[float]:
    from edge.catalog.repository import lookup_barcode
    from edge.config import HubConfig
    from edge.storage.db import connect

    layout = HubConfig().barcode_layout
    conn = connect(db_path)
    conn.execute("PRAGMA query_only = ON")
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    clock = time.perf_counter_ns
    while time.perf_counter() < deadline:
        for code in codes[i % len(codes): i % len(codes) + 500]:
            t0 = clock()
            lookup_barcode(conn, code, layout)
            times.append((clock() - t0) / 1000)
        i += 500
    conn.close()
    times.sort()
    return times


def bench_lookup(args: argparse.Namespace) -> dict[str, Any]:
    conns, seconds, rate = int(args.tills), float(args.seconds), float(args.rate)
    warmup = min(1.0, max(0.2, seconds / 10))
    floor_seconds = max(1.0, seconds / 2)
    rng = random.Random(SEED)
    with _store(args) as (data, work):
        with Server(data, work / "hub.log") as server:
            with httpx.Client(base_url=server.base, timeout=30) as client:
                token = _login(client, "BENCH-01")["token"]
                client.headers["authorization"] = f"Bearer {token}"
                scanner = Scanner(_catalog(client))
            codes = [scanner.lookup_code(rng) for _ in range(4096)]
            requests = [_http_request("GET", "/api/v1/items/lookup?barcode=" + c, server.port, token) for c in codes]
            tally, window = _run_async(_lookup_http(server, requests, rate, conns, warmup, seconds))
        floor = _lookup_floor(data / "hub.sqlite3", codes, floor_seconds)
        machine = _machine(data)
    lat, sched = sorted(tally.latencies), sorted(tally.from_schedule)
    done = len(lat)
    return {
        "bench": "lookup",
        "rate": rate,
        "connections": conns,
        "seconds": round(seconds, 3),
        "lookups": done,
        "achieved_per_s": round(done / seconds, 1),
        "p50_ms": round(_pct(lat, 0.50) * 1000, 3),
        "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
        "max_ms": round((lat[-1] if lat else 0.0) * 1000, 3),
        "p99_ms_from_schedule": round(_pct(sched, 0.99) * 1000, 3),
        "errors": sum(tally.errors.values()),
        "error_codes": dict(tally.errors),
        "hub_cpu_ms_per_lookup": round(window.hub_cpu_s * 1000 / done, 4) if done else None,
        "hub_cpu_pct": window.pct(window.hub_cpu_s),
        "client_cpu_pct": window.pct(window.client_cpu_s),
        "others_cpu_pct": window.pct(window.others_cpu_s),
        "floor_lookups": len(floor),
        "floor_p50_us": round(_pct(floor, 0.50), 1),
        "floor_p99_us": round(_pct(floor, 0.99), 1),
        "machine": machine,
    }


def _lookup_summary(f: dict[str, Any]) -> list[str]:
    met = 0 < f["p99_ms"] < 3
    return [
        f"backroom bench lookup: open loop at {f['rate']:g}/s over {f['connections']} connections, {f['seconds']} s",
        f"  machine    {f['machine']}",
        f"  HTTP API   {f['lookups']} lookups, {f['achieved_per_s']}/s, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms,"
        f" max {f['max_ms']} ms (p99 from the schedule {f['p99_ms_from_schedule']} ms), errors {f['errors']}"
        f" {f['error_codes'] or ''}".rstrip(),
        f"  CPU        hub {f['hub_cpu_ms_per_lookup']} ms per lookup ({f['hub_cpu_pct']}% of one core),"
        f" bench client {f['client_cpu_pct']}%, other processes {f['others_cpu_pct']}%",
        f"  raw floor  lookup_barcode on a read connection: p50 {f['floor_p50_us']} us, p99 {f['floor_p99_us']} us"
        f" ({f['floor_lookups']} calls)",
        f"  target     p99 < 3 ms at 1000/s: {'met' if met else 'MISSED'}"
        + ("" if f["rate"] == 1000 else " (the target is for 1000/s)"),
    ]


# -- entry point -----------------------------------------------------------------------------------------

def run_bench(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if args.tills < 1 or args.seconds <= 0 or args.rate <= 0:
        print("--tills, --seconds and --rate must be positive", file=sys.stderr)
        return 2
    if args.kind == "checkout":
        figures, summary = bench_checkout(args), _checkout_summary
    else:
        figures, summary = bench_lookup(args), _lookup_summary
    if not args.json:
        print("\n".join(summary(figures)))
    print(_encode(figures).decode(), flush=True)
    return 0

