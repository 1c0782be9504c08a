"""Shared fixtures: a real `backroom serve` subprocess on a freshly seeded demo data directory.

Tests talk to it over HTTP with httpx, as an independent till would, and read its SQLite file
read-only to check what was (or was not) written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubproc import free_port, healthy

from edge.appliance.install import compile_bytecode

DEMO_SECRETS: dict[str, dict[str, str]] = {
    "manager": {"password": "manager-demo"},
    "region": {"password": "region-demo"},
    "cashier": {"pin": "1234"},
    "guide": {"pin": "5678"},
}
WRITTEN_TABLES = ("journal", "outbox", "sales")
# Hubs under test run without their device broker, which would take MQTT port 1883 in every one of them;
# tests/test_device_link.py turns it on for its own hub.
os.environ.setdefault("BACKROOM_DEVICES", "0")


# The bytecode of the project's packages, written once before the suite starts hundreds of hub and HQ
# processes: with PYTHONDONTWRITEBYTECODE set (as in some shells and CI images) Python never caches it, and
# every `python -m edge.cli` compiled the ~280 modules it imports from source again, about 0.3-0.5 s of CPU
# per start on the 2-core box (docs/performance.md, cold start). `backroom install` does the same on a box.
compile_bytecode(Path(__file__).resolve().parent.parent)


def backroom(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI as `python -m edge.cli` with this interpreter."""
    proc = subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"backroom {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class Hub:
    """A running hub: its URL, its data directory, and helpers to log in and inspect the database."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, data_dir: Path, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.data_dir = data_dir
        self.log_path = log_path
        self._clients: list[httpx.Client] = []

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def login(self, username: str, password: str | None = None, pin: str | None = None,
              till_id: str | None = None) -> httpx.Client:
        """A client carrying a bearer token; demo logins need only the username (PINs log in at till T1)."""
        if password is None and pin is None:
            secret = DEMO_SECRETS[username]
            password, pin = secret.get("password"), secret.get("pin")
        body: dict[str, str] = {"username": username}
        if password is not None:
            body["password"] = password
        if pin is not None:
            body["pin"] = pin
            body["till_id"] = till_id or "T1"
        elif till_id is not None:
            body["till_id"] = till_id
        resp = httpx.post(f"{self.base_url}/api/v1/auth/login", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        return self.client(resp.json()["token"])

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows from a read-only connection to the hub's database."""
        conn = sqlite3.connect(f"file:{self.data_dir / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(row) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def counts(self, tables: tuple[str, ...] = WRITTEN_TABLES) -> dict[str, int]:
        """Row counts, for "nothing was written" checks."""
        return {table: self.query(f"SELECT count(*) FROM {table}")[0][0] for table in tables}

    def backroom(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a CLI command on this hub's data directory (`hub.backroom("journal", "verify")`)."""
        return backroom(*args, "--data", str(self.data_dir), check=False)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_hub(root: Path, config: dict[str, Any] | None = None) -> Hub:
    """Seed `root/data` with the demo store and serve it on a free port; fail loudly if it will not start."""
    data_dir = root / "data"
    backroom("seed", "--demo", "--data", str(data_dir))
    port = free_port()
    args = ["serve", "--data", str(data_dir), "--port", str(port)]
    if config:
        config_path = root / "hub.toml"
        config_path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()), "utf-8")
        args += ["--config", str(config_path)]
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], stdout=log, stderr=subprocess.STDOUT)
    hub = Hub(proc, f"http://127.0.0.1:{port}", data_dir, log_path)
    if healthy(proc, hub.base_url, 30):
        return hub
    hub.close()
    pytest.fail(f"backroom serve did not become healthy (exit {proc.returncode}); its log:\n{hub.log()}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One freshly seeded hub per test module, shared by its tests."""
    running = start_hub(tmp_path_factory.mktemp("hub"))
    yield running
    running.close()


@pytest.fixture
def fresh_hub(tmp_path: Path) -> Iterator[Hub]:
    """A pristine hub of the test's own, for tests that need literal starting balances."""
    running = start_hub(tmp_path)
    yield running
    running.close()


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Start extra hubs with a config file (`hub_factory(token_ttl_s=1)`); all stop after the test."""
    started: list[Hub] = []

    def make(**config: Any) -> Hub:
        running = start_hub(tmp_path / f"hub{len(started)}", config)
        started.append(running)
        return running

    yield make
    for running in started:
        running.close()
