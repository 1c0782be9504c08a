"""`backroom bench devices`: frame-to-till latency against the bare broker, and 200 devices' sustained load.

A fresh demo store and a real `backroom serve` with its managed Mosquitto. Four measurements in one run:

1. **Bare round trip**: a publisher with a device's credentials and a till subscriber (the observer
   login), both in this process, through the broker: what MQTT itself costs here.
2. **Scanner frame -> till**: a simulated serial scanner on a pty (in this process, so the moment
   each frame is written is known to the microsecond), its real `backroom devices bridge`, the
   broker, and two tills: an MQTT subscriber and an SSE reader of the hub's
   `/api/v1/devices/scanner-b/stream`. Hub-added latency = frame -> till minus the bare round trip.
3. **Scale frame -> till**: the same with a Mettler Toledo 8217 on a pty (the bridge polls every
   200 ms, so fewer samples: each poll answers a new weight).
4. **Sustained load**: N devices (200 by default), each its own MQTT connection with its own
   registered credentials, publishing weights at 10 messages/s for `--seconds`; delivered
   messages/s at a subscriber, and the CPU of the hub (which subscribes to every reading), of
   Mosquitto and of this process. Then a few seconds flat out, for the headroom.

The last line printed is the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices import broker, profiles, topics
from devices.simulators.base import DeviceSim
from devices.simulators.factory import make_simulator
from devices.simulators.runner import serve_pty

STORE = "demo-001"
ROOT = topics.root(STORE)
RATE_PER_DEVICE = 10.0
WARMUP = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- small measuring tools ------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _self_cpu_s() -> float:
    usage = os.times()
    return usage.user + usage.system


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_pair() -> int:
    """A free port whose successor is free too (the broker's LAN and localhost listeners)."""
    while True:
        port = _free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def _ean13(n: int) -> str:
    body = f"29{n:010d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


class Till:
    """An MQTT subscriber with the observer's read-only login: what a till or a tablet would run."""

    def __init__(self, port: int, username: str, password: str, subscriptions: list[str],
                 on_message: Callable[[str, bytes, float], None]) -> None:
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 0) for t in subscriptions])
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.ready.set()
        self.client.on_message = lambda c, u, m: on_message(m.topic, bytes(m.payload), time.perf_counter())
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.ready.wait(5):
            raise RuntimeError("the till subscriber could not subscribe")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the store under test ---------------------------------------------------------------------------------

class Store:
    def __init__(self, root: Path) -> None:
        from edge.clock import StoreClock
        from edge.seed.demo import seed_demo
        from edge.storage.db import Database

        self.root = root
        self.data = root / "data"
        db = Database(self.data / "hub.sqlite3")
        try:
            db.write_sync(lambda conn: seed_demo(conn, STORE, StoreClock("Asia/Shanghai")))
        finally:
            db.close()
        self.port = _free_port()
        self.mqtt_port = _port_pair()
        (root / "hub.toml").write_text("mdns_enabled = false\n", "utf-8")
        self.children: list[subprocess.Popen[bytes]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
        env["BACKROOM_DEVICES"] = "1"
        self.env = env
        with (root / "serve.log").open("wb") as log:
            self.hub = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "serve", "--data", str(self.data), "--port", str(self.port),
                 "--mqtt-port", str(self.mqtt_port), "--config", str(root / "hub.toml"), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while True:
            if self.hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start:\n{(root / 'serve.log').read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        self.broker_pid = broker.running_pid(self.data)
        if self.broker_pid is None:
            raise RuntimeError(f"the hub runs without its broker:\n{(root / 'serve.log').read_text()[-3000:]}")
        self.observer = broker.observer_credentials(self.data)

    def bridge(self, creds: broker.Credentials, profile: str, port: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "BACKROOM_MQTT_URL": f"mqtt://{quote(creds.username, safe='')}:"
                                                 f"{quote(creds.password, safe='')}@127.0.0.1:{self.mqtt_port}"}
        assert creds.device_id is not None
        with (self.root / f"bridge-{creds.device_id}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "devices", "bridge", "--profile", profile, "--port", port,
                 "--device-id", creds.device_id, "--store", STORE], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env)
        self.children.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        """Before its pty goes: a bridge left retrying would open the next pty that gets the same number."""
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def token(self) -> str:
        resp = httpx.post(f"http://127.0.0.1:{self.port}/api/v1/auth/login",
                          json={"username": "cashier", "pin": "1234", "till_id": "T1"}, timeout=10)
        resp.raise_for_status()
        return str(resp.json()["token"])

    def close(self) -> None:
        for proc in [*self.children, self.hub]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.children, self.hub]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        orphan = broker.running_pid(self.data)
        if orphan is not None:
            os.kill(orphan, signal.SIGTERM)


@contextlib.contextmanager
def _pty_device(sim: DeviceSim) -> Iterator[str]:
    """Serve a simulator on a pty in a thread of this process; yields the pty's path."""
    stop = threading.Event()
    where: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=serve_pty, args=(sim, where.put, stop), kwargs={"log": lambda _: None},
                              daemon=True)
    thread.start()
    try:
        yield where.get(timeout=5)
    finally:
        stop.set()
        thread.join(5)


def _wait_online(store: Store, device_id: str, timeout_s: float = 20.0) -> None:
    online = threading.Event()
    topic = topics.status(STORE, device_id)

    def seen(t: str, payload: bytes, at: float) -> None:
        if t == topic and payload == b'"online"':
            online.set()

    till = Till(store.mqtt_port, store.observer.username, store.observer.password, [topic], seen)
    try:
        if not online.wait(timeout_s):
            raise RuntimeError(f"{device_id}'s bridge did not come online; see {store.root}/bridge-{device_id}.log")
    finally:
        till.close()


# -- 1. the bare broker round trip ---------------------------------------------------------------------------

def bare_round_trip(store: Store, creds: broker.Credentials, samples: int) -> list[float]:
    assert creds.device_id is not None
    topic = topics.data(STORE, creds.device_id, "weight")
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def received(t: str, payload: bytes, at: float) -> None:
        seq = msgspec.json.decode(payload)["seq"]
        if seq in sent and seq >= 0:
            latencies.append((at - sent[seq]) * 1000)
            if len(latencies) >= samples:
                done.set()

    till = Till(store.mqtt_port, store.observer.username, store.observer.password, [topic], received)
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{creds.device_id}", protocol=mqtt.MQTTv5)
    device.username_pw_set(creds.username, creds.password)
    connected = threading.Event()
    device.on_connect = lambda c, u, f, rc, p: connected.set()
    device.connect("127.0.0.1", store.mqtt_port)
    device.loop_start()
    try:
        connected.wait(5)
        for seq in range(-WARMUP, samples):  # negative seqs warm up both connections and are not counted
            body = topics.encode(topics.WeightEvent(seq=seq, ts=topics.now(), grams=1000 + seq, stable=True,
                                                    state="ok"))
            sent[seq] = time.perf_counter()
            device.publish(topic, body, qos=0)
            time.sleep(0.005)
        done.wait(5)
    finally:
        device.disconnect()
        device.loop_stop()
        till.close()
    return latencies


# -- 2. a scanner's frame to the tills -------------------------------------------------------------------------

class TimedScanner:
    """The serial scanner simulator, noting when each frame leaves for the pty."""

    def __init__(self, sim: DeviceSim) -> None:
        self.sim = sim
        self.codes: deque[str] = deque()
        self.sent: dict[str, float] = {}

    def scan(self, code: str) -> None:
        self.codes.append(code)
        self.sim.control(["scan", code])

    def receive(self, data: bytes) -> bytes:
        return self.sim.receive(data)

    def emit(self) -> bytes:
        frame = self.sim.emit()
        if frame and self.codes:
            self.sent[self.codes.popleft()] = time.perf_counter()
        return frame

    def set_state(self, state: Any) -> None:
        self.sim.set_state(state)

    def control(self, words: list[str]) -> str:
        return self.sim.control(words)

    def rendered(self) -> str | None:
        return self.sim.rendered()


def scanner_latency(store: Store, creds: broker.Credentials, seconds: float) -> tuple[list[float], list[float]]:
    scanner = TimedScanner(make_simulator(profiles.get("generic-serial-scanner")))
    mqtt_latency: list[float] = []
    sse_latency: list[float] = []
    topic = topics.data(STORE, "scanner-b", "scan")

    def received(t: str, payload: bytes, at: float) -> None:
        code = msgspec.json.decode(payload)["code"]
        if code in scanner.sent:
            mqtt_latency.append((at - scanner.sent[code]) * 1000)

    with _pty_device(scanner) as pty:
        bridge = store.bridge(creds, "generic-serial-scanner", pty)
        _wait_online(store, "scanner-b")
        till = Till(store.mqtt_port, store.observer.username, store.observer.password, [topic], received)
        stream = httpx.Client(base_url=f"http://127.0.0.1:{store.port}", timeout=None,
                              headers={"Authorization": f"Bearer {store.token()}"})
        response = stream.send(stream.build_request("GET", "/api/v1/devices/scanner-b/stream"), stream=True)

        def follow() -> None:
            with contextlib.suppress(httpx.HTTPError):
                for line in response.iter_lines():
                    if line.startswith("data:") and '"code"' in line:
                        at = time.perf_counter()
                        code = msgspec.json.decode(line[5:].strip())["code"]
                        if code in scanner.sent:
                            sse_latency.append((at - scanner.sent[code]) * 1000)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        time.sleep(0.3)
        n = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n += 1
            scanner.scan(_ean13(n))
            time.sleep(0.05)  # the simulator's loop emits one frame per turn
        time.sleep(0.5)
        response.close()
        stream.close()
        till.close()
        store.stop(bridge)
    return mqtt_latency, sse_latency


# -- 3. a scale's frame to a till --------------------------------------------------------------------------------

class TimedScale:
    """An 8217 that settles at once and answers each poll with a new weight, noting when each went out."""

    def __init__(self, sim: DeviceSim) -> None:
        self.sim = sim
        self.grams = 1000
        self.sent: dict[int, float] = {}
        sim.control(["weight", str(self.grams)])

    def receive(self, data: bytes) -> bytes:
        answer = self.sim.receive(data)
        if answer.startswith(b"\x02") and answer.endswith(b"\r") and b"?" not in answer:
            grams = round(float(answer[1:-1].decode()) * 1000)
            if grams not in self.sent:
                self.sent[grams] = time.perf_counter()
                self.grams += 1
                self.sim.control(["weight", str(self.grams)])
        return answer

    def emit(self) -> bytes:
        return self.sim.emit()

    def set_state(self, state: Any) -> None:
        self.sim.set_state(state)

    def control(self, words: list[str]) -> str:
        return self.sim.control(words)

    def rendered(self) -> str | None:
        return self.sim.rendered()


def scale_latency(store: Store, creds: broker.Credentials, seconds: float) -> list[float]:
    profile = profiles.get("mettler-toledo-8217")
    profile = msgspec.structs.replace(profile, simulator=msgspec.structs.replace(profile.simulator, settle_ms=0))
    scale = TimedScale(make_simulator(profile))
    latency: list[float] = []

    def received(t: str, payload: bytes, at: float) -> None:
        event = msgspec.json.decode(payload)
        if event.get("stable") and event.get("grams") in scale.sent:
            latency.append((at - scale.sent[event["grams"]]) * 1000)

    with _pty_device(scale) as pty:
        bridge = store.bridge(creds, "mettler-toledo-8217", pty)
        _wait_online(store, "scale-b")
        till = Till(store.mqtt_port, store.observer.username, store.observer.password,
                    [topics.data(STORE, "scale-b", "weight")], received)
        time.sleep(seconds)
        till.close()
        store.stop(bridge)
    return latency


# -- 4. N devices publishing --------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """MQTT 3.1.1 CONNECT with a username and password, clean session, 60 s keep-alive."""
    variable = _utf8("MQTT") + bytes([4, 0b11000010]) + (60).to_bytes(2, "big")
    payload = _utf8(client_id) + _utf8(username) + _utf8(password)
    return b"\x10" + _varint(len(variable) + len(payload)) + variable + payload


def publish_packet(topic: str, payload: bytes) -> bytes:
    """MQTT PUBLISH at QoS 0."""
    body = _utf8(topic) + payload
    return b"\x30" + _varint(len(body)) + body


async def _open_device(creds: broker.Credentials, port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(f"bench-{creds.device_id}", creds.username, creds.password))
    connack = await reader.readexactly(4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"the broker refused {creds.username}: CONNACK {connack.hex()}")
    return writer


async def _publish_load(devices: list[broker.Credentials], port: int, rate: float | None,
                        seconds: float) -> int:
    """Every device publishes its weight; `rate` per device per second, or as fast as possible (None)."""
    writers = await asyncio.gather(*(_open_device(c, port) for c in devices))
    topics_ = [topics.data(STORE, c.device_id or "", "weight") for c in devices]
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    n = len(devices)
    while (elapsed := loop.time() - start) < seconds:
        due = int(elapsed * n * rate) if rate is not None else sent + n
        if due > sent:
            ts = topics.now()
            while sent < due:
                i = sent % n
                body = b'{"seq":%d,"ts":"%s","grams":%d,"stable":true,"state":"ok"}' % (sent, ts.encode(), sent % 5000)
                writers[i].write(publish_packet(topics_[i], body))
                sent += 1
            await asyncio.gather(*(w.drain() for w in writers))
        await asyncio.sleep(0.005 if rate is not None else 0)
    for writer in writers:
        writer.write(b"\xe0\x00")  # DISCONNECT
        writer.close()
    with contextlib.suppress(ConnectionError):
        await asyncio.gather(*(w.wait_closed() for w in writers))
    return sent


def sustained(store: Store, devices: list[broker.Credentials], rate: float | None, seconds: float) -> dict[str, Any]:
    counted = [0]

    def received(t: str, payload: bytes, at: float) -> None:
        counted[0] += 1

    till = Till(store.mqtt_port, store.observer.username, store.observer.password,
                [f"{ROOT}/dev/+/data/weight"], received)
    hub0, broker0, self0, wall0 = _cpu_s(store.hub.pid), _cpu_s(store.broker_pid), _self_cpu_s(), time.perf_counter()
    sent = asyncio.run(_publish_load(devices, store.mqtt_port, rate, seconds))
    time.sleep(0.5)  # the last messages in flight
    wall = time.perf_counter() - wall0
    hub_s, broker_s = _cpu_s(store.hub.pid) - hub0, _cpu_s(store.broker_pid) - broker0
    self_s = _self_cpu_s() - self0
    till.close()
    return {"sent": sent, "delivered": counted[0], "sent_per_s": round(sent / seconds, 1),
            "delivered_per_s": round(counted[0] / seconds, 1), "hub_cpu_pct": round(100 * hub_s / wall, 1),
            "broker_cpu_pct": round(100 * broker_s / wall, 1), "bench_cpu_pct": round(100 * self_s / wall, 1),
            "hub_cpu_ms_per_1000": round(1000 * hub_s / max(1, counted[0]) * 1000, 2)}


# -- the command -------------------------------------------------------------------------------------------------

def bench_devices(args: argparse.Namespace) -> dict[str, Any]:
    n = int(getattr(args, "devices", None) or 200)
    seconds = float(args.seconds)
    sys.setswitchinterval(0.0005)  # several threads of this process take timestamps
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="backroom-bench-devices-") as tmp:
        root = Path(args.data) if args.data else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        store = Store(root)
        try:
            wanted = [("rtt-1", "mettler-toledo-8217"), ("scanner-b", "generic-serial-scanner"),
                      ("scale-b", "mettler-toledo-8217")] + [(f"load-{i:03d}", "mettler-toledo-8217") for i in range(n)]
            creds = {c.device_id: c for c in broker.add_devices(store.data, wanted)}
            bare = bare_round_trip(store, creds["rtt-1"], samples=max(200, int(seconds * 100)))
            scan_mqtt, scan_sse = scanner_latency(store, creds["scanner-b"], min(seconds, 15.0))
            scale = scale_latency(store, creds["scale-b"], min(seconds, 10.0))
            hub0, wall0 = _cpu_s(store.hub.pid), time.perf_counter()
            time.sleep(1.0)
            idle_pct = round(100 * (_cpu_s(store.hub.pid) - hub0) / (time.perf_counter() - wall0), 1)
            load = sustained(store, [creds[f"load-{i:03d}"] for i in range(n)], RATE_PER_DEVICE, seconds)
            flat = sustained(store, [creds[f"load-{i:03d}"] for i in range(n)], None, min(seconds, 3.0))
        finally:
            store.close()
    bare_p50, bare_p99 = _pct(bare, 0.5), _pct(bare, 0.99)
    scan_p50, scan_p99 = _pct(scan_mqtt, 0.5), _pct(scan_mqtt, 0.99)
    sse_p50, sse_p99 = _pct(scan_sse, 0.5), _pct(scan_sse, 0.99)

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 3)

    return {
        "bench": "devices", "devices": n, "seconds": seconds,
        "bare_rtt_p50_ms": bare_p50, "bare_rtt_p99_ms": bare_p99,
        "scan_to_mqtt_till_p50_ms": scan_p50, "scan_to_mqtt_till_p99_ms": scan_p99,
        "scan_to_sse_till_p50_ms": sse_p50, "scan_to_sse_till_p99_ms": sse_p99,
        "scale_to_mqtt_till_p50_ms": _pct(scale, 0.5), "scale_to_mqtt_till_p99_ms": _pct(scale, 0.99),
        "hub_added_p50_ms": minus(scan_p50, bare_p50), "hub_added_p99_ms": minus(scan_p99, bare_p99),
        "sse_added_p99_ms": minus(sse_p99, bare_p99),
        "samples": {"bare": len(bare), "scan_mqtt": len(scan_mqtt), "scan_sse": len(scan_sse), "scale": len(scale)},
        "load_target_per_s": n * RATE_PER_DEVICE, "load_sent_per_s": load["sent_per_s"],
        "load_delivered_per_s": load["delivered_per_s"], "load_lost": load["sent"] - load["delivered"],
        "load_hub_cpu_pct": load["hub_cpu_pct"], "load_broker_cpu_pct": load["broker_cpu_pct"],
        "load_bench_cpu_pct": load["bench_cpu_pct"], "hub_idle_cpu_pct": idle_pct,
        "hub_cpu_ms_per_1000_msgs": flat["hub_cpu_ms_per_1000"],
        "flat_out_delivered_per_s": flat["delivered_per_s"], "flat_out_hub_cpu_pct": flat["hub_cpu_pct"],
        "flat_out_broker_cpu_pct": flat["broker_cpu_pct"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def run_devices_bench(args: argparse.Namespace) -> int:
    figures = bench_devices(args)
    if not args.json:
        f = figures
        print(f"backroom bench devices: {f['devices']} devices, {f['seconds']:g} s ({f['machine']})")
        print(f"  bare broker round trip      p50 {f['bare_rtt_p50_ms']} ms   p99 {f['bare_rtt_p99_ms']} ms")
        print(f"  scanner frame -> MQTT till  p50 {f['scan_to_mqtt_till_p50_ms']} ms   "
              f"p99 {f['scan_to_mqtt_till_p99_ms']} ms")
        print(f"  scanner frame -> SSE till   p50 {f['scan_to_sse_till_p50_ms']} ms   "
              f"p99 {f['scan_to_sse_till_p99_ms']} ms")
        print(f"  scale frame -> MQTT till    p50 {f['scale_to_mqtt_till_p50_ms']} ms   "
              f"p99 {f['scale_to_mqtt_till_p99_ms']} ms")
        print(f"  hub-added (scan - bare)     p50 {f['hub_added_p50_ms']} ms   p99 {f['hub_added_p99_ms']} ms")
        print(f"  load {f['load_target_per_s']:g}/s target: delivered {f['load_delivered_per_s']}/s, "
              f"lost {f['load_lost']}, hub CPU {f['load_hub_cpu_pct']} % of a core (idle "
              f"{f['hub_idle_cpu_pct']} %), broker {f['load_broker_cpu_pct']} %")
        print(f"  flat out: delivered {f['flat_out_delivered_per_s']}/s, hub CPU {f['flat_out_hub_cpu_pct']} % "
              f"({f['hub_cpu_ms_per_1000_msgs']} ms per 1000 messages)")
    print(json.dumps(figures), flush=True)
    return 0
