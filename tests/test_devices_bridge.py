"""Bridges against a real Mosquitto: simulated devices on a pty and on TCP, readings out, commands in."""

from __future__ import annotations

import os
import select
import statistics
import threading
import time
import tty
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from test_devices_support import (
    ROOT,
    Client,
    Output,
    RunningBroker,
    free_port,
    hub_client,
    mosquitto,
    observer,
    spawn,
    stop,
)

from devices import broker, profiles
from devices.bridge import Bridge, MqttTarget

__all__ = ["mosquitto"]


@pytest.fixture
def scale(mosquitto: RunningBroker) -> Iterator[tuple[Any, Any, str]]:
    """A simulated 8217 on a pty and its bridge (both `backroom` subprocesses), with the device's own credentials."""
    creds = mosquitto.add("scale-1", "mettler-toledo-8217")
    sim = spawn("devices", "simulate", "--profile", "mettler-toledo-8217", stdin=True)
    path = Output(sim).line()
    assert path.startswith("/dev/pts/")
    bridge = spawn("devices", "bridge", "--profile", "mettler-toledo-8217", "--port", path, "--device-id", "scale-1",
                   "--mqtt", mosquitto.url(creds), "--store", "demo-001")
    yield sim, bridge, path
    stop(bridge)
    stop(sim)


def weights(client: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    topic = f"{ROOT}/dev/scale-1/data/weight"
    return [client.topic(topic, timeout) for _ in range(count)]


RECEIPT = {
    "store_name": "Demo 001", "receipt_no": "DEMO001-00000042", "sale_id": "6c1d7c4e-1b7e-4e0b-9d4e-2a3c4d5e6f70",
    "at": "2025-01-01T10:00:00+08:00", "till_id": "T1", "cashier": "cashier",
    "lines": [{"name": "富士苹果 Fuji apples", "weight_g": 1500, "unit_price": 1598, "gross": 2397, "discount": 240,
               "net": 2157, "applied": ["会员9折"]},
              {"name": "Milk 1L", "qty": 2, "unit_price": 1250, "gross": 2500, "net": 2500}],
    "subtotal": 4897, "discount": 240, "total": 4657, "tenders": [{"method": "cash", "amount": 5000}],
    "change": 343, "journal_hash": "3f9a2c1b77aa",
}


def wait_status(client: Client, device_id: str, value: str, timeout: float = 10.0) -> None:
    """Skip retained statuses of earlier bridges: wait for this value."""
    topic = f"{ROOT}/dev/{device_id}/status"
    client.next(lambda t, p: t == topic and p == f'"{value}"'.encode(), timeout)


def until_state(client: Client, state: str) -> list[dict[str, Any]]:
    seen = weights(client, 1)
    while seen[-1]["state"] != state and len(seen) < 10:
        seen += weights(client, 1)
    return seen


def test_a_simulated_8217_reaches_a_subscriber_with_grams_and_states(mosquitto: RunningBroker,
                                                                     scale: tuple[Any, Any, str]) -> None:
    sim, bridge, _ = scale
    watcher = observer(mosquitto)
    base = f"{ROOT}/dev/scale-1"
    birth = watcher.topic(f"{base}/birth")
    assert {k: birth[k] for k in ("device_id", "kind", "profile", "vendor", "capabilities")} == {
        "device_id": "scale-1", "kind": "scale", "profile": "mettler-toledo-8217", "vendor": "Mettler Toledo",
        "capabilities": ["weigh", "tare", "zero", "clear_tare"]}
    wait_status(watcher, "scale-1", "online")
    empty = watcher.topic(f"{base}/data/weight")
    assert {k: empty[k] for k in ("grams", "stable", "state")} == {"grams": 0, "stable": True, "state": "ok"}

    sim.stdin.write("weight 1234\n")
    sim.stdin.flush()
    moving, settled = weights(watcher, 2)
    assert {k: moving[k] for k in ("grams", "stable", "state")} == {"grams": None, "stable": False, "state": "motion"}
    assert {k: settled[k] for k in ("grams", "stable", "state")} == {"grams": 1234, "stable": True, "state": "ok"}
    assert settled["seq"] > moving["seq"] > empty["seq"]
    assert datetime.fromisoformat(settled["ts"]).utcoffset() is not None

    sim.stdin.write("overload\n")
    sim.stdin.flush()
    over = until_state(watcher, "overload")
    assert {w["state"] for w in over[:-1]} <= {"motion"}
    assert {k: over[-1][k] for k in ("grams", "stable")} == {"grams": None, "stable": False}
    sim.stdin.write("underload\n")
    sim.stdin.flush()
    under = weights(watcher, 1)[0]
    assert {k: under[k] for k in ("grams", "stable", "state")} == {"grams": None, "stable": False,
                                                                   "state": "underload"}
    watcher.close()


def test_a_command_round_trips_with_its_result(mosquitto: RunningBroker, scale: tuple[Any, Any, str]) -> None:
    watcher = observer(mosquitto)
    base = f"{ROOT}/dev/scale-1"
    wait_status(watcher, "scale-1", "online")
    hub = hub_client(mosquitto)
    hub.publish(f"{base}/cmd/tare", {"cmd_id": "0b3c6b52-0000-4000-8000-000000000001"})
    assert watcher.topic(f"{base}/cmd/tare/result") == {"cmd_id": "0b3c6b52-0000-4000-8000-000000000001", "ok": True}
    hub.publish(f"{base}/cmd/print", {"cmd_id": "p-1", "lines": ["hello"]})
    assert watcher.topic(f"{base}/cmd/print/result") == {
        "cmd_id": "p-1", "ok": False, "error": "mettler-toledo-8217 cannot print"}
    hub.publish(f"{base}/cmd/display", {"cmd_id": "d-1"})
    result = watcher.topic(f"{base}/cmd/display/result")
    assert result["cmd_id"] == "d-1" and result["ok"] is False and "lines" in result["error"]
    hub.close()
    watcher.close()


def test_the_will_marks_a_dead_bridge_offline(mosquitto: RunningBroker, scale: tuple[Any, Any, str]) -> None:
    _, bridge, _ = scale
    watcher = observer(mosquitto)
    wait_status(watcher, "scale-1", "online")
    bridge.kill()  # no goodbye: only the broker's will can say it
    assert watcher.topic(f"{ROOT}/dev/scale-1/status") == "offline"
    watcher.close()


def test_a_vanished_port_is_reported_and_retried(mosquitto: RunningBroker, scale: tuple[Any, Any, str]) -> None:
    sim, bridge, _ = scale
    watcher = observer(mosquitto)
    wait_status(watcher, "scale-1", "online")
    stop(sim)  # the pty disappears, as a USB adapter pulled out
    assert watcher.topic(f"{ROOT}/dev/scale-1/status") == "offline"
    time.sleep(1.0)
    assert bridge.poll() is None, "the bridge must keep retrying, not exit"
    watcher.close()


def test_polls_and_commands_keep_the_8217s_200_ms_spacing(mosquitto: RunningBroker) -> None:
    """The test is the scale: it answers on the pty's master side and times every command byte."""
    profile = profiles.get("mettler-toledo-8217")
    master, slave = os.openpty()
    tty.setraw(slave)
    hub = broker.hub_credentials(mosquitto.data_dir)
    bridge = Bridge(profile, os.ttyname(slave), "scale-spacing", "demo-001",
                    MqttTarget("127.0.0.1", mosquitto.settings.local_port, hub.username, hub.password))
    watcher = observer(mosquitto)
    commander = hub_client(mosquitto)
    runner = threading.Thread(target=bridge.run, daemon=True)
    runner.start()
    received: list[tuple[float, str]] = []
    deadline = time.monotonic() + 2.5
    sent_tare = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            for byte in os.read(master, 64):
                received.append((time.monotonic(), chr(byte)))
                if byte == ord("W"):
                    os.write(master, b"\x02001.500\r")
        if not sent_tare and len(received) >= 3:
            commander.publish(f"{ROOT}/dev/scale-spacing/cmd/tare", {"cmd_id": "t-1"})
            sent_tare = True
    result = watcher.topic(f"{ROOT}/dev/scale-spacing/cmd/tare/result")
    bridge.stop_event.set()
    runner.join(5)
    os.close(master)
    os.close(slave)
    commander.close()
    watcher.close()
    assert result == {"cmd_id": "t-1", "ok": True}
    commands = "".join(c for _, c in received)
    assert "T" in commands and commands.count("W") >= 6
    gaps = [later - earlier for (earlier, _), (later, _) in zip(received, received[1:], strict=False)]
    # We time each byte when this loop wakes, not when it left the bridge: a wake-up 20 ms late (seen under
    # CI's load) makes one gap look that much longer and the next that much shorter. So every gap must be
    # near 200 ms, and the typical one must be 200 ms; a bridge without spacing sends its bytes ms apart.
    assert min(gaps) >= 0.16, f"commands {commands!r} came {min(gaps):.3f} s apart"
    assert statistics.median(gaps) >= 0.199, f"commands {commands!r} came {statistics.median(gaps):.3f} s apart"


def test_print_jobs_wait_for_an_offline_printer_and_nothing_is_lost(mosquitto: RunningBroker, tmp_path: Any) -> None:
    port = free_port()
    printer = spawn("devices", "simulate", "--profile", "epson-tm-t20iii", "--tcp", str(port))
    output = Output(printer)
    assert output.line() == f"127.0.0.1:{port}"
    creds = mosquitto.add("printer-1", "epson-tm-t20iii")
    bridge = spawn("devices", "bridge", "--profile", "epson-tm-t20iii", "--port", f"tcp://127.0.0.1:{port}",
                   "--device-id", "printer-1", "--mqtt", mosquitto.url(creds), "--store", "demo-001",
                   "--spool", str(tmp_path / "spool"))
    watcher = observer(mosquitto)
    hub = hub_client(mosquitto)
    base = f"{ROOT}/dev/printer-1"
    try:
        wait_status(watcher, "printer-1", "online")
        hub.publish(f"{base}/cmd/print", {"cmd_id": "job-1", "lines": ["TOTAL 12.00", "D001-00000042"]})
        assert watcher.topic(f"{base}/cmd/print/result") == {"cmd_id": "job-1", "ok": True}
        assert output.page() == "TOTAL 12.00\nD001-00000042\n[PARTIAL CUT]"
        hub.publish(f"{base}/cmd/kick", {"cmd_id": "kick-0"})
        assert watcher.topic(f"{base}/cmd/kick/result") == {"cmd_id": "kick-0", "ok": True}
        assert output.page() == "[DRAWER 2]"
        hub.publish(f"{base}/cmd/print", {"cmd_id": "receipt-1", "receipt": RECEIPT})
        assert watcher.topic(f"{base}/cmd/print/result") == {"cmd_id": "receipt-1", "ok": True}
        receipt = output.page().splitlines()
        assert "合计 TOTAL                                 46.57" in receipt
        assert "小票 Receipt                    DEMO001-00000042" in receipt
        assert receipt[-2:] == [f"[QR {RECEIPT['sale_id']}]", "[PARTIAL CUT]"]

        stop(printer)  # unplugged
        assert watcher.topic(f"{base}/status") == "offline"
        hub.publish(f"{base}/cmd/print", {"cmd_id": "job-2", "lines": ["while it was away"]})
        hub.publish(f"{base}/cmd/kick", {"cmd_id": "kick-1"})
        assert watcher.topic(f"{base}/cmd/kick/result") == {"cmd_id": "kick-1", "ok": False,
                                                            "error": "device offline"}
        assert [p for t, p, _ in watcher.seen if t.endswith("print/result") and b"job-2" in p] == []

        printer = spawn("devices", "simulate", "--profile", "epson-tm-t20iii", "--tcp", str(port))
        output = Output(printer)
        assert output.line() == f"127.0.0.1:{port}"
        wait_status(watcher, "printer-1", "online", timeout=20)
        assert watcher.topic(f"{base}/cmd/print/result") == {"cmd_id": "job-2", "ok": True}
        assert output.page() == "while it was away\n[PARTIAL CUT]"
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        hub.close()
        watcher.close()
        stop(bridge)
        stop(printer)


def test_a_scanner_and_a_display_on_ptys(mosquitto: RunningBroker) -> None:
    started = []
    try:
        outputs = {}
        for device_id, profile in (("scanner-1", "generic-serial-scanner"), ("display-1", "epson-dm-d110")):
            sim = spawn("devices", "simulate", "--profile", profile, stdin=True)
            outputs[device_id] = Output(sim)
            path = outputs[device_id].line()
            creds = mosquitto.add(device_id, profile)
            bridge = spawn("devices", "bridge", "--profile", profile, "--port", path, "--device-id", device_id,
                           "--mqtt", mosquitto.url(creds), "--store", "demo-001")
            started += [sim, bridge]
        watcher = observer(mosquitto)
        hub = hub_client(mosquitto)
        wait_status(watcher, "scanner-1", "online")
        scanner_sim = started[0]
        assert scanner_sim.stdin is not None
        scanner_sim.stdin.write("scan 2112345015002\n")
        scanner_sim.stdin.flush()
        scan = watcher.topic(f"{ROOT}/dev/scanner-1/data/scan")
        assert {k: scan[k] for k in ("code", "symbology")} == {"code": "2112345015002", "symbology": "ean13"}

        wait_status(watcher, "display-1", "online")
        hub.publish(f"{ROOT}/dev/display-1/cmd/display", {"cmd_id": "d-1", "lines": ["Apples 1.500 kg", "23.97"]})
        assert watcher.topic(f"{ROOT}/dev/display-1/cmd/display/result") == {"cmd_id": "d-1", "ok": True}
        screen: list[str] = []
        while screen[-2:] != ["Apples 1.500 kg", "23.97"]:
            screen.append(outputs["display-1"].line(5))
        hub.close()
        watcher.close()
    finally:
        for proc in reversed(started):
            stop(proc)
