"""`backroom bench chain` on a tiny chain: a real private PostgreSQL, a real `hq serve --workers 2` and a few
simulated stores. Checks the figures' shape and that nothing was lost, never the machine's speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sync_support import REPO, clean_env, pg_bindir

from hq_sync.bench import _Pg
from hq_sync.bench_chain import MIN_RECYCLED_MB, pg_settings, steady_rate

KEYS = {
    "bench", "stores", "workers", "sales", "sales_held", "batches", "ingest_s", "ingest_sales_per_s", "fanout_s",
    "fanout_stores", "authorize_sent", "authorizations", "authorize_p50_ms", "authorize_p99_ms", "authorize_max_ms",
    "authorize_refused", "window_s", "hq_cpu_pct", "hq_rss_mb", "pg_cpu_pct", "sim_cpu_pct", "hq_share",
    "pg_share", "sim_share", "bad_feed_entries", "errors", "setup_s", "machine", "targets", "meets",
    "authorize_sender_late", "phases", "batch_sales", "pg_wal", "start_spread_s", "ingest_steady_sales_per_s",
}
PHASES = {"queue", "connection", "read", "commit", "back", "handler"}


@pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server not installed")
def test_bench_chain_runs_a_small_chain_and_prints_json_last() -> None:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "chain", "--stores", "4", "--sales-per-store",
                           "100", "--batch-sales", "25", "--auth-rate", "10", "--start-spread", "0.3", "--phases",
                           "--json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # --json: only the figures
    f = json.loads(lines[-1])
    assert set(f) == KEYS
    assert (f["bench"], f["stores"], f["workers"]) == ("chain", 4, 2)
    assert f["sales"] == f["sales_held"] == 400 and (f["batches"], f["batch_sales"]) == (16, 25)  # every sale, once
    assert f["start_spread_s"] == 0.3 and f["ingest_steady_sales_per_s"] > 0  # 16 batches: a steady middle
    assert f["fanout_stores"] == 4 and f["fanout_s"] is not None and f["fanout_s"] > 0  # every store got the price
    assert f["authorize_sent"] >= f["authorizations"] > 0 and f["authorize_refused"] == {}
    assert f["authorize_max_ms"] >= f["authorize_p99_ms"] >= f["authorize_p50_ms"] > 0
    assert (f["bad_feed_entries"], f["errors"]) == (0, {})  # every feed entry verified with HQ's key
    assert f["hq_cpu_pct"] > 0 and f["pg_cpu_pct"] > 0 and f["sim_cpu_pct"] > 0 and f["hq_rss_mb"] > 0
    assert set(f["meets"]) == set(f["targets"]) == {"ingest_sales_per_s", "fanout_s", "authorize_p99_ms"}
    # the private cluster's WAL segments were made ready for reuse before the busy hour, which wrote WAL
    assert f["pg_wal"]["recycled_mb"] >= MIN_RECYCLED_MB and f["pg_wal"]["written_mb"] > 0
    assert f["pg_wal"]["bytes_per_sale"] > 0 and f["pg_wal"]["checkpoints"] >= 0
    # --phases: every answered authorisation timed inside HQ, its phases adding up to the handler's time
    phases = f["phases"]
    assert phases["authorizations"] == f["authorizations"]
    assert all(phases[name]["n"] == f["authorizations"] for name in PHASES)
    assert sum(phases[name]["max_ms"] for name in PHASES - {"handler"}) >= phases["handler"]["max_ms"] > 0
    assert phases["handler"]["p50_ms"] <= f["authorize_p50_ms"]  # HQ's part of what the till waited
    assert phases["loop_late"]["n"] > 0 and phases["pg_waits"]["samples"] > 0
    assert set(phases["pg_waits"]["active_backends"]) <= {"backroom-hq", "backroom-hq-authorize", "backroom-hq-batch",
                                                          "?", ""}
    assert f["authorize_sender_late"]["p50_ms"] is not None


@pytest.mark.parametrize("size", ["0", "4001"])
def test_bench_chain_refuses_a_batch_size_no_hub_sends(size: str) -> None:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "chain", "--batch-sales", size, "--json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=clean_env())
    assert done.returncode == 2 and "--batch-sales is 1..4000" in done.stderr


def _wal_files(pg: _Pg) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        files = conn.execute("SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'").fetchone()
        mb = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert files is not None and mb is not None
    return int(files[0]), int(mb[0]) // (1024 * 1024)


def _write_wal(pg: _Pg, mb: int) -> None:
    import psycopg

    with psycopg.connect(pg.url, autocommit=True) as conn:
        for _ in range(mb):
            conn.execute("SELECT pg_logical_emit_message(true, 'test', repeat('x', 1024 * 1024))")


@pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server not installed")
@pytest.mark.parametrize("recycled", [True, False])
def test_the_bench_cluster_writes_its_wal_into_segments_made_ready_before(recycled: bool) -> None:
    """With segments made ready (and kept by min_wal_size), writing WAL creates no segment file; a fresh
    cluster's WAL creates one every 16 MB (zero-filled under the WAL write lock: what the bench avoids)."""
    settings, ready_mb = pg_settings(10_000)
    assert ready_mb == MIN_RECYCLED_MB and settings["min_wal_size"] == f"{ready_mb}MB"
    root = Path(tempfile.mkdtemp(prefix="backroom-test-wal-"))  # as the bench's: the server's user reaches it
    pg = _Pg(root, {**settings, "min_wal_size": "96MB"})
    try:
        if recycled:
            assert pg.recycle_wal(96) >= 96
        files0, at0 = _wal_files(pg)
        _write_wal(pg, 64)
        files1, at1 = _wal_files(pg)
        assert at1 - at0 >= 64
        if recycled:
            assert files1 == files0  # every segment the WAL reached was one made ready
        else:
            assert files1 >= files0 + 3  # created as the WAL reached them
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("spread", ["-1", "61"])
def test_bench_chain_refuses_a_start_spread_out_of_bounds(spread: str) -> None:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "chain", "--start-spread", spread, "--json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=clean_env())
    assert done.returncode == 2 and "--start-spread is 0..60 seconds" in done.stderr


def test_the_steady_rate_leaves_out_the_first_and_last_tenth_of_the_batches() -> None:
    # 20 batches of 10 sales: two acknowledged at once at the start, sixteen one a second, two late stragglers
    acked = [0.0, 0.0, *[float(n) for n in range(1, 17)], 60.0, 90.0]
    assert steady_rate(acked, 200) == (17 - 2) * 10 / (16 - 1)  # the 3rd to the 18th: 150 sales in 15 s
    assert steady_rate(acked[:9], 90) is None  # too few batches to leave a tenth out at each end
    assert steady_rate([5.0] * 20, 200) is None  # no time between them
