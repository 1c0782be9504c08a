"""`backroom bench chain` on a tiny chain: a real private PostgreSQL, a real `hq serve --workers 2` and a few
simulated stores. Checks the figures' shape and that nothing was lost, never the machine's speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sync_support import REPO, clean_env, pg_bindir

KEYS = {
    "bench", "stores", "workers", "sales", "sales_held", "batches", "ingest_s", "ingest_sales_per_s", "fanout_s",
    "fanout_stores", "authorize_sent", "authorizations", "authorize_p50_ms", "authorize_p99_ms", "authorize_max_ms",
    "authorize_refused", "window_s", "hq_cpu_pct", "hq_rss_mb", "pg_cpu_pct", "sim_cpu_pct", "hq_share",
    "pg_share", "sim_share", "bad_feed_entries", "errors", "setup_s", "machine", "targets", "meets",
    "authorize_sender_late", "phases", "batch_sales",
}
PHASES = {"queue", "connection", "read", "commit", "back", "handler"}


@pytest.mark.skipif(pg_bindir() is None, reason="PostgreSQL server not installed")
def test_bench_chain_runs_a_small_chain_and_prints_json_last() -> None:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "chain", "--stores", "4", "--sales-per-store",
                           "100", "--batch-sales", "25", "--auth-rate", "10", "--phases", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # --json: only the figures
    f = json.loads(lines[-1])
    assert set(f) == KEYS
    assert (f["bench"], f["stores"], f["workers"]) == ("chain", 4, 2)
    assert f["sales"] == f["sales_held"] == 400 and (f["batches"], f["batch_sales"]) == (16, 25)  # every sale, once
    assert f["fanout_stores"] == 4 and f["fanout_s"] is not None and f["fanout_s"] > 0  # every store got the price
    assert f["authorize_sent"] >= f["authorizations"] > 0 and f["authorize_refused"] == {}
    assert f["authorize_max_ms"] >= f["authorize_p99_ms"] >= f["authorize_p50_ms"] > 0
    assert (f["bad_feed_entries"], f["errors"]) == (0, {})  # every feed entry verified with HQ's key
    assert f["hq_cpu_pct"] > 0 and f["pg_cpu_pct"] > 0 and f["sim_cpu_pct"] > 0 and f["hq_rss_mb"] > 0
    assert set(f["meets"]) == set(f["targets"]) == {"ingest_sales_per_s", "fanout_s", "authorize_p99_ms"}
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
