"""`backroom doctor` on a box with its devices (docs/appliance-care.md): a real `backroom serve` with its own
Mosquitto, an Epson printer and a Mettler Toledo scale behind their bridges (tests/test_devices_support.py).

- healthy, every check passes and `/healthz` agrees;
- a third device bridged with `devices add`'s `mqtt_url` and its credentials given as options;
- an exchange prints its receipt on the till's printer, as a sale does;
- a device whose bridge stopped fails the devices check; a box whose broker is not running fails the
  broker check; each with its remedy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_devices_support import REPO, Output, Rig, cli, device_rig, spawn, stop

from edge.care.health import CACHE_S

CONFIG = """
[tills."*"]
printer = "printer-1"
drawer = "printer-1"
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with device_rig(tmp_path_factory.mktemp("boxcare"), CONFIG) as running:
        yield running


def _doctor(data: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != "BACKROOM_DEVICES"}  # the box's own setting: devices on
    done = subprocess.run([sys.executable, "-m", "edge.cli", "doctor", "--data", str(data), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, {c["name"]: c for c in report["checks"]}


def _until(ready: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def _login(rig: Rig, body: dict[str, str]) -> httpx.Client:
    resp = httpx.post(f"{rig.url}/api/v1/auth/login", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return httpx.Client(base_url=rig.url, timeout=15, headers={"Authorization": f"Bearer {resp.json()['token']}"})


def _statuses(rig: Rig) -> dict[str, str]:
    with _login(rig, {"username": "manager", "password": "manager-demo"}) as mgr:
        return {d["device_id"]: d["status"] for d in mgr.get("/api/v1/devices").json()["devices"]}


def test_doctor_passes_on_a_healthy_box_and_healthz_agrees(rig: Rig) -> None:
    _until(lambda: _statuses(rig) == {"printer-1": "online", "scale-1": "online"}, 40, "both devices online")
    code, checks = _doctor(rig.data)
    assert code == 0, checks
    assert list(checks) == ["broker", "disk", "database", "clock", "hq", "devices"]
    assert checks["devices"]["detail"] == "2 online"
    assert all(c["remedy"] == "" for c in checks.values())
    # /healthz keeps its components for a few seconds (CACHE_S): an answer from before the devices came online
    # may stand that long
    components = _until(lambda: (lambda c: c if c["devices"]["detail"] == "2 online" else None)(
        httpx.get(f"{rig.url}/healthz", timeout=10).json()["components"]), 3 * CACHE_S, "healthz sees both devices")
    assert {name: c["ok"] for name, c in components.items()} == dict.fromkeys(checks, True)


def test_an_exchange_prints_its_receipt_like_a_sale(rig: Rig) -> None:
    with _login(rig, {"username": "cashier", "pin": "1234", "till_id": "T1"}) as till:
        lines = [{"sku": "SKU00033", "qty": 2}]
        total = till.post("/api/v1/quote", json={"lines": lines}).json()["total"]
        sale = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines,
                                                "tenders": [{"method": "card", "amount": total}]})
        assert sale.status_code == 201, sale.text
        assert sale.json()["receipt_no"] in rig.printer.page(timeout=30)
        exchange = till.post("/api/v1/exchanges", json={
            "exchange_id": str(uuid.uuid4()), "sale_id": sale.json()["sale_id"], "till_id": "T1",
            "return_lines": [{"line_no": 1, "qty": 1}], "lines": [{"sku": "SKU00034", "qty": 1}],
            "tenders": [{"method": "cash", "amount": 2000}]})
        assert exchange.status_code == 201, exchange.text
        new_sale = exchange.json()["sale"]
    # The receipt and the drawer kick (cash): two pages, or one when the kick reaches the printer in the same
    # read as the receipt's first bytes
    pages = [rig.printer.page(timeout=30)]
    while not (any(new_sale["receipt_no"] in p for p in pages) and any("DRAWER" in p for p in pages)):
        pages.append(rig.printer.page(timeout=30))
    receipt = next(p for p in pages if new_sale["receipt_no"] in p)
    assert sale.json()["receipt_no"] not in receipt and len(pages) <= 2


def test_a_bridge_takes_the_credentials_beside_the_printed_mqtt_url_and_doctor_sees_it_go(rig: Rig) -> None:
    creds = json.loads(cli("devices", "add", "--device-id", "scale-2", "--profile", "mettler-toledo-8217",
                           "--data", str(rig.data)).stdout)
    assert set(creds) >= {"device_id", "username", "password", "mqtt_url"} and "@" not in creds["mqtt_url"]
    sim = spawn("devices", "simulate", "--profile", "mettler-toledo-8217", stdin=True)
    bridge = None
    try:
        pty = Output(sim).line()
        bridge = spawn("devices", "bridge", "--profile", "mettler-toledo-8217", "--port", pty, "--device-id",
                       "scale-2", "--store", "demo-001", "--mqtt", creds["mqtt_url"], "--username", creds["username"],
                       "--password", creds["password"])
        _until(lambda: _statuses(rig).get("scale-2") == "online", 40, "scale-2 online through its bridge")
        code, checks = _doctor(rig.data)
        assert code == 0 and checks["devices"]["detail"] == "3 online", checks
        stop(bridge)
        _until(lambda: _statuses(rig).get("scale-2") == "offline", 40, "scale-2 offline once its bridge stopped")
        code, checks = _doctor(rig.data)
        assert code == 1
        assert checks["devices"] == {"name": "devices", "ok": False, "detail": "1 of 3 offline: scale-2",
                                     "remedy": checks["devices"]["remedy"]}
        assert "bridge" in checks["devices"]["remedy"]
        assert all(c["ok"] for name, c in checks.items() if name != "devices")
    finally:
        if bridge is not None:
            stop(bridge)
        stop(sim)
        cli("devices", "remove", "--device-id", "scale-2", "--data", str(rig.data))


def test_doctor_fails_the_broker_check_when_no_broker_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("seed", "--demo", "--data", str(data)).returncode == 0
    configured = cli("mqtt", "config", "--data", str(data), "--port", "1", "--local-port", "2")  # nothing listens
    assert configured.returncode == 0, configured.stderr
    code, checks = _doctor(data)
    assert code == 1
    assert checks["broker"]["ok"] is False and "cannot connect to the broker" in checks["broker"]["detail"]
    assert "restart" in checks["broker"]["remedy"]
    assert checks["devices"]["ok"] is False and checks["database"]["ok"] is True
