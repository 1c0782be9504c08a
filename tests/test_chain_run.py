"""`make chain`'s runner: a demo HQ and both demo stores come up paired, and SIGTERM stops every child.

Runs `python -m edge.run_chain` (what `make chain` runs after installing) with real Mosquittos,
simulators and bridges, checks that HQ lists both stores as paired (`GET /hq/v1/stores`) and that
each hub answers, then that SIGTERM leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hubproc import free_port, free_ports, healthy

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                reason="needs Mosquitto (make test installs it)")


def _left_behind(root: Path) -> str:
    out = subprocess.run(["pgrep", "-af", str(root)], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if "pgrep" not in line)


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children start their own sessions, so walk parent links)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent and child not in found]
        found.update(kids)
        todo.extend(kids)
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def _stores(hq: str) -> dict[str, dict[str, object]]:
    token = httpx.post(f"{hq}/hq/v1/auth/login", json={"username": "hq", "password": "hq-demo"}, timeout=10)
    listed = httpx.get(f"{hq}/hq/v1/stores", headers={"Authorization": f"Bearer {token.json()['token']}"}, timeout=10)
    assert listed.status_code == 200, listed.text
    return {s["store_id"]: s for s in listed.json()["stores"]}


def test_demo_chain_comes_up_paired_and_stops_with_all_children(tmp_path: Path) -> None:
    root = tmp_path / "chain"
    hq_port, port, mqtt = free_port(), free_ports(2), free_ports(4)
    env = dict(os.environ, BACKROOM_CHAIN_DATA=str(root), BACKROOM_HQ_PORT=str(hq_port), BACKROOM_PORT=str(port),
               BACKROOM_MQTT_PORT=str(mqtt), BACKROOM_DATA=str(tmp_path / "not-used"), BACKROOM_STORE="demo-001")
    env.pop("BACKROOM_DEVICES", None)  # the chain runs its devices
    log_path = tmp_path / "chain.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "edge.run_chain"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    hq = f"http://127.0.0.1:{hq_port}"
    started: set[int] = set()
    try:
        assert healthy(proc, hq, 90), f"HQ did not come up (runner exit {proc.poll()}):\n{log_path.read_text()}"
        for store_port in (port, port + 1):
            assert healthy(proc, f"http://127.0.0.1:{store_port}", 90), log_path.read_text("utf-8", "replace")
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in log_path.read_text("utf-8", "replace") and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text("utf-8", "replace")
            time.sleep(0.3)
        banner = log_path.read_text("utf-8", "replace")
        stores = _stores(hq)
        assert stores["demo-001"]["paired"] is True and stores["demo-002"]["paired"] is True, stores
        assert f":{hq_port}/hq/ui" in banner
        assert f":{port}/ui" in banner and f":{port + 1}/ui" in banner
        assert "hq / hq-demo" in banner and "region-east / region-demo" in banner
        for n, store in enumerate(("demo-001", "demo-002")):
            health = httpx.get(f"http://127.0.0.1:{port + n}/healthz", timeout=10).json()
            assert health["store_id"] == store
            assert (root / store / "hub.sqlite3").exists()
        assert not (tmp_path / "not-used").exists()  # make's BACKROOM_DATA does not leak into the chain
        started = _descendants(proc.pid)
        # HQ, two hubs, and a simulator and a bridge per device of each store (and the hubs' Mosquittos)
        assert len(started) >= 3 + 2 * 2 * 4, started
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0, log_path.read_text("utf-8", "replace")
    deadline = time.monotonic() + 10
    while (_alive(started) or _left_behind(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _alive(started) == set()
    assert _left_behind(root) == ""
    assert "[chain] stopped" in log_path.read_text("utf-8", "replace")
