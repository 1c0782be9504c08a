"""`backroom bench chain`: HQ under a chain's busy hour (docs/hq-serving.md).

A private PostgreSQL cluster (unless `--db`), a real `backroom hq serve --workers N` against it, and N
simulated stores (default 1,000) in this one process and one event loop, speaking the real protocol:

- setup (not measured): each store is paired with its own Ed25519 key (a pairing code, then the
  signed pairing), drains its opening feed, and gets its busy hour pre-built: signed-at-send,
  zstd-compressed msgpack batches of sales;
- the busy hour (measured): every store holds a feed long-poll the whole time; every store uploads its
  batches, one after another (as the agent does); when a quarter of the batches are in, HQ changes one
  price for every store; stored-value authorisations of the demo chain's members from random stores
  arrive at a fixed rate throughout (open loop, so a slow HQ cannot slow the arrivals down).

Figures (the last line is JSON): `ingest_sales_per_s` (sales over the wall time until every batch was
acknowledged), `fanout_s` (from the price change's request until every store's long-poll delivered the
signed, verified entry), `authorize_p50_ms` / `authorize_p99_ms`, HQ's CPU (all its processes) and peak
resident memory, PostgreSQL's CPU (the postmaster and its backends; not known with `--db`), and the
simulator's own CPU. CPU percentages are of one core over the measured window; shares are of the
machine. The escrow policy's proactive grants are off (shares 0), so an authorisation is a grant from
the member's unallocated balance. The members (2 per store, at least 100) are signed up by their home
stores in setup and credited at HQ; the authorising store is never the member's home. Sales carry no
member.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hq_sync.bench_client import Conn, HttpError

if TYPE_CHECKING:  # imported when the bench runs (edge/cli.py builds its parser with this module)
    import httpx

    from hq_sync.bench import _Pg

TARGETS = {"ingest_sales_per_s": 10000.0, "fanout_s": 5.0, "authorize_p99_ms": 50.0}
LONG_POLL_S = 25
PRICE_SKU = "SKU00027"  # a demo catalog item
MAX_BATCH_SALES = 4000  # a hub's largest batch (hub_state.next_batch: max_rows)
# The private cluster's WAL, as on a production HQ's server (docs/hq-scale.md "PostgreSQL settings"): segments
# ready for reuse for about this much WAL a sale (a 5-line sale writes about 3.5 KB; the run reports what it wrote).
WAL_KB_PER_SALE = 5
MIN_RECYCLED_MB, MAX_RECYCLED_MB = 256, 4096
# By default every store begins uploading at once, the harder case (a thousand stores catching up after HQ came
# back). --start-spread S begins each store's first upload at random within S seconds, as stores on their own
# clocks do in a quiet start; the ingest rate then counts the spread's partly idle seconds.
DEFAULT_START_SPREAD_S, MAX_START_SPREAD_S = 0.0, 60.0


def steady_rate(acked_at: list[float], sales: int) -> float | None:
    """Sales a second between the acknowledgements of the first and the last tenth of the batches (all of a
    run's batches hold the same number of sales): the rate once every store is uploading, without the opening
    (a thousand connections and first requests at once) and the last stragglers. Pure."""
    times = sorted(acked_at)
    if len(times) < 10:
        return None
    lo, hi = len(times) // 10, len(times) - 1 - len(times) // 10
    span = times[hi] - times[lo]
    return (hi - lo) * (sales / len(times)) / span if span > 0 else None


def pg_settings(sales: int) -> tuple[dict[str, str], int]:
    """The private cluster's WAL settings for a run of `sales`, and the MB of WAL segments to make ready."""
    ready = min(MAX_RECYCLED_MB, max(MIN_RECYCLED_MB, sales * WAL_KB_PER_SALE // 1024))
    return {"min_wal_size": f"{ready}MB", "max_wal_size": f"{max(4096, 2 * ready)}MB"}, ready


@dataclass
class Store:
    store_id: str
    key: bytes
    cursor: int = 0
    seq: int = 0  # the store's outbox sequence: rows sent so far
    members: list[str] = field(default_factory=list)  # members signed up here (their home store)
    start_s: float = 0.0  # its first upload, after the busy hour's start (--start-spread)
    batches: list[tuple[bytes, str]] = field(default_factory=list)  # (compressed body, Content-Encoding)
    sales: int = 0
    broadcast: dict[int, float] = field(default_factory=dict)  # seq of a '*' entry -> when it arrived


# -- processes and their CPU ------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on (field 3)


def _tree(root: int) -> list[int]:
    """`root` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_s(root: int) -> float:
    """CPU seconds (user + system) of a process tree, with its reaped children's."""
    total = 0
    for pid in _tree(root):
        fields = _stat(pid)
        if fields is not None:  # utime stime cutime cstime are fields 14-17
            total += sum(int(x) for x in fields[11:15])
    return total / _TICK


def _peak_rss_mb(root: int) -> float:
    """The sum of the peak resident sizes (VmHWM) of a process tree's processes."""
    kb = 0
    for pid in _tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    return round(kb / 1024, 1)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# HQ's scheduling knobs pass from the bench's environment to its HQ (for A/B runs: BACKROOM_HQ_BATCH_NICE=0 ...)
TUNING_ENV = ("BACKROOM_HQ_BATCH_", "BACKROOM_HQ_LANE_", "BACKROOM_HQ_AUTHORIZE_", "BACKROOM_HQ_SWITCH_INTERVAL_S",
              "BACKROOM_HQ_PG_POOL")


def _start_hq(db_url: str, root: Path, workers: int, timing: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    from hq_sync.bench import _env, _free_port
    port = _free_port()
    args = [sys.executable, "-m", "edge.cli", "hq", "serve", "--db", db_url, "--port", str(port), "--host",
            "127.0.0.1", "--log-level", "warning", "--demo", "--workers", str(workers)]
    env = {**_env(), "BACKROOM_HQ_KEY_FILE": str(root / "hq.pii.key"),
           "BACKROOM_HQ_ESCROW_HOME_SHARE_PCT": "0", "BACKROOM_HQ_ESCROW_SHOP_SHARE_PCT": "0",
           **{k: v for k, v in os.environ.items() if k.startswith(TUNING_ENV)}}
    if timing is not None:  # each worker's phases of every authorisation and its loop's lateness (scheduling.py)
        env["BACKROOM_HQ_TIMING_DIR"] = str(timing)
    log = (root / f"hq-{port}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=1) as probe:  # one client: each new one loads the CA file (a third of a second)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"hq serve exited {proc.returncode}: {(root / log.name).read_text()[-2000:]}")
            try:
                if probe.get(url + "/healthz").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("hq serve did not start")


# -- the simulated chain ---------------------------------------------------------------------------------------

class Chain:
    def __init__(self, url: str, stores: int, per_store: int, batch: int, auth_rate: float,
                 start_spread_s: float = 0.0) -> None:
        self.url = url
        self.n = stores
        self.per_store = per_store
        self.batch = batch
        self.auth_rate = auth_rate
        self.start_spread_s = start_spread_s
        self.acked_at: list[float] = []  # when each batch was acknowledged (time.perf_counter())
        self.stores: list[Store] = []
        self.hq_key = b""
        self.admin: dict[str, str] = {}
        self.members: list[str] = []
        self.errors: dict[str, int] = {}
        self.auth_ms: list[float] = []
        self.refused: dict[str, int] = {}
        self.auth_sent = 0
        self.bad_entries = 0
        self.stopping = False  # the busy hour is over: the long-polls end

    def _err(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def _signed(self, store: Store, method: str, target: str, body: bytes) -> dict[str, str]:
        from hq_sync.wire import sign_request

        return sign_request(store.key, store.store_id, method, target, int(time.time()), body)

    # -- setup ---------------------------------------------------------------------------------------------

    async def setup(self, client: httpx.AsyncClient) -> None:
        import msgspec

        from hq_sync.wire import PairRequest, b64, new_key, unb64

        r = await client.post(self.url + "/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"})
        self.admin = {"Authorization": f"Bearer {r.json()['token']}"}
        gate = asyncio.Semaphore(8)

        async def pair(n: int) -> Store:
            store_id = f"chain-{n:04d}"
            private, public = new_key()
            async with gate:
                code = (await client.post(f"{self.url}/hq/v1/stores/{store_id}/pair-code", headers=self.admin)).json()
                r = await client.post(self.url + "/hq/v1/sync/pair", json=msgspec.to_builtins(
                    PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, code=code["code"])))
                if r.status_code != 200:
                    raise RuntimeError(f"pairing {store_id}: {r.status_code} {r.text[:300]}")
                self.hq_key = unb64(r.json()["hq_public_key"])
                store = Store(store_id, private)
                await self._drain(client, store)
            return store

        self.stores = list(await asyncio.gather(*(pair(n) for n in range(self.n))))
        # Members: signed up at their home stores (a signed batch each), then credited at HQ (a manual
        # adjustment: a top-up at a store would sit in that store's escrow), so a spend anywhere else
        # is a cross-store authorisation from the member's unallocated balance.
        count = max(2 * self.n, 100)
        for m in range(count):
            self.stores[m % self.n].members.append(f"CM-{m:06d}")
        await asyncio.gather(*(self._sign_up(client, store, gate) for store in self.stores))
        self.members = [m for store in self.stores for m in store.members]
        await asyncio.gather(*(self._drain(client, store, gate) for store in self.stores))

    async def _sign_up(self, client: httpx.AsyncClient, store: Store, gate: asyncio.Semaphore) -> None:
        import msgspec

        from hq_sync.protocol import MemberDelta, delta_encoder
        from hq_sync.wire import Batch, OutRow, batch_encoder, compress

        at = "2026-05-01T07:30:00.000+08:00"
        rows = [OutRow(store.seq + k + 1, "member", member_id, at, msgspec.Raw(delta_encoder.encode(
            MemberDelta(member_id=member_id, tier="regular", at=at, home_store=store.store_id))))
            for k, member_id in enumerate(store.members)]
        store.seq += len(rows)
        body, encoding = compress(batch_encoder.encode(Batch(store.store_id, store.seq, rows)))
        target = "/hq/v1/sync/batches"
        async with gate:
            r = await client.post(self.url + target, content=body, headers={
                **self._signed(store, "POST", target, body), "Content-Encoding": encoding})
            if r.status_code != 200 or r.json()["applied"] != len(rows):
                raise RuntimeError(f"sign-ups at {store.store_id}: {r.status_code} {r.text[:300]}")
            for member_id in store.members:
                r = await client.post(f"{self.url}/hq/v1/members/{member_id}/adjustments", headers=self.admin,
                                      json={"adjustment_id": f"bench-{member_id}", "ledger": "value",
                                            "delta": 100_000, "reason": "bench chain: opening balance"})
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"crediting {member_id}: {r.status_code} {r.text[:300]}")

    async def _drain(self, client: httpx.AsyncClient, store: Store, gate: asyncio.Semaphore | None = None) -> None:
        """The feed up to its head (not verified: setup)."""
        from hq_sync.wire import feed_page_decoder

        if gate is not None:
            async with gate:
                await self._drain(client, store)
            return
        while True:
            target = f"/hq/v1/sync/feed?after={store.cursor}&limit=1000"
            r = await client.get(self.url + target, headers=self._signed(store, "GET", target, b""))
            page = feed_page_decoder.decode(r.content)
            if not page.entries:
                return
            store.cursor = page.entries[-1].seq

    def build_batches(self) -> None:
        import msgspec

        from hq_sync.bench import SEED, _day_of_sales
        from hq_sync.protocol import delta_encoder
        from hq_sync.wire import Batch, OutRow, batch_encoder, compress

        rng = random.Random(SEED)
        skus = [(f"SKU{n:05d}", rng.randrange(100, 5000)) for n in range(1, 201)]
        for store in self.stores:
            sales = _day_of_sales(self.per_store, 5, skus, [], rng)
            base, head = store.seq, store.seq + self.per_store
            for i in range(0, self.per_store, self.batch):
                rows = [OutRow(base + i + k + 1, "sale", d.sale_id, d.at, msgspec.Raw(delta_encoder.encode(d)))
                        for k, d in enumerate(sales[i:i + self.batch])]
                store.batches.append(compress(batch_encoder.encode(Batch(store.store_id, head, rows))))
            store.seq = head
            store.sales = len(sales)

    # -- the busy hour -------------------------------------------------------------------------------------
    #
    # Each store speaks over its own two keep-alive connections (bench_client.Conn: its long-poll, its
    # uploads), not through httpx, whose per-request cost made the simulator's event loop the late party in
    # the figures. The authorisations come from a process of their own (`_auth_process`), so their latencies
    # are HQ's, not this busy loop's.

    async def poll(self, conn: Conn, store: Store) -> None:
        from hq_sync.wire import entry_problem, feed_page_decoder

        # Not only cancelled at the end: Python 3.11's wait_for (bench_client.Conn) may swallow a cancellation
        # that meets an answer, and the poll goes on. A 1,000-store run hung once after its busy hour with
        # long-polls still going; this is the likely cause
        while not self.stopping:
            target = f"/hq/v1/sync/feed?after={store.cursor}&wait={LONG_POLL_S}&limit=1000"
            try:
                r = await conn.request("GET", target, self._signed(store, "GET", target, b""))
            except HttpError:
                if self.stopping:  # its connection closed at the end
                    return
                self._err("feed_transport")
                await asyncio.sleep(0.5)
                continue
            now = time.perf_counter()
            if r.status != 200:
                self._err(f"feed_{r.status}")
                await asyncio.sleep(0.5)
                continue
            page = feed_page_decoder.decode(r.content)
            for entry in page.entries:
                if entry_problem(entry, self.hq_key, store.store_id, store.cursor) is not None:
                    self.bad_entries += 1
                    continue
                if entry.store == "*":
                    store.broadcast.setdefault(entry.seq, now)
                store.cursor = entry.seq

    async def upload(self, conn: Conn, store: Store, acked: list[int], quarter: asyncio.Event,
                     quarter_at: int) -> None:
        target = "/hq/v1/sync/batches"
        await asyncio.sleep(store.start_s)
        for body, encoding in store.batches:
            for _ in range(5):
                try:
                    r = await conn.request("POST", target, {
                        **self._signed(store, "POST", target, body), "Content-Encoding": encoding}, body)
                except HttpError:
                    self._err("batch_transport")
                    continue
                if r.status == 200:
                    break
                self._err(f"batch_{r.status}")
            acked[0] += 1
            self.acked_at.append(time.perf_counter())
            if acked[0] >= quarter_at:
                quarter.set()

    async def busy_hour(self, client: httpx.AsyncClient) -> dict[str, Any]:
        import multiprocessing
        from urllib.parse import urlsplit

        from hq_sync.bench import SEED, _percentiles

        rng = random.Random(SEED + 1)
        where = urlsplit(self.url)
        host, port = where.hostname or "127.0.0.1", where.port or 80
        # The authorisations' process: started now (it imports what it needs), sending once told to.
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        homes = {m: n for n, store in enumerate(self.stores) for m in store.members}
        sender = spawn.Process(target=_auth_process, name="bench-chain-authorize", daemon=True, args=(
            theirs, host, port, [(s.store_id, s.key) for s in self.stores],
            [(m, homes[m]) for m in self.members], self.auth_rate, SEED + 2))
        sender.start()
        await asyncio.to_thread(ours.recv)  # "ready"
        polls = {s.store_id: Conn(host, port) for s in self.stores}
        # A batch may wait at HQ for minutes behind a thousand others (HQ's admission limit): a store that
        # gave up and sent it again would only add a duplicate to the queue.
        uploads = {s.store_id: Conn(host, port, timeout_s=900) for s in self.stores}
        pollers = [asyncio.create_task(self.poll(polls[s.store_id], s)) for s in self.stores]
        await asyncio.sleep(0.5)  # every long-poll is parked at HQ
        for store in self.stores:  # each store's first upload, at random within the spread
            store.start_s = rng.uniform(0, self.start_spread_s)
        total_batches = sum(len(s.batches) for s in self.stores)
        acked = [0]
        quarter = asyncio.Event()

        async def price_change() -> tuple[float, list[int]]:
            await quarter.wait()
            start = time.perf_counter()
            r = await client.post(self.url + "/hq/v1/prices", headers=self.admin,
                                  json={"prices": [[PRICE_SKU, 1000 + rng.randrange(1000)]]})
            if r.status_code != 200:
                raise RuntimeError(f"price change: {r.status_code} {r.text[:300]}")
            return start, [int(s) for s in r.json()["feed_seqs"]]

        cpu0 = _self_cpu_s()
        start = time.perf_counter()
        wall0 = time.time()
        ours.send("go")
        pricing = asyncio.create_task(price_change())
        await asyncio.gather(*(self.upload(uploads[s.store_id], s, acked, quarter, max(1, total_batches // 4))
                               for s in self.stores))
        ingest_s = time.perf_counter() - start
        steady = steady_rate(self.acked_at, sum(s.sales for s in self.stores))
        price_start, seqs = await pricing
        want = max(seqs)
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline and not all(want in s.broadcast for s in self.stores):
            await asyncio.sleep(0.02)
        got = [s.broadcast[want] for s in self.stores if want in s.broadcast]
        fanout_s = (max(got) - price_start) if len(got) == len(self.stores) else None
        ours.send("stop")
        told: dict[str, Any] = await asyncio.to_thread(ours.recv)  # after its last answer (at most 30 s)
        await asyncio.to_thread(sender.join, 10)
        window_s = time.perf_counter() - start
        sim_cpu = _self_cpu_s() - cpu0 + float(told["cpu_s"])
        self.stopping = True
        for task in pollers:
            task.cancel()
        for conn in (*polls.values(), *uploads.values()):
            conn.close()
        await asyncio.wait(pollers, timeout=30)
        self.auth_ms, self.refused, self.auth_sent = list(told["ms"]), dict(told["refused"]), int(told["sent"])
        for what, n in dict(told["errors"]).items():
            self.errors[what] = self.errors.get(what, 0) + n
        late = _percentiles(list(told["late_ms"])) if told["late_ms"] else {}
        return {"ingest_s": ingest_s, "steady": steady, "fanout_s": fanout_s, "fanout_stores": len(got),
                "window_s": window_s,
                "sim_cpu_s": sim_cpu, "batches": total_batches, "wall": (wall0, wall0 + window_s),
                "sender_late": {k: late.get(k) for k in ("p50_ms", "p99_ms", "max_ms")}}


# -- the authorisations' process --------------------------------------------------------------------------------

def _auth_process(pipe: Any, host: str, port: int, stores: list[tuple[str, bytes]], members: list[tuple[str, int]],
                  rate: float, seed: int) -> None:
    """Stored-value authorisations of 100 fen at `rate` per second, open loop, from a random store that is not
    the member's home, between the parent's "go" and "stop"; then the latencies back through `pipe`."""
    asyncio.run(_authorize_loop(pipe, host, port, stores, members, rate, seed))


async def _authorize_loop(pipe: Any, host: str, port: int, stores: list[tuple[str, bytes]],
                          members: list[tuple[str, int]], rate: float, seed: int) -> None:
    import msgspec

    from hq_sync.wire import AuthorizeRequest, sign_request

    rng = random.Random(seed)
    idle: list[Conn] = []
    told: dict[str, Any] = {"ms": [], "refused": {}, "errors": {}, "sent": 0, "late_ms": []}

    async def one(due: float) -> None:
        member_id, home = members[rng.randrange(len(members))]
        n = rng.randrange(len(stores))
        while n == home and len(stores) > 1:  # a spend away from the member's home store
            n = rng.randrange(len(stores))
        store_id, key = stores[n]
        body = msgspec.json.encode(AuthorizeRequest(request_id=f"chain-{uuid.uuid4()}", member_id=member_id,
                                                    ledger="value", amount=100, wait_ms=0))
        target = "/hq/v1/sync/authorize"
        conn = idle.pop() if idle else Conn(host, port)
        told["sent"] += 1
        start = time.perf_counter()
        told["late_ms"].append((start - due) * 1000)  # this loop's own lateness: not HQ's
        try:
            r = await conn.request("POST", target, {**sign_request(key, store_id, "POST", target, int(time.time()),
                                                                   body), "Content-Type": "application/json"}, body)
        except HttpError:
            told["errors"]["authorize_transport"] = told["errors"].get("authorize_transport", 0) + 1
            return
        elapsed = (time.perf_counter() - start) * 1000
        idle.append(conn)
        if r.status == 200:
            told["ms"].append(elapsed)
        else:
            code = (str(json.loads(r.content).get("code", r.status))
                    if r.headers.get("content-type", "").startswith("application/json") else str(r.status))
            told["refused"][code] = told["refused"].get(code, 0) + 1

    loop = asyncio.get_running_loop()
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)  # "go"
    stop = loop.run_in_executor(None, pipe.recv)  # "stop"
    cpu0 = _self_cpu_s()
    tasks: set[asyncio.Task[None]] = set()
    period = 1.0 / rate if rate > 0 else 0.0
    next_at = time.perf_counter()
    if rate <= 0:  # --auth-rate 0: the busy hour without authorisations (what they cost, by difference)
        await stop
    while not stop.done():
        task = asyncio.create_task(one(next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += period
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks, timeout=30)
        late = list(tasks)  # still unanswered after 30 s: sent, not answered
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    for conn in idle:
        conn.close()
    told["cpu_s"] = _self_cpu_s() - cpu0
    pipe.send(told)


# -- --phases: where an authorisation's time goes, timed inside HQ and sampled in PostgreSQL ------------------

PHASES = ("queue", "connection", "read", "commit", "back", "handler")  # scheduling.Timing's order
PG_SAMPLE_S = 0.025


class PgWaits:
    """Samples pg_stat_activity every PG_SAMPLE_S on a thread of its own: what each pool's active backends
    wait on (`CPU` when not waiting), by application_name (HQ's pools name their connections)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.samples = 0
        self.counts: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pg-waits", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(PG_SAMPLE_S):
                rows = conn.execute(
                    """SELECT application_name, coalesce(wait_event_type || ':' || wait_event, 'CPU')
                       FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()
                         AND backend_type = 'client backend'""").fetchall()
                self.samples += 1
                for app, event in rows:
                    by = self.counts.setdefault(str(app or "?"), {})
                    by[str(event)] = by.get(str(event), 0) + 1

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        top = {app: dict(sorted(events.items(), key=lambda kv: -kv[1])[:8]) for app, events in self.counts.items()}
        return {"samples": self.samples, "every_s": PG_SAMPLE_S, "active_backends": top}


def _phases(where: Path, wall: tuple[float, float]) -> dict[str, Any]:
    """The HQ workers' timing files (scheduling.Timing), the busy hour's part: p50/p90/p99/max of each phase."""
    from hq_sync.bench import _percentiles

    auth: list[list[float]] = []
    lag: list[float] = []
    collections: dict[int, list[float]] = {}
    stalls: dict[str, int] = {}
    for path in sorted(where.glob("timing-*.json")):
        data = json.loads(path.read_text())
        auth += [row for row in data["auth"] if wall[0] <= row[0] <= wall[1]]
        lag += [ms for at, ms in data["lag"] if wall[0] <= at <= wall[1]]
        for where_, n in data.get("stalls", {}).items():
            stalls[where_] = stalls.get(where_, 0) + int(n)
        for at, generation, ms in data.get("gc", []):
            if wall[0] <= at <= wall[1]:
                collections.setdefault(int(generation), []).append(ms)

    def summary(samples: list[float]) -> dict[str, float]:
        if not samples:
            return {}
        ordered = sorted(samples)
        return {**_percentiles(ordered), "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1)}

    by_phase = {name: summary([row[i + 1] for row in auth]) for i, name in enumerate(PHASES)}
    gcs = {f"gen{g}": {"n": len(ms), "total_ms": round(sum(ms), 1), "max_ms": round(max(ms), 1)}
           for g, ms in sorted(collections.items())}
    top = dict(sorted(stalls.items(), key=lambda kv: -kv[1])[:8])  # the whole run's, setup included
    return {"authorizations": len(auth), **by_phase, "loop_late": summary(lag), "gc": gcs, "loop_stalled_in": top}


def _wal_position(url: str) -> tuple[int, int]:
    """The cluster's WAL position in bytes and its checkpoints so far (the busy hour's are the differences)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, checkpoints_timed + checkpoints_req "
                           "FROM pg_stat_bgwriter").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _pg_pid(pg: _Pg | None) -> int | None:
    if pg is None:
        return None
    try:
        return int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def bench_chain(root: Path, stores: int, per_store: int, batch: int, workers: int, auth_rate: float,
                db_url: str | None, say: Any, phases: bool = False, cold_wal: bool = False,
                start_spread_s: float = DEFAULT_START_SPREAD_S) -> dict[str, Any]:
    import logging

    import httpx

    from hq_sync.bench import _percentiles, _Pg, _stop

    logging.getLogger("httpx").setLevel(logging.WARNING)
    setup_start = time.perf_counter()
    settings, ready_mb = pg_settings(stores * per_store)
    pg = None if db_url else _Pg(root, settings)
    hq = None
    try:
        url_db = db_url or (pg.url if pg else "")
        # A run on a fresh cluster's WAL (--cold-wal) measures its first segments' creation, not HQ: they are
        # zero-filled under the WAL write lock, and every commit waits (docs/hq-serving.md "A fresh cluster's WAL").
        recycled = pg.recycle_wal(ready_mb) if pg is not None and not cold_wal else None
        say(f"PostgreSQL ready, {recycled or 0} MB of WAL segments ready ({time.perf_counter() - setup_start:.1f} s)")
        timing = root / "timing" if phases else None
        hq, url = _start_hq(url_db, root, workers, timing)
        say(f"HQ ready, {workers} workers ({time.perf_counter() - setup_start:.1f} s)")
        chain = Chain(url, stores, per_store, batch, auth_rate, start_spread_s)
        limits = httpx.Limits(max_connections=2 * stores + 100, max_keepalive_connections=2 * stores + 100)

        async def run() -> dict[str, Any]:
            tls = ssl.create_default_context()  # one for every client (each would load the CA file again)
            async with contextlib.AsyncExitStack() as clients:
                client = await clients.enter_async_context(httpx.AsyncClient(timeout=120, limits=limits, verify=tls))
                await chain.setup(client)
                say(f"paired {stores} stores, their opening feeds drained ({time.perf_counter() - setup_start:.1f} s)")
                await asyncio.to_thread(chain.build_batches)
                say(f"built {sum(len(s.batches) for s in chain.stores)} batches "
                    f"({sum(s.sales for s in chain.stores)} sales)")
                pg_pid = _pg_pid(pg)
                load_before = os.getloadavg()[0]
                hq_cpu0 = _cpu_s(hq.pid)
                pg_cpu0 = _cpu_s(pg_pid) if pg_pid else 0.0
                waits = PgWaits(url_db) if phases else None
                if waits is not None:
                    waits.start()
                wal0 = await asyncio.to_thread(_wal_position, url_db)
                out = await chain.busy_hour(client)
                wal1 = await asyncio.to_thread(_wal_position, url_db)
                out["wal_mb"], out["checkpoints"] = (wal1[0] - wal0[0]) / (1024 * 1024), wal1[1] - wal0[1]
                out["pg_waits"] = waits.stop() if waits is not None else None
                out["hq_cpu_s"] = _cpu_s(hq.pid) - hq_cpu0
                out["pg_cpu_s"] = (_cpu_s(pg_pid) - pg_cpu0) if pg_pid else None
                out["load_before"] = load_before
                out["load_after"] = os.getloadavg()[0]
                r = await client.get(url + "/hq/v1/stores", headers=chain.admin)
                out["held"] = sum(int(s["sales"]) for s in r.json()["stores"] if s["store_id"].startswith("chain-"))
                out["setup_s"] = time.perf_counter() - setup_start - out["window_s"]
                return out

        out = asyncio.run(run())
        hq_rss_mb = _peak_rss_mb(hq.pid)
        inside = None
        if timing is not None:
            _stop(hq)  # the workers write their timing once more as they stop
            inside = {**_phases(timing, out["wall"]), "pg_waits": out["pg_waits"]}
        cpus = os.cpu_count() or 1
        window = out["window_s"]
        sales = sum(s.sales for s in chain.stores)
        auth = _percentiles(chain.auth_ms) if chain.auth_ms else {}

        def pct(cpu: float | None) -> float | None:
            return None if cpu is None else round(100 * cpu / window, 1)

        return {
            "bench": "chain", "stores": stores, "workers": workers, "sales": sales, "sales_held": out["held"],
            "batches": out["batches"], "batch_sales": batch, "start_spread_s": start_spread_s,
            "ingest_s": round(out["ingest_s"], 2),
            "ingest_sales_per_s": round(sales / out["ingest_s"]),
            "ingest_steady_sales_per_s": None if out["steady"] is None else round(out["steady"]),
            "fanout_s": None if out["fanout_s"] is None else round(out["fanout_s"], 3),
            "fanout_stores": out["fanout_stores"], "authorize_sent": chain.auth_sent,
            "authorizations": len(chain.auth_ms),
            "authorize_p50_ms": auth.get("p50_ms"), "authorize_p99_ms": auth.get("p99_ms"),
            "authorize_max_ms": auth.get("max_ms"), "authorize_refused": chain.refused,
            "window_s": round(window, 2), "hq_cpu_pct": pct(out["hq_cpu_s"]),
            "hq_rss_mb": hq_rss_mb, "pg_cpu_pct": pct(out["pg_cpu_s"]),
            "sim_cpu_pct": pct(out["sim_cpu_s"]),
            "hq_share": round(out["hq_cpu_s"] / (window * cpus), 3),
            "pg_share": None if out["pg_cpu_s"] is None else round(out["pg_cpu_s"] / (window * cpus), 3),
            "sim_share": round(out["sim_cpu_s"] / (window * cpus), 3),
            "bad_feed_entries": chain.bad_entries, "errors": chain.errors, "setup_s": round(out["setup_s"], 1),
            "pg_wal": {"recycled_mb": recycled, "written_mb": round(out["wal_mb"], 1),
                       "checkpoints": out["checkpoints"],
                       "bytes_per_sale": round(out["wal_mb"] * 1024 * 1024 / max(1, sales))},
            "machine": {"cpus": cpus, "load_1m_before": round(out["load_before"], 2),
                        "load_1m_after": round(out["load_after"], 2)},
            "authorize_sender_late": out["sender_late"],  # the authorisations' own process running late
            **({"phases": inside} if inside is not None else {}),
        }
    finally:
        if hq is not None:
            _stop(hq)
        if pg is not None:
            pg.stop()


def run_chain_bench(args: argparse.Namespace) -> int:
    stores = args.stores
    if stores < 1 or stores > 20000:
        print("--stores is 1..20000", file=sys.stderr)
        return 2
    if not 1 <= args.batch_sales <= MAX_BATCH_SALES:
        print(f"--batch-sales is 1..{MAX_BATCH_SALES}", file=sys.stderr)
        return 2
    if not 0 <= args.start_spread <= MAX_START_SPREAD_S:
        print(f"--start-spread is 0..{MAX_START_SPREAD_S:g} seconds", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="backroom-bench-chain-"))
    os.chmod(root, 0o755)

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    try:
        figures = bench_chain(root, stores, args.sales_per_store, args.batch_sales, args.workers, args.auth_rate,
                              args.db, say, phases=args.phases, cold_wal=args.cold_wal,
                              start_spread_s=args.start_spread)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["targets"] = TARGETS
    figures["meets"] = {
        "ingest_sales_per_s": figures["ingest_sales_per_s"] >= TARGETS["ingest_sales_per_s"],
        "fanout_s": figures["fanout_s"] is not None and figures["fanout_s"] <= TARGETS["fanout_s"],
        "authorize_p99_ms": (figures["authorize_p99_ms"] or 1e9) <= TARGETS["authorize_p99_ms"],
    }
    say(f"chain: {figures['stores']} stores, {figures['ingest_sales_per_s']} sales/s, fan-out {figures['fanout_s']} s, "
        f"authorize p99 {figures['authorize_p99_ms']} ms")
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def register_args(bench: argparse.ArgumentParser) -> None:
    """`bench chain`'s own options (edge/cli.py's bench parser)."""
    bench.add_argument("--workers", type=int, default=2, help="HQ worker processes (chain bench)")
    bench.add_argument("--sales-per-store", type=int, default=100, help="sales each store uploads (chain bench)")
    bench.add_argument("--batch-sales", type=int, default=50,
                       help="sales in each signed batch (chain bench; a hub catching up sends up to 4,000 a batch)")
    bench.add_argument("--auth-rate", type=float, default=50.0, help="authorisations per second (chain bench)")
    bench.add_argument("--start-spread", type=float, default=DEFAULT_START_SPREAD_S,
                       help="seconds over which the stores' first uploads begin, at random (chain bench; default 0: "
                            "all at once)")
    bench.add_argument("--cold-wal", action="store_true",
                       help="run on the fresh cluster's WAL, with no segments ready for reuse (chain bench)")
    bench.add_argument("--phases", action="store_true",
                       help="time each authorisation's phases inside HQ and sample PostgreSQL's waits (chain bench)")
