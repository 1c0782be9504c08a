"""`make run`: the whole demo store in the foreground, and everything it started stopped on SIGINT/SIGTERM.

1. Seed the demo store when the data directory is empty.
2. Start the hub (`backroom serve`), which starts its own Mosquitto, advertises itself on mDNS and
   pairs every till with the demo devices (`{data}/demo-hub.toml`, written once, yours to edit).
3. Register the demo devices with the broker (a fresh password each run: the registry keeps only
   hashes) and start a simulator and a bridge for each: scale `scale-1` (Mettler Toledo 8217 on a
   pty), scanner `scanner-1`, receipt printer `printer-1` (an Epson TM-T20III on TCP, pages also
   saved under `{data}/printer/<start time>/`; its drawer kick is the drawer) and display `display-1`.
4. Print the URLs and demo logins; lines typed here drive the simulators (`scale-1 weight 1500`).

Every child runs in its own process group and gets SIGTERM when this process dies, even by SIGKILL
(PR_SET_PDEATHSIG). On SIGINT/SIGTERM the bridges stop first (they publish `offline`), then the
simulators, then the hub, which stops its broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

from edge.cli import main

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DemoDevice:
    device_id: str
    profile: str
    tcp: bool = False  # a network printer: the simulator listens on TCP, the bridge connects to it


DEMO_DEVICES = (
    DemoDevice("scale-1", "mettler-toledo-8217"),
    DemoDevice("scanner-1", "generic-serial-scanner"),
    DemoDevice("printer-1", "epson-tm-t20iii", tcp=True),
    DemoDevice("display-1", "epson-dm-d110"),
)

DEMO_CONFIG = """# The demo store's hub settings (make run writes this once; edit freely). Keys are HubConfig fields.
store_name = "Backroom 演示店 {store}"

# Every till prints on printer-1, opens printer-1's cash drawer, shows totals on display-1 and follows
# scale-1 and scanner-1. Pair a till of its own with [tills.T01].
[tills."*"]
printer = "printer-1"
drawer = "printer-1"
display = "display-1"
scale = "scale-1"
scanner = "scanner-1"
"""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the demo runner dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    first_line: threading.Event = field(default_factory=threading.Event)
    reported: bool = False  # its unexpected exit was announced


class Supervisor:
    """The children of `make run`, stopped in reverse order of starting, each with its process group."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.lock = threading.Lock()

    def spawn(self, name: str, args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
              relay: Callable[[Child, str], None] | None = None, stdin: bool = False) -> Child:
        stdout: int | IO[bytes] | None = None  # inherit: the hub's log goes to the console
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            stdout = log.open("ab")
        elif relay is not None:
            stdout = subprocess.PIPE
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], stdout=stdout,
                                stderr=subprocess.STDOUT if stdout is not None else None,
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)
        if log is not None and not isinstance(stdout, int) and stdout is not None:
            stdout.close()
        child = Child(name, proc)
        if relay is not None and proc.stdout is not None:
            threading.Thread(target=self._pump, args=(child, relay), daemon=True).start()
        with self.lock:
            self.children.append(child)
        return child

    @staticmethod
    def _pump(child: Child, relay: Callable[[Child, str], None]) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            child.lines.append(line)
            if not child.first_line.is_set():
                child.first_line.set()
                continue  # a simulator's first line is its address, shown in the banner
            relay(child, line)
        child.first_line.set()

    def stop_all(self, timeout_s: float = 10.0) -> None:
        with self.lock:
            children = list(reversed(self.children))
        for child in children:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[demo] {child.name} did not stop; killing it", flush=True)
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
            _signal_group(child.proc, signal.SIGKILL)  # anything the child left behind in its group


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _relay(child: Child, line: str) -> None:
    print(f"[{child.name}] {line}", flush=True)


def _wait_healthy(url: str, hub: Child, stop: threading.Event, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None or stop.is_set():
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        time.sleep(0.1)
    return False


def _console(devices: dict[str, Child], stop: threading.Event) -> None:
    """`scale-1 weight 1500`, `scanner-1 scan 6901234567892`, `printer-1 offline`: to that simulator's stdin."""
    for line in sys.stdin:
        words = line.split()
        if stop.is_set():
            return
        if not words:
            continue
        target = devices.get(words[0]) or next((c for name, c in devices.items() if name.startswith(words[0])), None)
        if target is None or target.proc.stdin is None or len(words) < 2:
            print(f"[demo] say `<device> <command>`; devices: {', '.join(devices)}", flush=True)
            continue
        with contextlib.suppress(BrokenPipeError, OSError):
            target.proc.stdin.write((" ".join(words[1:]) + "\n").encode())
            target.proc.stdin.flush()


def _start_devices(supervisor: Supervisor, data: Path, pages: Path, store: str,
                   mqtt_port: int, label: str = "") -> dict[str, tuple[Child, str]]:
    """A simulator and a bridge per demo device of the store in `data`; children are named `{label}{device} sim`."""
    from devices import broker

    started: dict[str, tuple[Child, str]] = {}
    for device in DEMO_DEVICES:
        creds = broker.add_device(data, device.device_id, device.profile)
        args = ["devices", "simulate", "--profile", device.profile]
        if device.tcp:
            args += ["--tcp", "0", "--out", str(pages)]  # the simulator numbers pages from 1 each run
        sim = supervisor.spawn(f"{label}{device.device_id} sim", args, relay=_relay, stdin=True)
        if not sim.first_line.wait(20.0) or not sim.lines:
            raise RuntimeError(f"the {device.profile} simulator did not start")
        where = sim.lines[0]
        port = f"tcp://{where}" if device.tcp else where
        env = {**os.environ, "BACKROOM_MQTT_URL":
               f"mqtt://{quote(creds.username, safe='')}:{quote(creds.password, safe='')}@127.0.0.1:{mqtt_port}"}
        bridge_args = ["devices", "bridge", "--profile", device.profile, "--port", port, "--device-id",
                       device.device_id, "--store", store]
        if device.tcp:
            bridge_args += ["--spool", str(data / "spool" / device.device_id)]
        supervisor.spawn(f"{label}{device.device_id} bridge", bridge_args, env=env,
                         log=data / "logs" / f"bridge-{device.device_id}.log")
        started[device.device_id] = (sim, where)
    return started


def run() -> int:
    from devices import broker

    data = Path(os.environ.get("BACKROOM_DATA") or "var/demo")
    port = int(os.environ.get("BACKROOM_PORT") or 8080)
    mqtt_port = int(os.environ.get("BACKROOM_MQTT_PORT") or 1883)
    store = os.environ.get("BACKROOM_STORE") or "demo-001"
    if not (data / "hub.sqlite3").exists():
        code = main(["seed", "--demo", "--store", store, "--data", str(data)])
        if code:
            return code
    config = data / "demo-hub.toml"
    if not config.exists():
        config.write_text(DEMO_CONFIG.format(store=store), "utf-8")

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health check
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # `make run` is our parent and does not pass SIGTERM on: stop too when it goes.
    _die_with_parent()
    if os.getppid() == 1:
        stop.set()
    supervisor = Supervisor()
    broker_before = broker.running_pid(data)
    pages = data / "printer" / time.strftime("%Y%m%d-%H%M%S")
    url = f"http://127.0.0.1:{port}"
    code = 0
    try:
        hub = supervisor.spawn("hub", ["serve", "--data", str(data), "--port", str(port), "--mqtt-port",
                                       str(mqtt_port), "--config", str(config)])
        if not _wait_healthy(url, hub, stop):
            if stop.is_set():
                return 0
            print(f"[demo] the hub did not start (exit {hub.proc.poll()}); see its log above", flush=True)
            return 1
        settings = broker.load_settings(data)
        devices_on = broker.running_pid(data) is not None and settings is not None \
            and broker.wait_for_port("127.0.0.1", settings.lan_port, 5.0)
        started: dict[str, tuple[Child, str]] = {}
        if devices_on and settings is not None and not stop.is_set():
            started = _start_devices(supervisor, data, pages, settings.store_id, settings.lan_port)
        _banner(port, mqtt_port, store, data, pages, started, devices_on)
        if started:
            threading.Thread(target=_console, args=({k: c for k, (c, _) in started.items()}, stop),
                             daemon=True).start()
        while not stop.wait(0.5):
            if hub.proc.poll() is not None:
                print(f"[demo] the hub exited ({hub.proc.returncode}); stopping", flush=True)
                code = 1
                break
            for child in supervisor.children:
                if child is not hub and child.proc.poll() is not None and not child.reported:
                    print(f"[demo] {child.name} exited ({child.proc.returncode})", flush=True)
                    child.reported = True
    finally:
        print("[demo] stopping the bridges, simulators and the hub", flush=True)
        supervisor.stop_all()
        orphan = broker.running_pid(data)
        if orphan is not None and orphan != broker_before:  # the hub died without stopping its broker
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGTERM)
        print("[demo] stopped", flush=True)
    return code


def _banner(port: int, mqtt_port: int, store: str, data: Path, pages: Path, started: dict[str, tuple[Child, str]],
            devices_on: bool) -> None:
    from devices.broker import lan_address

    host = lan_address()
    lines = [
        "",
        f"Backroom demo store {store} is running.",
        f"  Tablet UI     http://{host}:{port}/ui   (简体中文 / English; open it on the store's tablet)",
        f"  Till API      http://{host}:{port}/api/v1   OpenAPI: http://{host}:{port}/schema",
        f"  Health        http://{host}:{port}/healthz",
    ]
    if devices_on:
        lines.append(f"  MQTT broker   mqtt://{host}:{mqtt_port}   read-only login: "
                     f"backroom mqtt observer --data {data}")
        for device_id, (_, where) in started.items():
            profile = next(d.profile for d in DEMO_DEVICES if d.device_id == device_id)
            lines.append(f"  {device_id:<13} {profile} at {where}")
        lines.append(f"                receipts print below and as pages in {pages}")
    else:
        lines.append("  Devices       OFF: the hub could not start its Mosquitto (see its log above)")
    lines += [
        "  Demo logins   manager / manager-demo (store manager)",
        "                cashier / PIN 1234 at any till_id (cashier)",
        "                guide / PIN 5678 (sales guide), region / region-demo (region manager)",
        "  Demo member   M000001, phone 13800138000, card 8800000001 (gold)",
        f"  Data          {data}",
    ]
    if started:
        lines.append("  Type here to drive the simulators: `scale-1 weight 1500`, `scanner-1 scan 6901234567892`, "
                     "`printer-1 offline`")
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(run())
