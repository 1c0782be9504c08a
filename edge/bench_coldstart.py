"""`backroom bench coldstart`: how long `backroom serve` takes from spawn to its first answered request.

Issue 13 asks for a cold start under 1 s. A fresh demo store is seeded once; then `--repeat` times,
alternating, the hub is started with its devices off and with them on (it then starts its own
Mosquitto and connects its MQTT client before serving), `GET /healthz` is polled over a raw socket
(the measuring process stays light) until it answers 200, and the hub is stopped. Per start: the
wall time to that answer and the CPU the hub had used by then (/proc/PID/stat: user + system, all
threads), which depends less on what else runs on the machine; the machine's load is reported too.

The application's bytecode is written first (`edge.appliance.install.compile_bytecode`, as `backroom
install` leaves a box): a shell with PYTHONDONTWRITEBYTECODE set would otherwise measure every start
compiling the ~280 modules from source. docs/performance.md has the figures. The last line printed is
JSON (`--json`: only it).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from edge import bench

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60.0


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _start_once(data: Path, log_path: Path, devices: bool, mqtt_ports: tuple[int, int]) -> tuple[float, float]:
    """(wall seconds, hub CPU seconds) from spawning `backroom serve` to its first 200 on /healthz."""
    port = bench._free_port()
    command = [sys.executable, "-m", "edge.cli", "serve", "--data", str(data), "--port", str(port),
               "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
    env["BACKROOM_DEVICES"] = "1" if devices else "0"
    if devices:
        command += ["--mqtt-port", str(mqtt_ports[0])]
        env["BACKROOM_MQTT_LOCAL_PORT"] = str(mqtt_ports[1])
    with log_path.open("ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not _healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not answer /healthz within {TIMEOUT_S:.0f} s; see {log_path}")
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        cpu = bench._proc_cpu_s(proc.pid)
    finally:
        bench.stop(proc)
    return wall, cpu


def _figures(runs: list[tuple[float, float]]) -> dict[str, Any]:
    walls = [w for w, _ in runs]
    cpus = [c for _, c in runs]
    return {"starts": len(runs), "wall_median_s": round(statistics.median(walls), 3),
            "wall_min_s": round(min(walls), 3), "wall_max_s": round(max(walls), 3),
            "cpu_median_s": round(statistics.median(cpus), 3), "cpu_min_s": round(min(cpus), 3)}


def bench_coldstart(args: argparse.Namespace) -> dict[str, Any]:
    from devices import broker
    from edge.appliance.install import compile_bytecode

    compile_bytecode(REPO)
    try:
        broker.mosquitto_binary()
        modes = [False, True]
    except broker.BrokerError:
        modes = [False]  # no Mosquitto on this machine: devices-off starts only
    runs: dict[bool, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="backroom-coldstart-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        bench._seed(data)
        mqtt_ports = (bench._free_port(), bench._free_port())
        broker.configure(data, broker.Settings(store_id="demo-001", lan_port=mqtt_ports[0], local_port=mqtt_ports[1],
                                               lan_bind="127.0.0.1", advertise_host="127.0.0.1"))
        _start_once(data, Path(scratch) / "hub.log", False, mqtt_ports)  # warms the page cache; not counted
        busy0, wall0 = bench._machine_busy_s(), time.perf_counter()
        for _ in range(args.repeat):
            for mode in modes:
                runs[mode].append(_start_once(data, Path(scratch) / "hub.log", mode, mqtt_ports))
        busy, wall = bench._machine_busy_s() - busy0, time.perf_counter() - wall0
    return {
        "bench": "coldstart",
        "devices_off": _figures(runs[False]),
        "devices_on": _figures(runs[True]) if True in runs else None,
        "machine_busy_cores": round(busy / wall, 2),  # the hubs' own starts included
        "cores": os.cpu_count(),
        "machine": bench._machine(Path(tempfile.gettempdir())),
    }


def run_coldstart_bench(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    f = bench_coldstart(args)
    if not args.json:
        print(f"backroom bench coldstart: spawn -> first 200 on /healthz, {args.repeat} starts each, alternating")
        print(f"  machine     {f['machine']}; {f['machine_busy_cores']} of {f['cores']} cores busy meanwhile")
        for name in ("devices_off", "devices_on"):
            g = f[name]
            if g is None:
                print(f"  {name:11} not measured (no Mosquitto)")
                continue
            verdict = "met" if g["wall_median_s"] < 1 else "MISSED"
            print(f"  {name:11} wall median {g['wall_median_s']} s (min {g['wall_min_s']}, max {g['wall_max_s']});"
                  f" hub CPU median {g['cpu_median_s']} s (target < 1 s: {verdict})")
    print(msgspec.json.encode(f).decode(), flush=True)
    return 0
