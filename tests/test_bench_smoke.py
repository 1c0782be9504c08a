"""`backroom bench checkout|lookup`: a short real run against a real `backroom serve`.

Each bench seeds its own temporary demo store, starts the hub as a subprocess and drives its HTTP
API; these runs are about 2 s with small settings. They check the figures' shape and sanity, never
the machine's speed: the last line printed is JSON, every sale and lookup succeeded, latencies are
ordered, and the raw floor ran too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from edge.bench import MemberState, _tenders

CHECKOUT_KEYS = {
    "bench", "tills", "seconds", "sales", "sales_per_s", "p50_ms", "p99_ms", "max_ms", "per_second", "errors",
    "error_codes", "hub_cpu_ms_per_sale", "hub_loop_cpu_ms_per_sale", "hub_cpu_pct", "client_cpu_pct",
    "others_cpu_pct", "floor_threads", "hub_busiest_cpu_ms_per_sale", "hub_processes",
    "floor_sales_per_s", "floor_p50_ms", "floor_p99_ms", "floor_seq_sales_per_s", "floor_seq_p50_ms",
    "floor_seq_p99_ms", "floor_seq_quote_ms", "floor_errors", "machine",
}
LOOKUP_KEYS = {
    "bench", "rate", "connections", "seconds", "lookups", "achieved_per_s", "p50_ms", "p99_ms", "max_ms",
    "p99_ms_from_schedule", "errors", "error_codes", "hub_cpu_ms_per_lookup", "hub_cpu_pct", "client_cpu_pct",
    "others_cpu_pct", "floor_lookups", "floor_p50_us", "floor_p99_us", "machine",
}


def _bench(*args: str) -> tuple[list[str], dict[str, object]]:
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "bench", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_checkout_bench_commits_sales_over_http_and_prints_json_last() -> None:
    lines, f = _bench("checkout", "--tills", "2", "--seconds", "2")
    assert len(lines) > 1  # the human summary comes first
    assert set(f) == CHECKOUT_KEYS
    assert (f["bench"], f["tills"], f["seconds"], f["floor_threads"]) == ("checkout", 2, 2.0, 2)
    assert f["sales"] > 0
    assert f["sales_per_s"] == round(f["sales"] / 2.0, 1)
    assert len(f["per_second"]) == 2 and 0 < sum(f["per_second"]) <= f["sales"]
    assert (f["errors"], f["error_codes"], f["floor_errors"]) == (0, {}, 0)  # every tender was valid
    assert f["max_ms"] >= f["p99_ms"] >= f["p50_ms"] > 0
    assert f["hub_cpu_ms_per_sale"] > 0
    assert 0 <= f["hub_loop_cpu_ms_per_sale"] <= f["hub_cpu_ms_per_sale"]  # the main thread is part of the hub
    # all of the hub's processes: the hub and the sale-writer process its first sale started
    per_process = f["hub_processes"]
    assert isinstance(per_process, dict) and "hub" in per_process
    assert [name for name in per_process if name.startswith("edge.sales.writer_proc[")], per_process
    assert abs(sum(per_process.values()) - f["hub_cpu_ms_per_sale"]) < 0.01
    assert f["hub_busiest_cpu_ms_per_sale"] == max(per_process.values())
    assert f["floor_sales_per_s"] > 0 and f["floor_p99_ms"] >= f["floor_p50_ms"] > 0
    assert f["floor_seq_sales_per_s"] > 0 and f["floor_seq_p99_ms"] >= f["floor_seq_p50_ms"] > 0


def test_lookup_bench_is_open_loop_and_json_only_with_flag() -> None:
    lines, f = _bench("lookup", "--rate", "200", "--seconds", "2", "--tills", "2", "--json")
    assert len(lines) == 1
    assert set(f) == LOOKUP_KEYS
    assert (f["bench"], f["rate"], f["connections"], f["errors"], f["error_codes"]) == ("lookup", 200.0, 2, 0, {})
    assert abs(f["lookups"] - 400) <= 1  # every lookup the schedule put in the window was answered
    assert f["max_ms"] >= f["p99_ms"] >= f["p50_ms"] > 0
    assert f["hub_cpu_ms_per_lookup"] > 0
    assert f["floor_lookups"] > 0 and f["floor_p99_us"] >= f["floor_p50_us"] > 0


@given(total=st.integers(1, 10_000_000), points=st.integers(0, 100_000), balance=st.integers(0, 1_000_000),
       member=st.booleans(), seed=st.integers(0, 2**32))
def test_bench_tenders_cover_the_total_within_what_the_member_holds(
    total: int, points: int, balance: int, member: bool, seed: int
) -> None:
    state = MemberState("M000001", points, balance) if member else None
    tenders = _tenders(random.Random(seed), total, state)
    paid = sum(t["amount"] for t in tenders)
    cash = sum(t["amount"] for t in tenders if t["method"] == "cash")
    assert all(t["amount"] >= 1 for t in tenders)
    assert paid >= total and paid - cash <= total  # covered; only cash may exceed (change)
    value = sum(t["amount"] for t in tenders if t["method"] == "stored_value")
    used = sum(t["amount"] for t in tenders if t["method"] == "points")
    assert value <= balance and used <= points
    if state is None:
        assert value == used == 0
    else:
        assert (state.balance, state.points) == (balance - value, points - used)


def test_footprint_bench_measures_hub_broker_and_device_host() -> None:
    """A whole box: hub (with its Mosquitto) and one `devices host` for four devices, JSON last."""
    lines, f = _bench("footprint", "--tills", "2", "--seconds", "1", "--idle-seconds", "1")
    assert len(lines) > 1
    assert f["bench"] == "footprint" and f["devices"] == ["scale-1", "scanner-1", "printer-1", "display-1"]
    processes = f["processes"]
    assert isinstance(processes, dict) and set(processes) == {"hub", "sale-writer", "mosquitto", "host"}
    for figures in processes.values():
        assert figures["rss_peak_mb"] >= figures["rss_checkout_mb"] > 0 and figures["rss_idle_mb"] > 0
        assert figures["idle_write_bytes_per_hour"] >= 0
    assert f["sales"] > 0 and f["errors"] == 0
    assert processes["sale-writer"]["write_bytes_per_1000_sales"] > 0  # every sale is made durable, there
    assert 0 < f["pss_checkout_total_mb"] < f["rss_checkout_total_mb"]  # shared libraries counted once
    assert 0 < f["cold_start_s"] < 60
    assert f["rss_checkout_total_mb"] == round(sum(p["rss_checkout_mb"] for p in processes.values()), 1)
    for figures in processes.values():
        assert 0 < figures["pss_checkout_mb"] <= figures["rss_checkout_mb"]
    if os.geteuid() == 0:  # frame numbers in /proc/PID/pagemap are shown to root only
        # Shared pages count once: no more than the RSS sum, no less than the largest process.
        assert max(p["rss_checkout_mb"] for p in processes.values()) <= f["together_checkout_mb"]
        assert f["together_checkout_mb"] <= f["rss_checkout_total_mb"]
