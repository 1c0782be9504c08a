"""Shared by the device tests (it holds no tests): a real Mosquitto, MQTT clients, CLI subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hubproc import free_port, serve_with_devices, stop_with_devices  # one free_port for every module
from paho.mqtt.enums import CallbackAPIVersion

from devices import broker

REPO = Path(__file__).resolve().parent.parent
STORE = "demo-001"
ROOT = f"backroom/v1/{STORE}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def spawn(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=REPO, text=True, bufsize=1,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


class Output:
    """A subprocess's stdout, line by line, read by a thread (select() cannot see Python's buffer)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = 15.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            raise AssertionError(f"no output from {self.proc.args} within {timeout} s {stderr}") from None

    def page(self, timeout: float = 10.0) -> str:
        """The next page a printer simulator printed (between `--- printer ---` and `--- end ---`)."""
        deadline = time.monotonic() + timeout
        while self.line(max(0.01, deadline - time.monotonic())) != "--- printer ---":
            pass
        lines = []
        while (line := self.line(max(0.01, deadline - time.monotonic()))) != "--- end ---":
            lines.append(line)
        return "\n".join(lines)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cli_ok(*args: str) -> str:
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bridge(data: Path, device_id: str, profile: str, port: str, mqtt_port: int) -> subprocess.Popen[bytes]:
    """`backroom devices bridge` for a device registered here with `backroom devices add`; its log beside the data."""
    creds = json.loads(_cli_ok("devices", "add", "--device-id", device_id, "--profile", profile, "--data", str(data)))
    env = {**os.environ, "BACKROOM_MQTT_URL": f"mqtt://{creds['username']}:{creds['password']}@127.0.0.1:{mqtt_port}"}
    with (data.parent / f"bridge-{device_id}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "devices", "bridge", "--profile", profile, "--port",
                                 port, "--device-id", device_id, "--store", STORE], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


@dataclass
class Rig:
    """A demo hub with devices on, `printer-1` (an Epson TM-T20III simulator on TCP) and `scale-1` (a Mettler
    Toledo 8217 simulator on a pty, driven through `scale`'s stdin), each behind its bridge."""

    data: Path
    url: str
    mqtt_port: int
    hub: subprocess.Popen[bytes]
    printer: Output
    scale: subprocess.Popen[str]
    log: Path


@contextlib.contextmanager
def device_rig(root: Path, config: str) -> Iterator[Rig]:
    """The rig in `root`, with `config` as its hub.toml; everything it started is stopped on exit."""
    data = root / "data"
    _cli_ok("seed", "--demo", "--data", str(data))
    (root / "hub.toml").write_text(config, "utf-8")
    log = root / "serve.log"
    hub, url, mqtt_port = serve_with_devices(data, log, root / "hub.toml")
    started: list[subprocess.Popen[Any]] = []
    try:
        printer_sim = spawn("devices", "simulate", "--profile", "epson-tm-t20iii", "--tcp", "0")
        started.append(printer_sim)
        printer = Output(printer_sim)
        address = printer.line()
        scale_sim = spawn("devices", "simulate", "--profile", "mettler-toledo-8217", stdin=True)
        started.append(scale_sim)
        pty = Output(scale_sim).line()
        started.append(bridge(data, "printer-1", "epson-tm-t20iii", f"tcp://{address}", mqtt_port))
        started.append(bridge(data, "scale-1", "mettler-toledo-8217", pty, mqtt_port))
        yield Rig(data, url, mqtt_port, hub, printer, scale_sim, log)
    finally:
        for proc in reversed(started):
            stop(proc)
        stop_with_devices(hub, data)


@dataclass
class RunningBroker:
    data_dir: Path
    settings: broker.Settings
    broker: broker.Broker

    def add(self, device_id: str, profile: str = "mettler-toledo-8217") -> broker.Credentials:
        return broker.add_device(self.data_dir, device_id, profile)

    def url(self, creds: broker.Credentials) -> str:
        return f"mqtt://{creds.username}:{creds.password}@127.0.0.1:{self.settings.lan_port}"


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """A real Mosquitto on free ports, configured by devices.broker, one per test module."""
    data_dir = tmp_path_factory.mktemp("hubdata")
    settings = broker.Settings(store_id=STORE, lan_port=free_port(), local_port=free_port(), lan_bind="127.0.0.1",
                               advertise_host="127.0.0.1")
    running = broker.Broker(data_dir, settings, log_path=data_dir / "mosquitto.log").start()
    yield RunningBroker(data_dir, settings, running)
    running.stop()


class Client:
    """A paho client that records every message; MQTT v5 so refused publishes come back as reason codes."""

    def __init__(self, username: str, password: str, port: int, client_id: str = "") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self.connack: mqtt.ReasonCode | None = None  # type: ignore[name-defined]
        self.pubacks: dict[int, Any] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload), bool(m.retain)))
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc)
        self._connected = False
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while self.connack is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack = reason
        if reason.is_failure:
            client.disconnect()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        done: list[Any] = []
        self.client.on_subscribe = lambda c, u, mid, codes, props: done.append(codes)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done, f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: Any, retain: bool = False) -> str:
        """Publish at QoS 1: 'Success' when the broker took it (with or without subscribers), else its reason."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, body, qos=1, retain=retain)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        reason = self.pubacks.get(info.mid)
        if reason is None:
            return "no PUBACK"
        return str(reason) if reason.is_failure else "Success"

    def next(self, match: Callable[[str, bytes], bool], timeout: float = 10.0) -> tuple[str, Any]:
        """The next message (in arrival order) whose topic and payload satisfy `match`, decoded."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout} s; saw {self.seen[-20:]}")
            try:
                topic, payload, retain = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((topic, payload, retain))
            if match(topic, payload):
                return topic, json.loads(payload)

    def topic(self, topic: str, timeout: float = 10.0) -> Any:
        return self.next(lambda t, p: t == topic, timeout)[1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def observer(env: RunningBroker) -> Client:
    creds = broker.observer_credentials(env.data_dir)
    client = Client(creds.username, creds.password, env.settings.lan_port)
    assert client.accepted, client.connack
    client.subscribe(f"{ROOT}/#")
    return client


def hub_client(env: RunningBroker) -> Client:
    creds = broker.hub_credentials(env.data_dir)
    client = Client(creds.username, creds.password, env.settings.local_port)
    assert client.accepted, client.connack
    return client
