"""Real services for the sync tests: a private PostgreSQL cluster, `backroom hq serve` and `backroom serve
--hq` subprocesses, and a fault-injecting HTTP proxy to put between a hub and HQ.

The PostgreSQL cluster is initdb'd in a temporary directory and run by pg_ctl on a free port, as the
`postgres` user when the tests run as root (PostgreSQL refuses to run as root). `make test`
installs the server (`make system-packages`); without it the PostgreSQL cases skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
from hubproc import free_port, healthy

from hq_sync.protocol import delta_encoder
from hq_sync.wire import (
    Batch,
    EscrowReclaim,
    OutRow,
    PairRequest,
    b64,
    batch_encoder,
    compress,
    entry_problem,
    feed_body_decoder,
    feed_page_decoder,
    new_key,
    sign_request,
    unb64,
)

REPO = Path(__file__).resolve().parent.parent



def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
    env["BACKROOM_DEVICES"] = "0"  # no device broker in these hubs (each would take MQTT port 1883)
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env())


# An HQ whose escrow policy makes no grants of its own (tests that count escrow exactly).
NO_POLICY = {"home_share_pct": "0", "shop_share_pct": "0"}

# Sync settings for tests that wait on HQ round trips (HQ's feed, the stock reports).
FAST = {"idle_s": "0.05", "long_poll_s": "5", "digest_interval_s": "1", "backoff_max_s": "0.5",
        "stock_report_s": "0.3"}


def read_feed(db: Any, store_id: str, after: int, limit: int = 200) -> Any:
    """HQ's feed as a store reads it (service/feed.py `read_feed`), after numbering what is queued: on
    PostgreSQL an HQ worker's sequencer does that right after each commit; a test calling HQ's services
    in-process has none."""
    from hq_sync.server.service import feed

    with db.read() as tx:
        row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
    if row is not None:
        feed.sequence_pending(db, bytes(row[0]))
    return feed.read_feed(db, store_id, after, limit)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- PostgreSQL ---------------------------------------------------------------------------------------------

def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PgCluster:
    """A throw-away PostgreSQL server; `url(name)` creates a database and returns its URL."""

    def __init__(self, fsync: bool = False) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="backroom-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--locale=C"])
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                f"-c shared_buffers=128MB" + ("" if fsync else " -c fsync=off -c synchronous_commit=off"))
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                   "-w", "-t", "60", "start"])

    def _run(self, cmd: list[str]) -> None:
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")

    def url(self, name: str | None = None) -> str:
        import psycopg

        name = name or f"hq_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


# -- processes ---------------------------------------------------------------------------------------------

class Proc:
    """A CLI subprocess that serves HTTP: start (waits for /healthz), kill -9, stop."""

    def __init__(self, args: list[str], port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = env or clean_env()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Proc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", *self.args], cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env)
        if healthy(self.proc, self.url, timeout):
            return self
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.args[0]} exited {self.proc.returncode}:\n{self.log()}")
        self.stop()
        raise RuntimeError(f"{self.args} did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class HqServer(Proc):
    """`backroom hq serve`; `escrow` sets the escrow policy (`BACKROOM_HQ_ESCROW_<FIELD>`, docs/sync.md)."""

    def __init__(self, db_url: str, root: Path, demo: bool = True, port: int | None = None,
                 escrow: dict[str, str] | None = None) -> None:
        self.db_url = db_url
        port = port or free_port()
        args = ["hq", "serve", "--db", db_url, "--port", str(port), "--host", "127.0.0.1", "--log-level", "warning"]
        extra = {f"BACKROOM_HQ_ESCROW_{k.upper()}": str(v) for k, v in (escrow or {}).items()}
        if db_url.startswith("postgresql://"):  # HQ on PostgreSQL is told where its personal-data keys are
            extra["BACKROOM_HQ_KEY_FILE"] = str(root / f"hq-{port}.pii.key")
        env = clean_env(**extra)
        super().__init__(args + (["--demo"] if demo else []), port, root / f"hq-{port}.log", env)
        self._token: str | None = None

    def admin(self) -> httpx.Client:
        if self._token is None:
            r = httpx.post(self.url + "/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"}, timeout=10)
            assert r.status_code == 200, r.text
            self._token = r.json()["token"]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self._token}"}, timeout=10)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows straight from HQ's database (either back end)."""
        if self.db_url.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.db_url) as conn:
                return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), args).fetchall()]
        conn = sqlite3.connect(f"file:{self.db_url}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()


class SyncHub(Proc):
    """`backroom serve --hq URL` on a demo-seeded data directory (seeded on first start)."""

    def __init__(self, root: Path, hq_url: str | None, store: str = "demo-001", port: int | None = None,
                 **sync: str) -> None:
        self.data_dir = root / f"hub-{store}"
        if not (self.data_dir / "hub.sqlite3").exists():
            done = cli("seed", "--demo", "--store", store, "--data", str(self.data_dir))
            assert done.returncode == 0, done.stderr
        port = port or free_port()
        args = ["serve", "--data", str(self.data_dir), "--port", str(port), "--mqtt-port", str(free_port()),
                "--log-level", "warning"]
        if hq_url:
            args += ["--hq", hq_url]
        env = clean_env(**{f"BACKROOM_SYNC_{k.upper()}": str(v) for k, v in sync.items()})
        super().__init__(args, port, root / f"hub-{store}-{port}.log", env)
        self._token: str | None = None

    def stop(self) -> None:
        super().stop()
        # A hub killed with -9 leaves its Mosquitto child running (the next start refuses to run a second
        # one): end the broker this data directory's pid file names, which this test started.
        from devices.broker import running_pid

        pid = running_pid(self.data_dir)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    @property
    def base_url(self) -> str:  # as tests/conftest.py's Hub, for tests/ui_support.py
        return self.url

    def paired(self) -> bool:
        return bool(self.query("SELECT count(*) FROM sync_state")[0][0])

    def till(self) -> httpx.Client:
        r = httpx.post(self.url + "/api/v1/auth/login", json={"username": "cashier", "pin": "1234", "till_id": "T1"},
                       timeout=10)
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.data_dir / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()


def sell(till: httpx.Client, n: int = 1, member_id: str | None = None, tenders: list[dict[str, Any]] | None = None,
         sku: str = "SKU00027") -> httpx.Response:
    """One sale of `n` units of a counted demo item, paid exactly (cash unless tenders are given)."""
    lines = [{"sku": sku, "qty": n}]
    body: dict[str, Any] = {"lines": lines}
    if member_id:
        body["member_id"] = member_id
    q = till.post("/api/v1/quote", json=body)
    assert q.status_code == 200, q.text
    total = q.json()["total"]
    return till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", **body,
                                            "tenders": tenders or [{"method": "cash", "amount": total}]})


# -- the fault proxy --------------------------------------------------------------------------------------------

FAULTS = ("ok", "drop", "drop_response", "duplicate", "delay", "reorder", "cut_response", "cut_request")


class FaultProxy:
    """An HTTP/1.1 proxy on its own thread that mistreats requests: each request meets one fault
    drawn with the given weights (`mode = "clean"` passes everything; `"down"` refuses everything,
    as a store's broken uplink does). Long-polls pass through; only POST requests get faults unless
    `faults_on_get` is set."""

    def __init__(self, upstream_port: int, seed: int = 1, weights: dict[str, float] | None = None,
                 faults_on_get: bool = False) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rng = random.Random(seed)
        self.weights = weights or {"ok": 4, "drop": 1, "drop_response": 1, "duplicate": 1, "delay": 1, "reorder": 1,
                                   "cut_response": 1, "cut_request": 1}
        self.faults_on_get = faults_on_get
        self.stall: tuple[str, ...] = ()  # requests to paths starting with these get no answer (held open)
        self.mode = "faulty"
        self.seen: dict[str, int] = {f: 0 for f in FAULTS}
        self._stash: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)
        self._loop.close()

    def _pick(self, method: str) -> str:
        if self.mode == "clean" or (method != "POST" and not self.faults_on_get):
            return "ok"
        names = list(self.weights)
        return self.rng.choices(names, [self.weights[n] for n in names])[0]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                if self.mode == "down":
                    break
                method, target = request.split(b" ", 2)[:2]
                if self.stall and target.decode().startswith(self.stall):
                    await asyncio.sleep(3600)  # as a feed that never arrives; ends when the proxy closes
                fault = self._pick(method.decode())
                self.seen[fault] += 1
                if fault == "drop":
                    break
                if fault == "delay":
                    await asyncio.sleep(self.rng.uniform(0.05, 0.4))
                if fault == "cut_request":
                    await self._forward(request[: max(1, len(request) // 2)], expect_response=False)
                    break
                if fault == "reorder":
                    self._stash.append(request)  # sent again later, after newer requests
                elif self._stash and self.rng.random() < 0.5:
                    await self._forward(self._stash.pop(0))
                response = await self._forward(request)
                if fault == "duplicate":
                    response = await self._forward(request)
                if response is None or fault == "drop_response":
                    break
                if fault == "cut_response":
                    writer.write(response[: max(1, len(response) - max(1, len(response) // 3))])
                    await writer.drain()
                    break
                writer.write(response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled handler ends quietly: the proxy is shutting down
        finally:
            writer.close()

    async def _forward(self, request: bytes, expect_response: bool = True) -> bytes | None:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return None
        try:
            w.write(_close_after(request))
            await w.drain()
            if not expect_response:
                return None
            # An upstream that closed without a byte (HQ killed mid-request) is no response: the store's
            # connection is closed, as a real proxy's would be. Passed on as b"", the store waited its
            # whole request timeout for an answer that the proxy was no longer fetching.
            return await r.read() or None
        except ConnectionError:
            return None
        finally:
            w.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return head + body


def _close_after(request: bytes) -> bytes:
    """The same request with `Connection: close`, so the upstream answer ends at EOF."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def funded_member(admin: httpx.Client, at_least: int = 1000) -> str:
    """A demo member (M000001..M000072) holding at least `at_least` fen of unallocated stored value at HQ."""
    return next(m for m in (f"M{n:06d}" for n in range(1, 73))
                if admin.get(f"/hq/v1/members/{m}").json().get("unallocated_balance", 0) >= at_least)


def entry_name(entry: Any) -> str:
    """A feed entry by name: a reclaim's request id, else its body's tag ("prices", "members", ...)."""
    body = feed_body_decoder.decode(entry.body)
    return body.request_id if isinstance(body, EscrowReclaim) else type(body).__struct_config__.tag


def reclaim_named(name: str) -> EscrowReclaim:
    """A feed body that is easy to tell apart: a reclaim whose request id is `name`."""
    return EscrowReclaim(request_id=name, member_id="M-none", ledger="value", amount=1)


@contextlib.contextmanager
def hq_database(server: HqServer, pool: int) -> Iterator[tuple[Any, bytes]]:
    """A test's own connections to a running PostgreSQL HQ's database (with its personal-data key, so
    profiles seal), and HQ's private signing key: what another HQ worker has."""
    from hq_sync.server.storage.db import PostgresDb

    db = PostgresDb(server.db_url, pool)
    db.key_path = Path(server.env["BACKROOM_HQ_KEY_FILE"])
    with db.read() as tx:
        row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
    assert row is not None
    try:
        yield db, bytes(row[0])
    finally:
        db.close()


# -- fixtures (imported by the sync test modules) ------------------------------------------------------------

import pytest  # noqa: E402

_CLUSTER: list[PgCluster] = []


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    """One PostgreSQL server for the whole run, whichever modules ask (stopped when the run ends)."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server not installed (make system-packages installs it)")
    if not _CLUSTER:
        import atexit

        _CLUSTER.append(PgCluster())
        atexit.register(_CLUSTER[0].stop)
    return _CLUSTER[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def hq_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both HQ back ends: a SQLite file, and a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "hq.sqlite3")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.url()


class ProtocolStore:
    """A store speaking the sync protocol by hand (no hub): its key, its outbox sequence, its feed cursor;
    every feed entry's signature is checked as a hub checks it."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self.key, self.public = new_key()
        self.seq = 0
        self.cursor = 0
        self.hq_key = b""

    def headers(self, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        return sign_request(self.key, self.store_id, method, target, int(time.time()), body)

    def pair(self, hq: HqServer) -> None:
        with hq.admin() as admin:
            code = admin.post(f"/hq/v1/stores/{self.store_id}/pair-code").json()["code"]
        r = httpx.post(hq.url + "/hq/v1/sync/pair", timeout=30, json=msgspec.to_builtins(
            PairRequest(store_id=self.store_id, public_key=b64(self.public), outbox_head=0, code=code)))
        assert r.status_code == 200, r.text
        self.hq_key = unb64(r.json()["hq_public_key"])

    def join(self, hq: HqServer) -> None:
        """Pair with `hq` and read its feed to the end, as a hub does when it is paired."""
        self.url = hq.url
        self.pair(hq)
        self.drain(hq.url)

    def feed_page(self, url: str, wait: float = 0) -> tuple[list[Any], httpx.Response]:
        """One (long-)poll: its entries, every signature checked and the cursor moved, and HQ's answer."""
        target = f"/hq/v1/sync/feed?after={self.cursor}&wait={wait}&limit=1000"
        r = httpx.get(url + target, headers=self.headers("GET", target), timeout=wait + 30)
        assert r.status_code == 200, r.text
        entries = feed_page_decoder.decode(r.content).entries
        for entry in entries:
            assert entry_problem(entry, self.hq_key, self.store_id, self.cursor) is None
            self.cursor = entry.seq
        return list(entries), r

    def feed(self, url: str, wait: float = 0) -> list[Any]:
        return self.feed_page(url, wait)[0]

    def drain(self, url: str) -> None:
        while self.feed(url):
            pass

    def batch(self, rows: list[Any], seq_from: int | None = None) -> tuple[bytes, str]:
        start = self.seq if seq_from is None else seq_from
        out = [OutRow(start + n + 1, type(d).__struct_config__.tag, getattr(d, "sale_id", None) or
                      getattr(d, "request_id", ""), d.at, msgspec.Raw(delta_encoder.encode(d)))
               for n, d in enumerate(rows)]
        self.seq = max(self.seq, start + len(rows))
        return compress(batch_encoder.encode(Batch(self.store_id, self.seq, out)))

    def send(self, url: str, body: tuple[bytes, str]) -> httpx.Response:
        target = "/hq/v1/sync/batches"
        return httpx.post(url + target, content=body[0], timeout=60,
                          headers={**self.headers("POST", target, body[0]), "Content-Encoding": body[1]})
