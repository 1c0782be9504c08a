"""The hub's device link end to end: a real `backroom serve` with its own Mosquitto, real simulators and bridges.

One hub for the module (devices on, mDNS on), every till paired with `printer-1` (printer and drawer):
an Epson TM-T20III simulator on TCP and a Mettler Toledo 8217 simulator on a pty, each behind its
`backroom devices bridge` with the credentials `backroom devices add` printed. Tills talk to the hub
over HTTP only.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_devices_support import REPO, Output, device_rig
from zeroconf import ServiceBrowser as ZeroconfBrowser
from zeroconf import ServiceInfo, ServiceStateChange, Zeroconf

from devices import broker, discovery

CONFIG = """
[tills."*"]
printer = "printer-1"
drawer = "printer-1"
"""
INTERFACE = broker.lan_address()


@dataclass
class Store:
    data: Path
    url: str
    port: int
    mqtt_port: int
    hub: subprocess.Popen[bytes]
    printer: Output
    scale: subprocess.Popen[str]
    log: Path

    def login(self, username: str = "cashier", till_id: str = "T1") -> httpx.Client:
        body = {"username": username, "password": username + "-demo"} if username in ("manager", "region") \
            else {"username": username, "pin": {"cashier": "1234", "guide": "5678"}[username], "till_id": till_id}
        resp = httpx.post(f"{self.url}/api/v1/auth/login", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        return httpx.Client(base_url=self.url, timeout=15, headers={"Authorization": f"Bearer {resp.json()['token']}"})


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with device_rig(tmp_path_factory.mktemp("devicelink"), CONFIG) as rig:
        yield Store(rig.data, rig.url, int(rig.url.rsplit(":", 1)[1]), rig.mqtt_port, rig.hub, rig.printer, rig.scale,
                    rig.log)


def _wait(ready: Any, timeout_s: float, explain: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {timeout_s} s\n{explain()}")
        time.sleep(0.05)


def _devices(client: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = client.get("/api/v1/devices")
    assert resp.status_code == 200, resp.text
    return {d["device_id"]: d for d in resp.json()["devices"]}


def _online(store: Store, *device_ids: str) -> None:
    with store.login("manager") as client:
        _wait(lambda: all(_devices(client).get(d, {}).get("status") == "online" for d in device_ids), 15,
              lambda: _devices(client))


class Events:
    """A till following a device over Server-Sent Events (`GET /api/v1/devices/{id}/stream`)."""

    def __init__(self, client: httpx.Client, device_id: str) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.response = client.send(client.build_request("GET", f"/api/v1/devices/{device_id}/stream"), stream=True)
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event, data = "message", ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    data = line.partition(":")[2].strip()
                elif line == "" and data:
                    self.events.put((event, json.loads(data)))
                    event, data = "message", ""
        except httpx.HTTPError:
            pass

    def next(self, match: Any, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                event, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            seen.append((event, data))
            if match(event, data):
                return data  # type: ignore[no-any-return]
        raise AssertionError(f"no matching event within {timeout_s} s; saw {seen}")

    def close(self) -> None:
        self.response.close()


def _scale(store: Store, line: str) -> None:
    assert store.scale.stdin is not None
    store.scale.stdin.write(line + "\n")
    store.scale.stdin.flush()


# -- the tests -------------------------------------------------------------------------------------------

def test_the_device_list_shows_registered_devices_online_with_their_models(store: Store) -> None:
    _online(store, "printer-1", "scale-1")
    with store.login("guide") as guide:  # every store role may look
        _wait(lambda: _devices(guide)["scale-1"]["weight"] is not None, 10)  # the bridge's first poll
        devices = _devices(guide)
        pairing = guide.get("/api/v1/tills/T7/devices").json()
    assert pairing == {"till_id": "T7", "printer": "printer-1", "drawer": "printer-1", "display": None, "scale": None,
                       "scanner": None}  # every till has the "*" pairing of this hub's config
    assert sorted(devices) == ["printer-1", "scale-1"]
    printer, scale = devices["printer-1"], devices["scale-1"]
    assert {k: printer[k] for k in ("profile", "kind", "vendor", "status", "weight", "scan")} == {
        "profile": "epson-tm-t20iii", "kind": "printer", "vendor": "Epson", "status": "online", "weight": None,
        "scan": None}
    assert {"print", "cut", "kick", "status"} <= set(printer["capabilities"])
    assert (scale["profile"], scale["kind"], scale["status"]) == ("mettler-toledo-8217", "scale", "online")
    assert scale["weight"]["state"] == "ok" and scale["weight"]["grams"] == 0


def test_a_cash_sale_prints_its_receipt_and_kicks_the_drawer(store: Store) -> None:
    _online(store, "printer-1")
    sale_id = str(uuid.uuid4())
    with store.login() as till:
        resp = till.post("/api/v1/sales", json={
            "sale_id": sale_id, "till_id": "T1", "member_id": "M000001",
            "lines": [{"barcode": "2112345015002"}, {"sku": "SKU00011", "qty": 2}],
            "tenders": [{"method": "cash", "amount": 5000}]})
    assert resp.status_code == 201, resp.text
    sale = resp.json()
    assert (sale["total"], sale["change"]) == (3939, 1061)
    pages = [store.printer.page(timeout=15)]
    while sale["receipt_no"] not in pages[-1]:
        pages.append(store.printer.page(timeout=15))
    # The kick (ESC p) goes first: a page of its own, or the first line of the receipt when both came in one read.
    assert "[DRAWER 2]" in "\n".join(pages)
    receipt = pages[-1].splitlines()
    assert f"小票 Receipt                    {sale['receipt_no']}" in receipt
    assert "合计 TOTAL                                 39.39" in receipt
    assert "现金 Cash                                  50.00" in receipt
    assert "找零 Change                                10.61" in receipt
    assert "积分 Points                           5078 (+78)" in receipt
    assert receipt[-2:] == [f"[QR {sale_id}]", "[PARTIAL CUT]"]  # GS V: cut


def test_a_card_sale_prints_without_opening_the_drawer_and_a_replay_prints_nothing(store: Store) -> None:
    body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00011", "qty": 1}],
            "tenders": [{"method": "card", "amount": 990, "reference": "POS-1"}]}
    with store.login() as till:
        first = till.post("/api/v1/sales", json=body)
        assert first.status_code == 201, first.text
        page = store.printer.page(timeout=15)
        assert first.json()["receipt_no"] in page and "[DRAWER" not in page
        assert "银行卡 Card                                 9.90" in page.splitlines()
        again = till.post("/api/v1/sales", json=body)
    assert (again.status_code, again.json()) == (201, first.json())
    with pytest.raises(AssertionError):
        store.printer.page(timeout=1.5)  # the retry committed nothing and printed nothing


def test_a_till_prints_a_receipt_again_by_sale_id_over_http(store: Store) -> None:
    with store.login() as till:
        sale = till.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00011", "qty": 1}],
            "tenders": [{"method": "wechat", "amount": 990}]}).json()
        store.printer.page(timeout=15)
        cmd_id = str(uuid.uuid4())
        resp = till.post("/api/v1/devices/printer-1/cmd/print", json={"cmd_id": cmd_id, "sale_id": sale["sale_id"]})
        assert (resp.status_code, resp.json()) == (200, {"cmd_id": cmd_id, "ok": True})
        assert sale["receipt_no"] in store.printer.page(timeout=15)
        kick = till.post("/api/v1/devices/printer-1/cmd/kick", json={})
    assert kick.status_code == 200 and kick.json()["ok"] is True
    uuid.UUID(kick.json()["cmd_id"])  # the hub made one up
    assert store.printer.page(timeout=15) == "[DRAWER 2]"


def test_the_stream_follows_the_scale_and_a_tare_round_trips_with_its_result(store: Store) -> None:
    _online(store, "scale-1")
    with store.login() as till:
        stream = Events(till, "scale-1")
        try:
            assert stream.next(lambda e, d: e == "status") == "online"  # the current status comes first
            _scale(store, "weight 1234")
            assert stream.next(lambda e, d: e == "weight" and d["state"] == "motion")["grams"] is None
            settled = stream.next(lambda e, d: e == "weight" and d["stable"])
            assert {k: settled[k] for k in ("grams", "stable", "state")} == {"grams": 1234, "stable": True,
                                                                             "state": "ok"}
            cmd_id = str(uuid.uuid4())
            resp = till.post("/api/v1/devices/scale-1/cmd/tare", json={"cmd_id": cmd_id})
            assert (resp.status_code, resp.json()) == (200, {"cmd_id": cmd_id, "ok": True})
            tared = stream.next(lambda e, d: e == "weight" and d["stable"])
            assert (tared["grams"], tared["state"]) == (0, "ok")  # the scale took the tare
            again = till.post("/api/v1/devices/scale-1/cmd/tare", json={"cmd_id": cmd_id})
            assert again.json() == {"cmd_id": cmd_id, "ok": True}  # a retried cmd_id: the first result, no new tare
        finally:
            stream.close()
    with store.login("manager") as manager:
        assert _devices(manager)["scale-1"]["weight"]["grams"] == 0


def test_commands_are_refused_for_unknown_devices_and_actions_and_time_out_without_a_bridge(store: Store) -> None:
    _cli("devices", "add", "--device-id", "scale-2", "--profile", "mettler-toledo-8217", "--data", str(store.data))
    with store.login() as till, store.login("guide") as guide:
        assert till.post("/api/v1/devices/nope/cmd/kick", json={}).json()["code"] == "unknown_device"
        refused = till.post("/api/v1/devices/printer-1/cmd/tare", json={})
        assert (refused.status_code, refused.json()["code"]) == (422, "unsupported_action")
        assert till.post("/api/v1/devices/printer-1/cmd/explode", json={}).status_code == 422
        bad = till.post("/api/v1/devices/printer-1/cmd/kick", json={"pin": 3})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_field")
        assert till.post("/api/v1/devices/printer-1/cmd/print", json={"sale_id": str(uuid.uuid4())}).status_code \
            == 404
        assert guide.post("/api/v1/devices/scale-1/cmd/tare", json={}).status_code == 403
        started = time.monotonic()
        silent = till.post("/api/v1/devices/scale-2/cmd/zero", json={"cmd_id": "z-1"})
    assert (silent.status_code, silent.json()["code"], silent.json()["cmd_id"]) == (504, "device_timeout", "z-1")
    assert 4.5 < time.monotonic() - started < 8


def test_a_manager_rotates_a_devices_credentials(store: Store) -> None:
    with store.login() as till:
        assert till.post("/api/v1/devices/scale-2/rotate").status_code == 403
    with store.login("manager") as manager:
        resp = manager.post("/api/v1/devices/scale-2/rotate")
        assert manager.post("/api/v1/devices/nope/rotate").status_code == 404
    assert resp.status_code == 200, resp.text
    creds = resp.json()
    assert (creds["device_id"], creds["username"], creds["profile"]) == ("scale-2", "dev-scale-2",
                                                                         "mettler-toledo-8217")
    assert creds["mqtt_url"].endswith(f":{store.mqtt_port}")
    record = next(r for r in broker.devices(store.data) if r.device_id == "scale-2")
    assert broker.verify_password(creds["password"], record.password_hash)


def test_the_hub_advertises_itself_on_mdns_with_its_ports(store: Store) -> None:
    found: dict[str, ServiceInfo] = {}
    zc = Zeroconf(interfaces=[INTERFACE])

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is not None and info.port in (store.port, store.mqtt_port):
                found[service_type] = info

    browser = ZeroconfBrowser(zc, [discovery.HUB_SERVICE, discovery.MQTT_SERVICE], handlers=[changed])
    try:
        _wait(lambda: len(found) == 2, 15, lambda: found)
    finally:
        browser.cancel()
        zc.close()
    assert found[discovery.HUB_SERVICE].port == store.port
    assert found[discovery.HUB_SERVICE].properties == {b"store": b"demo-001", b"api": b"/api/v1",
                                                        b"mqtt": str(store.mqtt_port).encode()}
    assert found[discovery.MQTT_SERVICE].port == store.mqtt_port


def test_a_device_announced_on_mdns_is_pending_until_a_manager_approves_it(store: Store) -> None:
    name = f"Scale {uuid.uuid4().hex[:8]}.{discovery.DEVICE_SERVICE}"
    announced = ServiceInfo(discovery.DEVICE_SERVICE, name, addresses=[socket.inet_aton(INTERFACE)], port=4001,
                            server="scale-test.local.", properties={"profile": "cas-pd-ii", "device_id": "scale-9"})
    zc = Zeroconf(interfaces=[INTERFACE])
    zc.register_service(announced)
    try:
        with store.login("manager") as manager, store.login() as till:
            assert till.get("/api/v1/devices/pending").status_code == 403
            _wait(lambda: name in [p["name"] for p in manager.get("/api/v1/devices/pending").json()["pending"]], 15)
            pending = next(p for p in manager.get("/api/v1/devices/pending").json()["pending"] if p["name"] == name)
            assert (pending["service_type"], pending["port"], pending["properties"]) == (
                discovery.DEVICE_SERVICE, 4001, {"profile": "cas-pd-ii", "device_id": "scale-9"})
            approved = manager.post(f"/api/v1/devices/pending/{name}/approve", json={})
            assert approved.status_code == 201, approved.text
            assert {k: approved.json()[k] for k in ("device_id", "username", "profile")} == {
                "device_id": "scale-9", "username": "dev-scale-9", "profile": "cas-pd-ii"}
            assert name not in [p["name"] for p in manager.get("/api/v1/devices/pending").json()["pending"]]
            assert _devices(manager)["scale-9"]["status"] == "unknown"  # registered; its bridge never came
            again = manager.post(f"/api/v1/devices/pending/{name}/approve", json={})
            assert (again.status_code, again.json()["code"]) == (404, "unknown_pending")
    finally:
        zc.unregister_service(announced)
        zc.close()


def test_stopping_the_hub_stops_its_broker(store: Store) -> None:
    pid = broker.running_pid(store.data)
    assert pid is not None
    store.hub.send_signal(signal.SIGTERM)
    assert store.hub.wait(15) == -signal.SIGTERM  # uvicorn re-raises the signal after its graceful shutdown
    assert "Application shutdown complete." in store.log.read_text()
    assert broker.running_pid(store.data) is None
    assert not Path(f"/proc/{pid}").exists()
