"""`backroom bench sync`: a busy day up to HQ, HQ's ingest under 100 stores, 100,000 prices down.

1. upload: a demo hub whose outbox holds a busy day (20,000 sales, 100,000 lines, a third with a
   member) pushes it to a real `backroom hq serve` (SQLite) through the agent's own push code
   (`SyncAgent._push_once`: batches, msgpack, zstd, Ed25519). Figures: seconds, bytes per line on the
   wire (request bodies), batches.
2. ingest: 100 stores, each paired with its own key, push pre-built signed batches at once over 100
   connections; sales/s over the wall time until every batch is acknowledged. Run against HQ on
   SQLite and on PostgreSQL (a private cluster started for the run; skipped where PostgreSQL is not
   installed).
3. prices: HQ publishes 100,000 price changes (`POST /hq/v1/prices`) to a hub carrying 100,000
   items; the agent long-polls, verifies and applies them. Figures: seconds from publish to the
   last price in the hub's catalog, and the apply alone.

`BACKROOM_BENCH_SCALE` (default 1) scales every count, for a quick run. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec

SEED = 20240611
TARGETS = {"upload_s": 20.0, "bytes_per_line": 60.0, "ingest_sales_per_s": 5000.0, "prices_s": 3.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
    env["BACKROOM_DEVICES"] = "0"  # sync benches need no broker
    return env


def _start_hq(db_url: str, root: Path, demo: bool,
              extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    args = [sys.executable, "-m", "edge.cli", "hq", "serve", "--db", db_url, "--port", str(port), "--host",
            "127.0.0.1", "--log-level", "warning"] + (["--demo"] if demo else [])
    log = (root / f"hq-{port}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**_env(), **(extra_env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hq serve exited {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("hq serve did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _seed_hub(data: Path, store: str = "demo-001") -> None:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--store", store, "--data", str(data)],
                          capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        raise RuntimeError(done.stderr)


def _day_of_sales(n_sales: int, lines: int, skus: list[tuple[str, int]], members: list[str],
                  rng: random.Random) -> list[Any]:
    from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta

    out = []
    base = "2026-05-01T"
    for i in range(n_sales):
        picked = [skus[rng.randrange(len(skus))] for _ in range(lines)]
        dl = []
        for n, (sku, price) in enumerate(picked, start=1):
            qty = rng.choice((1, 1, 1, 2, 3))
            gross = price * qty
            disc = gross // 20 if rng.random() < 0.2 else 0
            dl.append(DeltaLine(n, sku, qty, price, gross, disc, gross - disc, (gross - disc) * 9 // 109))
        total = sum(x.net for x in dl)
        member = members[rng.randrange(len(members))] if members and rng.random() < 0.33 else None
        second = 8 * 3600 + i * 14 * 3600 // n_sales
        at = f"{base}{second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}.000+08:00"
        out.append(SaleDelta(sale_id=str(uuid.UUID(int=rng.getrandbits(128))), receipt_no=f"DEMO001-{i + 1:08d}",
                             till_id=f"T{i % 6 + 1}", user_id="U-cashier", at=at, lines=dl,
                             tenders=[DeltaTender(rng.choice(("cash", "alipay", "wechat", "card")), total)],
                             subtotal=sum(x.gross for x in dl), discount=sum(x.discount for x in dl), total=total,
                             tax=sum(x.tax for x in dl), change=0, journal_seq=i + 1, member_id=member,
                             points_earned=total // 100 if member else 0))
    return out


def _appender(sales: list[Any]) -> Any:
    from edge.outbox import queue as outbox

    return lambda conn: [outbox.append(conn, s, s.sale_id, s.at) for s in sales]


# -- 1. a busy day up -----------------------------------------------------------------------------------------

def bench_upload(root: Path, n_sales: int) -> dict[str, Any]:
    from edge.config import HubConfig
    from edge.hub import Hub
    from hq_sync import hub_state
    from hq_sync.agent import SyncAgent, SyncSettings, pair_with_hq

    data = root / "busy"
    _seed_hub(data)
    hq, url = _start_hq(str(root / "hq-upload.sqlite3"), root, demo=True)
    hub = Hub(HubConfig(data_dir=data))
    try:
        reader = hub.db.reader()
        skus = [(r[0], r[1]) for r in reader.execute("SELECT sku, price FROM items WHERE unit = 'each'")]
        members = [r[0] for r in reader.execute("SELECT member_id FROM members")]
        sales = _day_of_sales(n_sales, 5, skus, members, random.Random(SEED))
        at = hub.clock.stamp()
        hub.db.write_sync(lambda c: pair_with_hq(c, url, None, True, at))
        for i in range(0, len(sales), 2000):
            chunk = sales[i:i + 2000]
            hub.db.write_sync(_appender(chunk))
        lines = sum(len(s.lines) for s in sales)
        sent = {"bytes": 0, "batches": 0}

        async def count(request: httpx.Request) -> None:
            if request.url.path.endswith("/batches"):
                sent["bytes"] += len(request.content)
                sent["batches"] += 1

        async def push_all() -> float:
            agent = SyncAgent(hub, url, SyncSettings())
            agent._client = httpx.AsyncClient(timeout=60, event_hooks={"request": [count]})
            start = time.perf_counter()
            try:
                while True:
                    state = hub_state.load_state(hub.db.reader())
                    assert state is not None
                    if not await agent._push_once(state):
                        break
            finally:
                await agent._client.aclose()
            return time.perf_counter() - start

        seconds = asyncio.run(push_all())
        state = hub_state.load_state(hub.db.reader())
        assert state is not None
        return {"sales": n_sales, "lines": lines, "seconds": round(seconds, 2), "wire_bytes": sent["bytes"],
                "bytes_per_line": round(sent["bytes"] / max(lines, 1), 1), "batches": sent["batches"],
                "acked": state.acked_seq, "sales_per_s": round(n_sales / seconds)}
    finally:
        hub.close()
        _stop(hq)


# -- 2. HQ ingest under 100 stores -------------------------------------------------------------------------------

def bench_ingest(root: Path, db_url: str, stores: int, per_store: int, batch: int) -> dict[str, Any]:
    from hq_sync.protocol import delta_encoder
    from hq_sync.wire import Batch, OutRow, PairRequest, b64, batch_encoder, compress, new_key, sign_request

    hq, url = _start_hq(db_url, root, demo=True)
    try:
        token = httpx.post(url + "/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"}).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}
        rng = random.Random(SEED)
        skus = [(f"SKU{n:05d}", rng.randrange(100, 5000)) for n in range(1, 201)]
        bodies: list[tuple[str, bytes, dict[str, str]]] = []
        total_sales = 0
        for s in range(stores):
            store_id = f"bench-{s:03d}"
            code = httpx.post(f"{url}/hq/v1/stores/{store_id}/pair-code", headers=admin).json()["code"]
            private, public = new_key()
            r = httpx.post(url + "/hq/v1/sync/pair", json=msgspec.to_builtins(
                PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, code=code)))
            assert r.status_code == 200, r.text
            sales = _day_of_sales(per_store, 5, skus, [], rng)
            for i in range(0, per_store, batch):
                rows = [OutRow(i + k + 1, "sale", d.sale_id, d.at, msgspec.Raw(delta_encoder.encode(d)))
                        for k, d in enumerate(sales[i:i + batch])]
                body, enc = compress(batch_encoder.encode(Batch(store_id, per_store, rows)))
                bodies.append((store_id, body, {"Content-Encoding": enc, "_key": private.hex()}))
            total_sales += per_store

        async def store_push(client: httpx.AsyncClient, mine: list[tuple[str, bytes, dict[str, str]]]) -> None:
            for store_id, body, meta in mine:  # one store sends its batches in order, one at a time
                key = bytes.fromhex(meta["_key"])
                headers = {**sign_request(key, store_id, "POST", "/hq/v1/sync/batches", int(time.time()), body),
                           "Content-Encoding": meta["Content-Encoding"]}
                r = await client.post(url + "/hq/v1/sync/batches", content=body, headers=headers)
                assert r.status_code == 200, r.text

        async def run() -> float:
            by_store: dict[str, list[tuple[str, bytes, dict[str, str]]]] = {}
            for item in bodies:
                by_store.setdefault(item[0], []).append(item)
            limits = httpx.Limits(max_connections=stores, max_keepalive_connections=stores)
            async with httpx.AsyncClient(timeout=300, limits=limits) as client:
                start = time.perf_counter()
                await asyncio.gather(*(store_push(client, mine) for mine in by_store.values()))
                return time.perf_counter() - start

        seconds = asyncio.run(run())
        held = httpx.get(url + "/hq/v1/stores", headers=admin).json()["stores"]
        applied = sum(s["sales"] for s in held if s["store_id"].startswith("bench-"))
        return {"stores": stores, "sales": total_sales, "held": applied, "seconds": round(seconds, 2),
                "sales_per_s": round(total_sales / seconds), "batch": batch}
    finally:
        _stop(hq)


# -- 3. 100,000 prices down ------------------------------------------------------------------------------------------

def bench_prices(root: Path, n_prices: int) -> dict[str, Any]:
    from edge.config import HubConfig
    from edge.hub import Hub
    from hq_sync import hub_state
    from hq_sync.agent import SyncAgent, SyncSettings, pair_with_hq

    data = root / "prices"
    _seed_hub(data, "demo-002")
    hq, url = _start_hq(str(root / "hq-prices.sqlite3"), root, demo=True)
    hub = Hub(HubConfig(data_dir=data, store_id="demo-002"))
    try:
        at = hub.clock.stamp()
        skus = [f"BX{n:07d}" for n in range(n_prices)]
        hub.db.write_sync(lambda c: c.executemany(
            "INSERT INTO items (sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, updated_at) "
            "VALUES (?, ?, ?, (SELECT min(category_id) FROM categories), 'each', 100, 1300, ?)",
            [(s, s, s, at) for s in skus]))
        hub.db.write_sync(lambda c: pair_with_hq(c, url, None, True, at))
        token = httpx.post(url + "/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"}).json()["token"]
        prices = [[s, 200 + n % 997] for n, s in enumerate(skus)]
        applied: list[float] = []

        async def run() -> tuple[float, float]:
            agent = SyncAgent(hub, url, SyncSettings(long_poll_s=10))
            await agent.start()
            try:
                while hub_state.load_state(hub.db.reader()).feed_cursor == 0:  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)  # the opening snapshot is in
                original = hub_state.apply_feed

                def timed(conn: Any, entries: Any, head: int, now: str) -> Any:
                    t = time.perf_counter()
                    out = original(conn, entries, head, now)
                    applied.append(time.perf_counter() - t)
                    return out

                hub_state.apply_feed = timed
                async with httpx.AsyncClient(timeout=120) as client:
                    start = time.perf_counter()
                    r = await client.post(url + "/hq/v1/prices", json={"prices": prices},
                                          headers={"Authorization": f"Bearer {token}"})
                    assert r.status_code == 200, r.text
                    published = time.perf_counter()
                last, want = skus[-1], prices[-1][1]
                while await asyncio.to_thread(lambda: hub.db.reader().execute(
                        "SELECT price FROM items WHERE sku = ?", (last,)).fetchone()[0]) != want:
                    await asyncio.sleep(0.01)
                done = time.perf_counter()
                hub_state.apply_feed = original
                return done - published, done - start
            finally:
                await agent.stop()

        after_publish, end_to_end = asyncio.run(run())
        ok = hub.db.reader().execute("SELECT count(*) FROM items WHERE sku LIKE 'BX%' AND price >= 200").fetchone()[0]
        return {"prices": n_prices, "applied": ok, "seconds": round(after_publish, 2),
                "apply_s": round(sum(applied), 2), "with_publish_s": round(end_to_end, 2)}
    finally:
        hub.close()
        _stop(hq)


# -- PostgreSQL for the run -------------------------------------------------------------------------------------------

class _Pg:
    """A private PostgreSQL cluster for a bench run (`settings`: server settings it starts with)."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed")
        self.bindir = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-", dir=root))
        os.chmod(root, 0o755)
        self.root.chmod(0o777)
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "pg.log"), "-o",
                   f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                   + "".join(f" -c {name}={value}" for name, value in (settings or {}).items()), "-w", "start"])
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/bench"

    def recycle_wal(self, mb: int) -> int:
        """Leave `mb` of WAL segments ready for reuse, as a server that has run through checkpoints keeps them
        (up to `min_wal_size`, which must be at least `mb`); returns the MB of segments in pg_wal after it.
        A fresh cluster has none: each segment is created and zero-filled (16 MB) when the WAL reaches it,
        under the WAL write lock, and every commit meanwhile waits (docs/hq-serving.md "A fresh cluster's
        WAL"). Each switch to the next segment creates one; the checkpoint then keeps them for reuse."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            size = int(conn.execute("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
                       .fetchone()[0])  # type: ignore[index]
            for _ in range(-(-mb * 1024 * 1024 // size)):
                # A switch needs a WAL record since the last one: a message, which touches no table.
                conn.execute("SELECT pg_logical_emit_message(false, 'backroom-bench', ''), pg_switch_wal()")
            conn.execute("CHECKPOINT")
            ready = conn.execute("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()").fetchone()
        return int(ready[0]) // (1024 * 1024) if ready else 0

    def _run(self, cmd: list[str]) -> None:
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)

    def stop(self) -> None:
        try:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"])
        except (RuntimeError, subprocess.TimeoutExpired):
            pass


# -- spend: the cross-store authorisation that must reclaim first ---------------------------------------------

SPEND_TARGET_P99_MS = 300.0


def _start_hub(data: Path, root: Path, hq_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`backroom serve --hq` on a seeded data directory, with the agent's default settings."""
    port = _free_port()
    args = [sys.executable, "-m", "edge.cli", "serve", "--data", str(data), "--port", str(port), "--mqtt-port",
            str(_free_port()), "--hq", hq_url, "--log-level", "warning"]
    log = (root / f"hub-{port}.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("serve did not start")


def _hub_value(data: Path, member_id: str) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{data / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT balance FROM member_balance WHERE member_id = ?", (member_id,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))], 1)

    return {"n": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 1)}


def bench_spend(root: Path, authorizations: int, sales: int) -> dict[str, Any]:
    """A real HQ (SQLite, no proactive policy, so every spend at B must reclaim) and two real hubs.
    Each member's whole balance is escrowed to store A; store B then asks for 100 fen at a time with
    the hub's own signed `POST /hq/v1/sync/authorize` — HQ reclaims from A, A's agent releases at once,
    HQ grants B — and, for whole sales, the till's `POST /api/v1/sales` at B paid with stored value."""
    import logging
    import sqlite3

    from hq_sync.wire import AuthorizeRequest, sign_request

    logging.getLogger("httpx").setLevel(logging.WARNING)

    hq, hq_url = _start_hq(str(root / "hq-spend.sqlite3"), root, True, {
        "BACKROOM_HQ_ESCROW_HOME_SHARE_PCT": "0", "BACKROOM_HQ_ESCROW_SHOP_SHARE_PCT": "0"})
    procs = [hq]
    try:
        data = {s: root / f"spend-{s}" for s in ("demo-001", "demo-002")}
        urls = {}
        for store, path in data.items():
            _seed_hub(path, store)
            proc, urls[store] = _start_hub(path, root, hq_url)
            procs.append(proc)

        def paired(path: Path) -> bool:
            conn = sqlite3.connect(f"file:{path / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
            try:
                return conn.execute("SELECT feed_cursor FROM sync_state").fetchone() not in (None, (0,))
            finally:
                conn.close()

        _wait(lambda: all(paired(p) for p in data.values()), 60, "both stores paired")
        token = httpx.post(hq_url + "/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"}).json()["token"]
        admin = httpx.Client(base_url=hq_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        members = []
        for n in range(1, 51):
            member_id = f"M{n:06d}"
            view = admin.get(f"/hq/v1/members/{member_id}")
            if view.status_code == 200 and view.json()["unallocated_balance"] >= 5000:
                members.append((member_id, int(view.json()["unallocated_balance"])))
        if len(members) < 4:
            raise RuntimeError("the demo HQ has too few members with a balance")
        for member_id, free in members:  # every member's money sits at A
            assert admin.post(f"/hq/v1/members/{member_id}/escrow",
                              json={"store_id": "demo-001", "amount": free}).status_code == 201
        for member_id, free in members:
            _wait(lambda m=member_id, f=free: _hub_value(data["demo-001"], m) == f, 30, "A's escrow")

        conn = sqlite3.connect(f"file:{data['demo-002'] / 'hub.sqlite3'}?mode=ro", uri=True)
        key = bytes(conn.execute("SELECT private_key FROM sync_state").fetchone()[0])
        conn.close()
        half = max(2, len(members) // 2)
        auth_members, sale_members = members[:half], members[half:]
        timings: list[float] = []
        refused: dict[str, int] = {}
        with httpx.Client(timeout=5) as client:
            for i in range(authorizations + 5):
                member_id = auth_members[i % len(auth_members)][0]
                body = msgspec.json.encode(AuthorizeRequest(request_id=f"bench-{uuid.uuid4()}", member_id=member_id,
                                                            ledger="value", amount=100, wait_ms=1200))
                target = "/hq/v1/sync/authorize"
                headers = {**sign_request(key, "demo-002", "POST", target, int(time.time()), body),
                           "Content-Type": "application/json"}
                start = time.perf_counter()
                resp = client.post(hq_url + target, content=body, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                if resp.status_code != 200:
                    code = resp.json().get("code", str(resp.status_code))
                    refused[code] = refused.get(code, 0) + 1
                elif i >= 5:  # the first few warm the connections up
                    timings.append(elapsed)
            login = client.post(urls["demo-002"] + "/api/v1/auth/login",
                                json={"username": "cashier", "pin": "1234", "till_id": "T1"}).json()
            till = {"Authorization": f"Bearer {login['token']}"}
            sale_ms: list[float] = []
            for i in range(sales):
                member_id = sale_members[i % len(sale_members)][0]
                lines = [{"sku": "SKU00027", "qty": 1}]
                total = client.post(urls["demo-002"] + "/api/v1/quote", headers=till,
                                    json={"lines": lines, "member_id": member_id}).json()["total"]
                sale = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines, "member_id": member_id,
                        "tenders": [{"method": "stored_value", "amount": total}]}
                start = time.perf_counter()
                resp = client.post(urls["demo-002"] + "/api/v1/sales", headers=till, json=sale)
                elapsed = (time.perf_counter() - start) * 1000
                if resp.status_code != 201:
                    code = resp.json().get("code", str(resp.status_code))
                    refused[f"sale_{code}"] = refused.get(f"sale_{code}", 0) + 1
                else:
                    sale_ms.append(elapsed)
        hq_conn = sqlite3.connect(f"file:{root / 'hq-spend.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:  # every authorisation and sale had to take the money back from A first
            reclaims = hq_conn.execute("SELECT count(*), count(released) FROM hq_reclaims "
                                       "WHERE store_id = 'demo-001'").fetchone()
        finally:
            hq_conn.close()
        return {"members": len(members), "authorize": _percentiles(timings) if timings else {},
                "sale": _percentiles(sale_ms) if sale_ms else {}, "refused": refused,
                "reclaims": int(reclaims[0]), "released": int(reclaims[1])}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def run_spend_bench(args: argparse.Namespace) -> int:
    """`backroom bench spend`: p50/p99 of the cross-store authorisation that must reclaim first."""
    scale = float(os.environ.get("BACKROOM_BENCH_SCALE") or 1.0)
    root = Path(tempfile.mkdtemp(prefix="backroom-bench-spend-"))
    os.chmod(root, 0o755)
    figures: dict[str, Any] = {"bench": "spend", "scale": scale, "cpus": os.cpu_count()}
    try:
        result = bench_spend(root, max(20, int(200 * scale)), max(10, int(60 * scale)))
        _say(args, f"spend: {result}")
        figures.update(result)
        figures["authorize_p50_ms"] = result["authorize"].get("p50_ms")
        figures["authorize_p99_ms"] = result["authorize"].get("p99_ms")
        figures["sale_p99_ms"] = result["sale"].get("p99_ms")
        figures["target_p99_ms"] = SPEND_TARGET_P99_MS
        figures["meets"] = (figures["authorize_p99_ms"] or 1e9) <= SPEND_TARGET_P99_MS
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def run_sync_bench(args: argparse.Namespace) -> int:
    scale = float(os.environ.get("BACKROOM_BENCH_SCALE") or 1.0)
    n_sales = max(50, int(20000 * scale))
    stores = max(2, int(100 * min(scale, 1.0)))
    per_store = max(20, int(300 * scale))
    n_prices = max(100, int(100000 * scale))
    root = Path(tempfile.mkdtemp(prefix="backroom-bench-sync-"))
    os.chmod(root, 0o755)
    figures: dict[str, Any] = {"bench": "sync", "scale": scale, "cpus": os.cpu_count()}
    try:
        figures["upload"] = bench_upload(root, n_sales)
        _say(args, f"upload: {figures['upload']}")
        figures["ingest_sqlite"] = bench_ingest(root, str(root / "hq-ingest.sqlite3"), stores, per_store, 150)
        _say(args, f"ingest (SQLite): {figures['ingest_sqlite']}")
        try:
            pg = _Pg(root)
        except (RuntimeError, ImportError) as exc:
            figures["ingest_postgresql"] = {"skipped": str(exc)[:200]}
        else:
            try:
                figures["ingest_postgresql"] = bench_ingest(root, pg.url, stores, per_store, 150)
            finally:
                pg.stop()
        _say(args, f"ingest (PostgreSQL): {figures['ingest_postgresql']}")
        figures["prices"] = bench_prices(root, n_prices)
        _say(args, f"prices: {figures['prices']}")
        figures["targets"] = TARGETS
        figures["meets"] = {
            "upload_s": figures["upload"]["seconds"] < TARGETS["upload_s"],
            "bytes_per_line": figures["upload"]["bytes_per_line"] < TARGETS["bytes_per_line"],
            "ingest_sqlite": figures["ingest_sqlite"]["sales_per_s"] >= TARGETS["ingest_sales_per_s"],
            "ingest_postgresql": figures["ingest_postgresql"].get("sales_per_s", 0) >= TARGETS["ingest_sales_per_s"],
            "prices_s": figures["prices"]["seconds"] < TARGETS["prices_s"],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "json", False):
        print(text, flush=True)
