"""A real `backroom serve` subprocess for tests: seed a data dir, start on a free port, kill or stop it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def healthy(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """Wait until `url`/healthz answers 200; False if the process exits or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


_ports = random.Random(os.getpid() ^ time.time_ns())


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range. A port the kernel picked (bind to port 0) comes
    from that range, and so does the source port of every outgoing connection on the machine: between
    the pick and the server's own bind, a client connection (a chain bench opens thousands) could take it,
    and the hub would then start with its devices off or not at all."""
    high = min(_ephemeral_low(), 65536)
    for _ in range(500):
        port = _ports.randrange(15000, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backroom(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI (`python -m edge.cli ...`) to completion."""
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def seed_demo(data_dir: Path) -> None:
    done = backroom("seed", "--demo", "--data", str(data_dir))
    assert done.returncode == 0, done.stderr


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("BACKROOM_DATA", "BACKROOM_PORT", "BACKROOM_HQ", "BACKROOM_STORE", "BACKROOM_MQTT_PORT"):
        env.pop(var, None)
    return env


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> int:
    """A base port with `count` free ports from it: a hub's Mosquitto listens on its MQTT port and the next one,
    and the demo chain numbers its stores' ports from a base."""
    for _ in range(200):
        base = free_port()
        if base + count < 65535 and all(_port_free(base + n) for n in range(count)):
            return base
    raise RuntimeError(f"no run of {count} free ports")


def hub_ports() -> tuple[int, int]:
    """A hub's HTTP port and its MQTT port, all free and apart: its Mosquitto listens on the MQTT port and the
    next one (the hub's own localhost listener)."""
    port, mqtt_port = free_port(), free_ports(2)
    while port in (mqtt_port, mqtt_port + 1):
        mqtt_port = free_ports(2)
    return port, mqtt_port


def serve_with_devices(data_dir: Path, log_path: Path, config: Path | None = None,
                       timeout: float = 30) -> tuple[subprocess.Popen[bytes], str, int]:
    """`backroom serve` with its device hub on (its own Mosquitto and mDNS; conftest's hubs run without):
    (process, base URL, MQTT port). The broker also listens on the MQTT port + 1, so that one must be free."""
    port, mqtt_port = hub_ports()
    args = [sys.executable, "-m", "edge.cli", "serve", "--data", str(data_dir), "--port", str(port),
            "--mqtt-port", str(mqtt_port)]
    if config is not None:
        args += ["--config", str(config)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "BACKROOM_DEVICES": "1"}, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if not healthy(proc, url, timeout):
        stop_with_devices(proc, data_dir)
        raise RuntimeError(f"backroom serve (devices on) did not start:\n{log_path.read_text('utf-8', 'replace')}")
    return proc, url, mqtt_port


def stop_with_devices(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    """Stop the hub, then its Mosquitto if the hub died without taking it down."""
    from devices import broker

    if proc.poll() is None:
        proc.terminate()
        proc.wait(15)
    orphan = broker.running_pid(data_dir)
    if orphan is not None:
        os.kill(orphan, signal.SIGKILL)


class HubProcess:
    """One `backroom serve` process on `data_dir`; its output goes to `serve-N.log` beside the data."""

    def __init__(self, data_dir: Path, port: int | None = None, config: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.config = config
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self, timeout: float = 30) -> HubProcess:
        self._starts += 1
        self.log_path = self.data_dir.parent / f"serve-{self.data_dir.name}-{self._starts}.log"
        args = [sys.executable, "-m", "edge.cli", "serve", "--data", str(self.data_dir), "--port", str(self.port),
                "--log-level", "warning"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=_env())
        if healthy(self.proc, self.url, timeout):
            return self
        if self.proc.poll() is not None:
            raise RuntimeError(f"backroom serve exited with {self.proc.returncode}:\n{self.log()}")
        self.stop()
        raise RuntimeError(f"backroom serve did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no lifespan teardown — a power cut for the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL, "the hub had already exited"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def client(self, username: str = "cashier", *, pin: str | None = "1234", password: str | None = None,
               till_id: str | None = "T1", timeout: float = 10) -> httpx.Client:
        """An httpx client logged in as `username` (cashier PIN by default)."""
        body: dict[str, str] = {"username": username}
        if password is not None:
            body["password"] = password
        else:
            assert pin is not None
            body["pin"] = pin
            if till_id is not None:
                body["till_id"] = till_id
        r = httpx.post(self.url + "/api/v1/auth/login", json=body, timeout=timeout)
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        return httpx.Client(base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> HubProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
