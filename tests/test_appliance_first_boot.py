"""The box's first boot, end to end: a real `backroom serve` (devices on, its own Mosquitto) run as systemd would
run it (sd_notify over $NOTIFY_SOCKET: READY=1, WATCHDOG=1, STOPPING=1), a real bridge to a network ESC/POS
printer (a TCP server here that keeps every byte and answers status requests), and the status ticket with the
tablet URL's QR code, printed once per boot: a restart of the hub does not print it again."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hubproc import REPO, healthy, hub_ports, seed_demo, stop_with_devices

from devices import profiles
from devices.codecs.base import PrintText
from devices.codecs.escpos import Codec
from edge import __version__
from edge.appliance.first_boot import BOOT_ID, RECORD, Ticket, lines

STATUS_REQUEST, STATUS_ONLINE = b"\x10\x04\x01", b"\x12"
QR_STORE = b"\x1d(k"  # GS ( k: the 2D-code command; fn 80 ("1P0") stores the data


def test_the_ticket_says_how_to_pair_only_while_unpaired() -> None:
    unpaired = Ticket(store_name="Backroom s-042", store_id="s-042", addresses=["192.168.1.20", "10.0.0.5"],
                      tablet_url="http://192.168.1.20:8080/ui", hq_url=None, at="2026-12-03T07:30:12+08:00")
    assert lines(unpaired) == [
        "Backroom s-042", "Backroom 状态 Status", "2026-12-03 07:30", "", "门店 Store: s-042",
        f"版本 Version: {__version__}", "地址 Address: 192.168.1.20", "地址 Address: 10.0.0.5", "",
        "平板 Tablet:", "http://192.168.1.20:8080/ui", "", "总部 HQ: 未配对 not paired",
        "总部为门店 s-042 生成配对码，", "HQ issues a pairing code for s-042;", "在平板上输入 enter it on the tablet:",
        "http://192.168.1.20:8080/ui/sync/pair", "", "扫码打开平板页面 Scan for the tablet:"]
    paired = Ticket(store_name="Backroom s-042", store_id="s-042", addresses=[], tablet_url="http://10.0.0.5:8080/ui",
                    hq_url="https://hq.example.com", at="2026-12-03T07:30:12+08:00")
    assert lines(paired)[6:] == [
        "地址 Address: (no network)", "", "平板 Tablet:", "http://10.0.0.5:8080/ui", "", "总部 HQ: 已配对 paired",
        "https://hq.example.com", "", "扫码打开平板页面 Scan for the tablet:"]


def test_a_print_job_with_a_qr_code_ends_with_gs_k_store_and_print() -> None:
    data = Codec(profiles.get("epson-tm-t20iii").protocol).encode(PrintText(lines=["Tablet"], qr="http://h/ui"))
    assert data.startswith(b"\x1b@\x1bt\x00Tablet\n")
    assert b"\x1d(k\x04\x001A2\x00" in data  # model 2
    assert b"\x1d(k\x0e\x001P0http://h/ui\x1d(k\x03\x001Q0" in data  # store 11 bytes (pL = 11 + 3), print
    plain = Codec(profiles.get("epson-tm-t20iii").protocol).encode(PrintText(lines=["Tablet"]))
    assert b"\x1d(k" not in plain


class EscposPrinter:
    """A network receipt printer on a TCP port: keeps what it is sent, answers DLE EOT 1 'online'."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                with self.changed:
                    self.received += data
                    self.changed.notify_all()
                for _ in range(data.count(STATUS_REQUEST)):
                    conn.sendall(STATUS_ONLINE)

    def wait_for(self, needle: bytes, start: int = 0, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        with self.changed:
            while needle not in self.received[start:]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the printer never got {needle!r}; it got {bytes(self.received[start:])!r}")
                self.changed.wait(left)
            return bytes(self.received[start:])

    def close(self) -> None:
        self.server.close()


class NotifySocket:
    """The service manager's end of $NOTIFY_SOCKET, read by a thread as systemd reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                self.messages.put(self.sock.recv(4096).decode())
            except OSError:
                return

    def until(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message.startswith(prefix):
                return message
            seen.append(message)
        raise AssertionError(f"no {prefix} within {timeout} s; got {seen}")

    def close(self) -> None:
        self.sock.close()


class Box:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port, self.mqtt_port = hub_ports()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "backroom.toml"
        self.config.write_text('status_ticket = true\n[tills."*"]\nprinter = "printer-1"\n')
        self.notify = NotifySocket(root / "notify.sock")
        self.printer = EscposPrinter()
        self.hub: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "BACKROOM_DEVICES": "1", "NOTIFY_SOCKET": str(self.notify.path),
               "WATCHDOG_USEC": "400000"}
        env.pop("WATCHDOG_PID", None)
        self.log = self.root / f"serve-{self.starts}.log"
        with self.log.open("wb") as log:
            self.hub = subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--data", str(self.data),
                                         "--port", str(self.port), "--mqtt-port", str(self.mqtt_port),
                                         "--config", str(self.config)], cwd=REPO, env=env, stdout=log,
                                        stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.hub is not None:
            stop_with_devices(self.hub, self.data)

    def start_bridge(self) -> None:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "devices", "add", "--device-id", "printer-1",
                               "--profile", "epson-tm-t20iii", "--data", str(self.data)], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        creds = json.loads(done.stdout)
        env = {**os.environ,
               "BACKROOM_MQTT_URL": f"mqtt://{creds['username']}:{creds['password']}@127.0.0.1:{self.mqtt_port}"}
        with (self.root / "bridge.log").open("wb") as log:
            self.bridge = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "devices", "bridge", "--profile", "epson-tm-t20iii", "--port",
                 f"tcp://127.0.0.1:{self.printer.port}", "--device-id", "printer-1", "--store", "demo-001"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.terminate()
            self.bridge.wait(10)
        self.stop()
        self.printer.close()
        self.notify.close()

    def manager(self) -> httpx.Client:
        resp = httpx.post(self.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"},
                          timeout=10)
        assert resp.status_code == 200, resp.text
        return httpx.Client(base_url=self.url, timeout=15, headers={"Authorization": f"Bearer {resp.json()['token']}"})


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    root = tmp_path_factory.mktemp("box")
    seed_demo(root / "data")
    box = Box(root)
    try:
        yield box
    finally:
        box.close()


def test_the_hub_tells_systemd_it_is_ready_once_it_serves_and_beats_the_watchdog(box: Box) -> None:
    box.start()
    ready = box.notify.until("READY=1")
    assert "STATUS=serving store demo-001" in ready
    assert httpx.get(box.url + "/healthz", timeout=5).status_code == 200  # READY=1 came after the port was bound
    assert box.notify.until("WATCHDOG=1", timeout=5) == "WATCHDOG=1"
    assert box.notify.until("WATCHDOG=1", timeout=5) == "WATCHDOG=1"  # again: a heartbeat, not a one-off


def test_the_status_ticket_prints_with_the_tablet_url_as_a_qr_code(box: Box) -> None:
    assert box.hub is not None and box.hub.poll() is None
    box.start_bridge()
    received = box.printer.wait_for(b"\x1dV")  # the ticket's cut, after its text and QR code
    deadline = time.monotonic() + 30  # the hub records the ticket once the bridge confirms the printer has it
    while not (box.data / RECORD).exists():
        assert time.monotonic() < deadline, "the hub never recorded the printed ticket"
        time.sleep(0.05)
    record = json.loads((box.data / RECORD).read_text())
    tablet_url = record["tablet_url"]
    assert tablet_url.startswith("http://") and tablet_url.endswith(f":{box.port}/ui")
    data = tablet_url.encode()
    # GS ( k pL pH 49 80 48 data: the QR code's data is the tablet URL (pL pH = its length + 3)
    store = QR_STORE + bytes([(len(data) + 3) % 256, (len(data) + 3) // 256]) + b"1P0" + data
    assert store in received
    assert QR_STORE + b"\x03\x001Q0" in received  # ... and printed
    assert b"demo-001" in received and tablet_url.encode() in received
    assert "未配对".encode("gb18030") in received  # not paired: how to pair from the tablet
    assert record["printer"] == "printer-1"
    if BOOT_ID.exists():
        assert record["boot_id"] == BOOT_ID.read_text().strip()


def test_a_restart_on_the_same_boot_does_not_print_it_again(box: Box) -> None:
    box.stop()
    assert box.notify.until("STOPPING=1", timeout=15) == "STOPPING=1"
    before = len(box.printer.received)
    box.start()
    box.notify.until("READY=1")
    assert box.hub is not None and healthy(box.hub, box.url, 30)
    with box.manager() as manager:  # once the bridge is back, a print goes through and is the only thing printed
        deadline = time.monotonic() + 30
        while True:
            resp = manager.post("/api/v1/devices/printer-1/cmd/print", json={"lines": ["after the restart"]})
            if resp.status_code == 200 and resp.json()["ok"]:
                break
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.2)
    after = box.printer.wait_for(b"after the restart", start=before)
    assert QR_STORE not in after
    assert "status ticket already printed on this boot" in box.log.read_text()
