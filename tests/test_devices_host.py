"""`backroom devices host`: every attached device's bridge in one process, against a real Mosquitto.

A scale and a scanner (simulators on ptys) and a third device on a pty that never answers run in
one host process; the silent port must not hold up the scanner's scans or the scale's weights.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import tty
from collections.abc import Iterator
from typing import Any

import pytest
from test_devices_support import (
    ROOT,
    Output,
    RunningBroker,
    cli,
    mosquitto,
    observer,
    spawn,
    stop,
)

from devices import host

__all__ = ["mosquitto"]


def wait_status(client: Any, device_id: str, value: str, timeout: float = 15.0) -> None:
    topic = f"{ROOT}/dev/{device_id}/status"
    client.next(lambda t, p: t == topic and p == f'"{value}"'.encode(), timeout)


def wait_all(client: Any, wanted: set[tuple[str, bytes | None]], timeout: float = 20.0) -> None:
    """Until every (topic, payload) in `wanted` was seen, in any order (payload None: any)."""
    left = set(wanted)

    def seen(topic: str, payload: bytes) -> bool:
        left.discard((topic, None))
        left.discard((topic, payload))
        return not left

    client.next(seen, timeout=timeout)


@pytest.fixture(scope="module")
def rig(mosquitto: RunningBroker) -> Iterator[dict[str, Any]]:
    """Simulated scale and scanner, a silent pty, all three attached; the host process running them."""
    data = mosquitto.data_dir
    started: list[subprocess.Popen[str]] = []
    master, slave = os.openpty()  # nobody ever reads or answers on this one
    tty.setraw(slave)
    silent_path = os.ttyname(slave)
    try:
        scale = spawn("devices", "simulate", "--profile", "mettler-toledo-8217", stdin=True)
        started.append(scale)
        scale_path = Output(scale).line()
        scanner = spawn("devices", "simulate", "--profile", "generic-serial-scanner", stdin=True)
        started.append(scanner)
        scanner_path = Output(scanner).line()
        for device_id, profile, port in (("scale-1", "mettler-toledo-8217", scale_path),
                                         ("scanner-1", "generic-serial-scanner", scanner_path),
                                         ("stuck-1", "mettler-toledo-8217", silent_path)):
            mosquitto.add(device_id, profile)
            done = cli("devices", "attach", "--device-id", device_id, "--port", port, "--data", str(data))
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["port"] == port
        watcher = observer(mosquitto)
        proc = spawn("devices", "host", "--data", str(data))
        started.append(proc)
        first = json.loads(Output(proc).line())
        yield {"watcher": watcher, "host": proc, "first": first, "scale": scale, "scanner": scanner, "data": data}
        watcher.close()
    finally:
        for proc in reversed(started):
            stop(proc)
        os.close(master)
        os.close(slave)


def test_attach_keeps_the_hosts_credentials_private_and_refuses_unknown_devices(
        rig: dict[str, Any]) -> None:
    data = rig["data"]
    path = host.config_path(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # device passwords in it
    config = host.load_config(data)
    assert sorted(config.devices) == ["scale-1", "scanner-1", "stuck-1"]
    assert all(d.password and d.username == f"dev-{d.device_id}" for d in config.devices.values())
    done = cli("devices", "attach", "--device-id", "never-added", "--port", "/dev/null", "--data", str(data))
    assert done.returncode == 2 and "devices add" in done.stderr
    assert cli("devices", "detach", "--device-id", "never-added", "--data", str(data)).returncode == 2


def test_one_process_serves_every_device_and_a_silent_port_stalls_none(rig: dict[str, Any]) -> None:
    watcher, first = rig["watcher"], rig["first"]
    assert first["pid"] == rig["host"].pid
    assert sorted(first["devices"]) == ["scale-1", "scanner-1", "stuck-1"]
    # In any order: every device's birth, the two simulators online, the silent one offline (3 polls unanswered).
    wait_all(watcher, {(f"{ROOT}/dev/{d}/birth", None) for d in ("scale-1", "scanner-1", "stuck-1")}
             | {(f"{ROOT}/dev/scale-1/status", b'"online"'), (f"{ROOT}/dev/scanner-1/status", b'"online"'),
                (f"{ROOT}/dev/stuck-1/status", b'"offline"')})

    # While stuck-1's thread keeps waiting on its silent port, the others go on.
    scanner, scale = rig["scanner"], rig["scale"]
    for code in ("6901234567892", "2112345015002"):
        scanner.stdin.write(f"scan {code}\n")
        scanner.stdin.flush()
        scan = watcher.topic(f"{ROOT}/dev/scanner-1/data/scan")
        assert scan["code"] == code
    scale.stdin.write("weight 1500\n")
    scale.stdin.flush()
    weight = watcher.next(lambda t, p: t == f"{ROOT}/dev/scale-1/data/weight" and b'"grams":1500' in p)[1]
    assert weight["stable"] is True


def test_sighup_stops_a_detached_device_and_starts_one_attached_again(rig: dict[str, Any]) -> None:
    watcher, proc, data = rig["watcher"], rig["host"], rig["data"]
    port = host.load_config(data).devices["scanner-1"].port
    assert cli("devices", "detach", "--device-id", "scanner-1", "--data", str(data)).returncode == 0
    proc.send_signal(signal.SIGHUP)
    wait_status(watcher, "scanner-1", "offline")
    done = cli("devices", "attach", "--device-id", "scanner-1", "--port", port, "--data", str(data))
    assert done.returncode == 0, done.stderr
    proc.send_signal(signal.SIGHUP)
    wait_status(watcher, "scanner-1", "online")
    rig["scanner"].stdin.write("scan 6901234567892\n")
    rig["scanner"].stdin.flush()
    assert watcher.topic(f"{ROOT}/dev/scanner-1/data/scan")["code"] == "6901234567892"
    assert proc.poll() is None


def test_sigterm_stops_every_bridge_with_offline_even_with_a_stuck_port(rig: dict[str, Any]) -> None:
    watcher, proc = rig["watcher"], rig["host"]
    proc.send_signal(signal.SIGTERM)
    wait_all(watcher, {(f"{ROOT}/dev/scanner-1/status", b'"offline"'), (f"{ROOT}/dev/scale-1/status", b'"offline"')})
    assert proc.wait(15) == 0
