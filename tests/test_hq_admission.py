"""Authorisations first, batches behind HQ's admission limit (docs/hq-serving.md, "Authorisations first").

One real HQ, `hq serve --workers 2` on a real PostgreSQL, with one batch thread a worker
(BACKROOM_HQ_BATCH_THREADS=1), so that a handful of batches already wait behind the limit:

- a store's batches fired many at once, each twice, all wait their turn and are applied exactly once;
- while the batch threads are stuck (the test holds the store's row lock, so every batch transaction
  in flight waits on it) and more batches wait behind them, an authorisation is answered; then the
  batches go through, each once;
- with BACKROOM_HQ_BATCH_NICE (an operator's choice, off by default), the batch connections' PostgreSQL
  backends run niced and the authorisations' do not, with the lane on threads or in processes; the lane's
  processes run niced themselves;
- a batch lane process killed while it holds a batch: its store gets 503 and sends it again, the lane starts
  again, and the batch is held once;
- a store key the worker has not cached is read on a thread: while that read waits on a lock, the same worker
  answers other requests;
- told to stop, HQ answers the long-polls it holds at once and stops inside its grace period, logging no
  exception.
"""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from sync_support import HqServer, PgCluster, funded_member, pg_cluster, wait_until  # noqa: F401 -- pg_cluster is a fixture
from sync_support import ProtocolStore as Store

from hq_sync.bench_chain import _stat
from hq_sync.wire import AuthorizeRequest

WORKERS = 2
BATCH_THREADS = 1


@pytest.fixture(scope="module")
def hq(pg_cluster: PgCluster) -> Iterator[HqServer]:  # noqa: F811
    root = Path(tempfile.mkdtemp(prefix="hq-admission-"))
    server = HqServer(pg_cluster.url(), root, escrow={"home_share_pct": "0", "shop_share_pct": "0"})
    server.args += ["--workers", str(WORKERS)]
    server.env["BACKROOM_HQ_BATCH_THREADS"] = str(BATCH_THREADS)
    server.start(90)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["thread", "process"])
def hq_niced(request: pytest.FixtureRequest, pg_cluster: PgCluster) -> Iterator[HqServer]:  # noqa: F811
    """HQ with the batch lane on threads or in processes (BACKROOM_HQ_BATCH_LANE) and its backends niced."""
    root = Path(tempfile.mkdtemp(prefix=f"hq-admission-{request.param}-"))
    server = HqServer(pg_cluster.url(), root, escrow={"home_share_pct": "0", "shop_share_pct": "0"})
    server.env["BACKROOM_HQ_BATCH_THREADS"] = str(BATCH_THREADS)
    server.env["BACKROOM_HQ_BATCH_LANE"] = request.param
    server.env["BACKROOM_HQ_BATCH_NICE"] = "10"
    server.start(90)
    try:
        yield server
    finally:
        server.stop()


def _sales(store: Store, n: int) -> list[Any]:
    from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta

    out = []
    for i in range(n):
        line = DeltaLine(1, f"SKU{27 + i % 4:05d}", 1, 990, 990, 0, 990, 81)
        out.append(SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"{store.store_id}-{i}", till_id="T1",
                             user_id="U-cashier", at=f"2026-05-01T{9 + i % 4:02d}:00:00.000+08:00", lines=[line],
                             tenders=[DeltaTender("cash", 990)], subtotal=990, discount=0, total=990, tax=81,
                             change=0, journal_seq=i + 1))
    return out


def _batch_backends(hq: HqServer) -> list[tuple[int, str | None, str | None]]:
    """The batch pools' backends inside a transaction: (pid, wait_event_type, state)."""
    return [(int(r[0]), r[1], r[2]) for r in hq.query(
        "SELECT pid, wait_event_type, state FROM pg_stat_activity WHERE application_name = 'backroom-hq-batch' "
        "AND datname = current_database() AND state <> 'idle'")]


def _held_once(hq: HqServer, store: Store, expected: set[str]) -> None:
    rows = hq.query("SELECT sale_id FROM hq_sales WHERE store_id = ?", (store.store_id,))
    assert sorted(r[0] for r in rows) == sorted(expected)
    assert hq.query("SELECT sales, acked_seq FROM hq_stores WHERE store_id = ?",
                    (store.store_id,)) == [(len(expected), len(expected))]
    assert hq.query("SELECT count(*), count(DISTINCT seq) FROM hq_deltas WHERE store_id = ?",
                    (store.store_id,)) == [(len(expected), len(expected))]


def test_batches_queued_behind_the_limit_apply_exactly_once(hq: HqServer) -> None:
    store = Store(f"adm-once-{uuid.uuid4().hex[:6]}")
    store.pair(hq)
    sales = _sales(store, 120)
    bodies = [store.batch(sales[i:i + 10]) for i in range(0, 120, 10)]
    jobs = [body for body in bodies for _ in range(2)]  # 24 requests, 2 threads in all: most of them queue
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda body: store.send(hq.url, body), jobs))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    again = [store.send(hq.url, body) for body in bodies]  # as the agent does: what was not acked, in order
    assert again[-1].json()["acked"] == 120
    assert sum(r.json()["applied"] for r in answers + again) == 120  # among all the answers, each sale once
    _held_once(hq, store, {s.sale_id for s in sales})


def test_an_authorisation_is_answered_while_batches_wait_behind_the_limit(hq: HqServer) -> None:
    uploader, till = Store(f"adm-up-{uuid.uuid4().hex[:6]}"), Store(f"adm-till-{uuid.uuid4().hex[:6]}")
    uploader.pair(hq)
    till.pair(hq)
    with hq.admin() as admin:
        member = funded_member(admin)
    sales = _sales(uploader, 60)
    bodies = [uploader.batch(sales[i:i + 10]) for i in range(0, 60, 10)]
    # The uploader's row locked here: every batch transaction that starts waits on it, holding its thread
    with psycopg.connect(hq.db_url) as lock, concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        lock.execute("SELECT 1 FROM hq_stores WHERE store_id = %s FOR UPDATE", (uploader.store_id,))
        sent = [pool.submit(uploader.send, hq.url, body) for body in bodies]
        wait_until(lambda: any(w == "Lock" for _, w, _ in _batch_backends(hq)), 30, what="a batch waits on the lock")
        time.sleep(0.5)  # the other requests reach HQ (they then wait for a batch thread, or on the lock)
        # Never more batch transactions than the limit allows, whatever is sent
        assert 1 <= len(_batch_backends(hq)) <= WORKERS * BATCH_THREADS
        body = msgspec.json.encode(AuthorizeRequest(request_id=f"adm-{uuid.uuid4()}", member_id=member,
                                                    ledger="value", amount=100, wait_ms=0))
        target = "/hq/v1/sync/authorize"
        answers = [httpx.post(hq.url + target, content=body, timeout=30,
                              headers={**till.headers("POST", target, body), "Content-Type": "application/json"})
                   for _ in range(2)]  # two: whichever worker each lands on, it answers
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        assert answers[0].json() == answers[1].json()  # the same request: one grant
        assert answers[0].json()["amount"] == 100
        assert not any(f.done() for f in sent)  # the batches were still waiting when the till got its answer
        lock.rollback()
        results = [f.result(timeout=60) for f in sent]
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    again = [uploader.send(hq.url, body) for body in bodies]
    assert again[-1].json()["acked"] == 60
    _held_once(hq, uploader, {s.sale_id for s in sales})
    assert hq.query("SELECT count(*) FROM hq_grants WHERE member_id = ? AND request_id = ?",
                    (member, f"{till.store_id}:{msgspec.json.decode(body)['request_id']}")) == [(1,)]


def test_with_batch_nice_batch_backends_run_niced_and_authorisation_backends_do_not(hq_niced: HqServer) -> None:
    hq = hq_niced
    store = Store(f"adm-nice-{uuid.uuid4().hex[:6]}")
    store.pair(hq)
    sales = _sales(store, 5)
    assert store.send(hq.url, store.batch(sales)).status_code == 200
    _held_once(hq, store, {s.sale_id for s in sales})
    rows = hq.query("SELECT application_name, pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name IN ('backroom-hq-batch', 'backroom-hq-authorize')")
    batch = [int(pid) for name, pid in rows if name == "backroom-hq-batch"]
    auth = [int(pid) for name, pid in rows if name == "backroom-hq-authorize"]
    assert batch and auth  # the authorisations' pool is opened at start; the batch pool by the batch above
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in batch} == {10}
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in auth} == {0}
    lanes = _one_workers_lane_processes(hq)
    if hq.env["BACKROOM_HQ_BATCH_LANE"] == "process":  # the lane processes themselves: nice 10 (LANE_NICE)
        assert lanes and {os.getpriority(os.PRIO_PROCESS, pid) for pid in lanes} == {10}
    else:
        assert lanes == []


def test_a_killed_batch_process_costs_its_store_a_resend_and_nothing_is_doubled(hq: HqServer) -> None:
    store = Store(f"adm-kill-{uuid.uuid4().hex[:6]}")
    store.pair(hq)
    sales = _sales(store, 6)
    body = store.batch(sales)
    # Hold the store's row so the batch waits inside a lane process's transaction, then kill that process.
    with psycopg.connect(hq.db_url) as holder:
        holder.execute("SELECT 1 FROM hq_stores WHERE store_id = %s FOR UPDATE", (store.store_id,))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            sent = pool.submit(store.send, hq.url, body)
            wait_until(lambda: any(w == "Lock" for _, w, _ in _batch_backends(hq)), timeout=30)
            lanes = _lane_processes(hq)
            assert 1 <= len(lanes) <= WORKERS * BATCH_THREADS  # each worker's lane: processes of its own
            for pid in lanes:  # the one holding the batch, and any other worker's idle one
                os.kill(pid, 9)
            answer = sent.result(timeout=60)
        holder.rollback()
    assert answer.status_code == 503 and answer.json()["code"] == "batch_lane_restarting"
    assert hq.query("SELECT count(*) FROM hq_sales WHERE store_id = ?", (store.store_id,)) == [(0,)]
    again = store.send(hq.url, body)  # as the store's agent does
    assert again.status_code == 200, again.text
    _held_once(hq, store, {s.sale_id for s in sales})
    assert not set(lanes) & set(_lane_processes(hq))  # the lane started again


def _lane_processes(hq: HqServer) -> list[int]:
    """The batch lane processes: the children of HQ's workers (the workers are the server's children)."""
    assert hq.proc is not None
    return _children(set(_children({hq.proc.pid})))


def _one_workers_lane_processes(hq: HqServer) -> list[int]:
    """An HQ of one worker: its lane processes are its children (beside multiprocessing's resource tracker)."""
    assert hq.proc is not None
    return [pid for pid in _children({hq.proc.pid}) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _children(of: set[int]) -> list[int]:
    parents = {int(e): int(fields[1]) for e in os.listdir("/proc")
               if e.isdigit() and (fields := _stat(int(e))) is not None}
    return sorted(pid for pid, parent in parents.items() if parent in of)


def test_a_lane_process_takes_batches_without_importing_the_web_framework() -> None:
    """A lane process starts when a batch finds none idle, and that batch waits for its imports: what it
    imports to take batches (the initializer's modules, the functions the lane is given, unpickled by name)
    stays free of litestar, which took seconds to import at the lane's nice 10 on a busy machine."""
    from hq_sync.server.service import intake, member_rules

    given = pickle.dumps((intake.decode_and_ingest, member_rules.after_batch))
    code = ("import sys, pickle; from hq_sync.server.api import scheduling; pickle.loads(sys.stdin.buffer.read()); "
            "import hq_sync.server.service.intake, hq_sync.server.storage.db; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('litestar', 'uvicorn', 'starlette')))")
    done = subprocess.run([sys.executable, "-c", code], input=given, capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "[]"


def test_a_worker_stopping_ends_its_lane_processes_and_leaves_a_clean_log(pg_cluster: PgCluster) -> None:  # noqa: F811
    """SIGTERM after a batch: the lane processes finish and exit with the worker, and multiprocessing's
    resource tracker finds nothing left behind (it warned of "leaked semaphore objects" at every stop)."""
    root = Path(tempfile.mkdtemp(prefix="hq-admission-stop-"))
    server = HqServer(pg_cluster.url(), root).start(90)
    try:
        store = Store(f"adm-stop-{uuid.uuid4().hex[:6]}")
        store.pair(server)
        sales = _sales(store, 3)
        assert store.send(server.url, store.batch(sales)).status_code == 200
        lanes = _one_workers_lane_processes(server)
        assert lanes
    finally:
        server.stop()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in lanes), 10, what="the lane processes to end")
    assert "leaked semaphore" not in server.log(), server.log()[-2000:]


def test_a_store_key_read_from_the_database_does_not_hold_the_event_loop(pg_cluster: PgCluster) -> None:  # noqa: F811
    """A store paired since the worker cached its keys: its first request reads the key from the database, on a
    thread. While that read waits (the test holds a lock on hq_stores), the same worker (one worker) still
    answers other requests."""
    root = Path(tempfile.mkdtemp(prefix="hq-admission-key-"))
    server = HqServer(pg_cluster.url(), root).start(90)
    try:
        store = Store(f"adm-key-{uuid.uuid4().hex[:6]}")
        store.pair(server)  # the pairing makes the worker forget the store's key
        target = "/hq/v1/sync/state"
        with psycopg.connect(server.db_url) as holder, concurrent.futures.ThreadPoolExecutor(1) as pool:
            holder.execute("LOCK TABLE hq_stores IN ACCESS EXCLUSIVE MODE")
            sent = pool.submit(httpx.get, server.url + target, headers=store.headers("GET", target), timeout=60)
            wait_until(lambda: any(w == "Lock" for w in _waits(server)), timeout=30, what="the key read to wait")
            started = time.monotonic()
            assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
            assert time.monotonic() - started < 5
            assert not sent.done()
            holder.rollback()
            answer = sent.result(timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["store_id"] == store.store_id
    finally:
        server.stop()


def _waits(hq: HqServer) -> list[str]:
    """What HQ's connections are waiting on (PostgreSQL's wait event types)."""
    rows = hq.query("SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE "
                    "starts_with(application_name, 'backroom-hq') AND datname = current_database()")
    return [str(w) for (w,) in rows]


def test_a_stopping_hq_answers_its_held_long_polls_at_once(pg_cluster: PgCluster) -> None:  # noqa: F811
    """SIGTERM while stores hold feed long-polls (2 workers): every poll is answered at once with an empty
    page, HQ stops, and nothing is logged as an exception. Before, the stop waited out uvicorn's 5 s grace
    period, then cancelled the polls (their stores got 500) and logged each cancellation with its traceback."""
    root = Path(tempfile.mkdtemp(prefix="hq-admission-polls-"))
    server = HqServer(pg_cluster.url(), root)
    server.args += ["--workers", "2"]
    server.start(90)
    try:
        stores = [Store(f"adm-poll-{n}-{uuid.uuid4().hex[:6]}") for n in range(4)]
        for store in stores:
            store.join(server)
        with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
            polls = [pool.submit(store.feed_page, server.url, 25) for store in stores]
            wait_until(lambda: _established(server.port) >= len(stores), 30, what="the polls to connect")
            time.sleep(1.0)
            assert not any(p.done() for p in polls)  # held
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            answers = [p.result(timeout=30) for p in polls]  # feed_page checks each is a 200
            answered_s = time.monotonic() - started
            server.proc.wait(timeout=30)
            stopped_s = time.monotonic() - started
        assert all(entries == [] for entries, _ in answers)
        assert answered_s < 3, answered_s  # the old code answered 500 after the 5 s grace period
        assert stopped_s < 15, stopped_s  # (its lane processes and pools closed; slower on a loaded machine)
        assert "Exception in ASGI application" not in server.log(), server.log()[-3000:]
    finally:
        server.stop()


def _established(port: int) -> int:
    """Established TCP connections whose local end is `port` (HQ's side of its clients' connections)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def test_a_key_the_worker_lacks_brings_every_store_s_key_in_one_read(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores paired after a worker started: the first request of one of them reads every paired store's key
    (one query, shared), so the others' first requests find theirs cached. A store paired after that read, or
    one not paired at all, is read on its own, and a store forgotten (paired again) during a read is not cached
    with what the read found."""
    import asyncio

    from hq_sync.server.api import resources
    from hq_sync.server.service.stores import ensure_store

    monkeypatch.setenv("BACKROOM_HQ_KEY_FILE", str(tmp_path / "hq.pii.key"))
    hq = resources.Hq(str(tmp_path / "hq.sqlite3"))

    def pair(*store_ids: str) -> None:
        with hq.db.write() as tx:
            for store_id in store_ids:
                ensure_store(tx, store_id)
                tx.run("UPDATE hq_stores SET public_key = ? WHERE store_id = ?", (store_id.encode() * 4, store_id))

    async def scenario() -> None:
        pair("s1", "s2", "s3")
        assert hq.cached_key("s2") is None
        assert await hq.key_of("s1") == b"s1" * 4
        assert hq.cached_key("s2") == b"s2" * 4 and hq.cached_key("s3") == b"s3" * 4  # the same read
        pair("s4")  # within ALL_KEYS_EVERY_S of that read: its own read
        assert await hq.key_of("s4") == b"s4" * 4
        assert await hq.key_of("nobody") is None
        pair("s5")
        real_read = resources.stores.store_key

        def read_while_paired_again(db: Any, store_id: str) -> bytes | None:
            key = real_read(db, store_id)  # the key as the read found it...
            hq._forget_local([store_id])  # ... and the store paired again before the read returned
            return key

        monkeypatch.setattr(resources.stores, "store_key", read_while_paired_again)
        assert await hq.key_of("s5") == b"s5" * 4 and hq.cached_key("s5") is None  # answered, not kept
        monkeypatch.setattr(resources.stores, "store_key", real_read)
        assert await hq.key_of("s5") == b"s5" * 4 and hq.cached_key("s5") == b"s5" * 4

    try:
        asyncio.run(scenario())
    finally:
        hq.close()
