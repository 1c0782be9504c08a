"""`make run`'s demo runner: the whole store comes up, serves a sale, and stops with its children.

Runs `python -m edge.run_demo` (what `make run` runs after installing) with a real Mosquitto,
simulators and bridges, and checks that SIGTERM — to the runner, or to its parent `make` —
leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from hubproc import healthy, hub_ports

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                reason="needs Mosquitto (make test installs it)")


def _left_behind(data: Path) -> str:
    out = subprocess.run(["pgrep", "-af", str(data)], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if "pgrep" not in line)


def _demo_env(data: Path) -> tuple[dict[str, str], int]:
    """The runner's environment (its data, HTTP port and MQTT port, all free; `hubproc.hub_ports`) and its HTTP
    port."""
    port, mqtt = hub_ports()
    env = dict(os.environ, BACKROOM_DATA=str(data), BACKROOM_PORT=str(port), BACKROOM_MQTT_PORT=str(mqtt))
    env.pop("BACKROOM_DEVICES", None)  # the demo runs its devices
    return env, port


def _log(path: Path) -> str:
    """The runner's output (the hub's lines in it), to show with a failure."""
    return path.read_text("utf-8", "replace")[-6000:] if path.exists() else "(no log)"


def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    if not healthy(proc, base, 60):
        pytest.fail(f"the demo store did not come up in 60 s (runner exit code {proc.poll()})")


def test_demo_store_sells_prints_and_stops_with_all_children(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env, port = _demo_env(data)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "edge.run_demo"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc)
        token = httpx.post(f"{base}/api/v1/auth/login",
                           json={"username": "cashier", "pin": "1234", "till_id": "T01"}).json()["token"]
        till = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the bridges come up after the hub
            listed = till.get("/api/v1/devices")
            assert listed.status_code == 200, f"{listed.text}\n{_log(tmp_path / 'run.log')}"
            devices = {d["device_id"]: d["status"] for d in listed.json()["devices"]}
            if devices.get("printer-1") == "online" and devices.get("scale-1") == "online":
                break
            time.sleep(0.5)
        assert devices.get("printer-1") == "online", f"{devices}\n{_log(tmp_path / 'run.log')}"
        sale = till.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T01", "lines": [{"barcode": "2112345015002"}],
            "tenders": [{"method": "cash", "amount": 5000}]})
        assert sale.status_code == 201, sale.text
        receipt_no = sale.json()["receipt_no"]
        deadline = time.monotonic() + 15
        printed = ""
        while time.monotonic() < deadline:  # the drawer kick may be logged before the receipt's page
            printed = (tmp_path / "run.log").read_text("utf-8", "replace")
            if receipt_no in printed and "23.97" in printed and "DRAWER" in printed:
                break
            time.sleep(0.3)
        assert receipt_no in printed and "23.97" in printed and "DRAWER" in printed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    time.sleep(1)
    assert _left_behind(data) == ""


def test_sigterm_to_make_alone_stops_the_demo(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env, port = _demo_env(data)
    # A stand-in for make: a parent shell that does not forward signals to the runner.
    parent = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -m edge.run_demo; true"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", parent)
    finally:
        parent.kill()  # the parent dies without a word to its child
        parent.wait(timeout=10)
    deadline = time.monotonic() + 30
    while _left_behind(data) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _left_behind(data) == ""
