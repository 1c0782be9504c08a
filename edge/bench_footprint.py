"""`backroom bench footprint`: what a store box holds and writes, measured on a whole running box.

A fresh demo store with its devices on: `backroom serve` (which starts the managed Mosquitto),
and `backroom devices host` running the bridges of a scale, a scanner, a receipt printer and a
customer display (simulators stand in for the hardware; they are not part of the footprint).

- cold start: from spawning `backroom serve` to its first answered `GET /healthz` (the hub opens
  its database, runs migrations, starts the broker and its MQTT client first), with the application's
  bytecode written first as `backroom install` leaves a box (`backroom bench coldstart` repeats it);
- resident memory (VmRSS, the peak VmHWM, Pss) of the hub, its sale-writer process (started by one
  sale before the idle window: a store's first sale of the day starts it, and it runs all day), Mosquitto
  and the device host, and the memory they hold together (the distinct physical pages of all of them,
  from /proc/PID/pagemap: a page of the Python runtime or a library they share counts once), at idle
  and at the end of a closed loop of `bench checkout` sales (`--tills`, `--seconds`);
- bytes each process writes (`write_bytes` of /proc/PID/io: what reaches the block layer, the
  measure of SD-card wear): over an idle window (`--idle-seconds`), extrapolated to an hour, and
  per 1,000 sales from the checkout loop.

A human summary is printed, then the figures as one JSON object on the last line (`--json`: only it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from edge import bench

DEVICES = (  # (device id, profile, simulator transport)
    ("scale-1", "mettler-toledo-8217", "pty"),
    ("scanner-1", "generic-serial-scanner", "pty"),
    ("printer-1", "epson-tm-t20iii", "tcp"),
    ("display-1", "epson-dm-d110", "pty"),
)


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, and its Pss (proportional set size: each shared page divided by the
    processes that map it), in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key == "Pss":
                out["Pss"] = int(value.split()[0])
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE")
_PFN_MASK = (1 << 55) - 1
_PRESENT = 1 << 63


def _frames(pid: int) -> set[int] | None:
    """The physical page frames resident in `pid`'s address space (/proc/PID/pagemap), or None where the
    kernel hides frame numbers (they read as 0 without CAP_SYS_ADMIN). The union over the box's processes
    is the memory they hold together: a page of the runtime or a library shared by two of them counts once,
    and one shared with a process outside the box (the bench itself) counts in full."""
    frames: set[int] = set()
    with open(f"/proc/{pid}/maps", encoding="ascii") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            span = line.split(None, 1)[0]
            start_s, end_s = span.split("-")
            start, end = int(start_s, 16), int(end_s, 16)
            if start >= 1 << 47:  # [vsyscall]
                continue
            pagemap.seek(start // _PAGE * 8)
            raw = pagemap.read((end - start) // _PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", raw):
                if entry & _PRESENT:
                    frames.add(entry & _PFN_MASK)
    if frames and frames == {0}:
        return None
    frames.discard(0)
    return frames


def _together_mb(pids: dict[str, int]) -> float | None:
    union: set[int] = set()
    for pid in pids.values():
        try:
            found = _frames(pid)
        except OSError:
            return None
        if found is None:
            return None
        union |= found
    return round(len(union) * _PAGE / 2**20, 1)


def _write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


class _Line:
    """A child's stdout lines, read by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.event = threading.Event()
        self.proc = proc
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.event.set()

    def first(self, timeout: float = 15.0) -> str:
        if not self.event.wait(timeout):
            raise RuntimeError(f"no output from {self.proc.args!r} within {timeout} s")
        return self.lines[0]


def _cli(*args: str, stdin: bool = False, log: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], text=True, bufsize=1,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE if log is None else log.open("w"),
                            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    bench.stop(proc, signal.SIGTERM, timeout)


class BoxServer(bench.Server):
    """`backroom serve` with devices on (its own Mosquitto on free ports); times the cold start."""

    def __init__(self, data_dir: Path, log_path: Path, mqtt_port: int, local_port: int) -> None:
        super().__init__(data_dir, log_path)
        self.command = [c for c in self.command if c not in ("--log-level", "warning")]
        self.command += ["--mqtt-port", str(mqtt_port), "--log-level", "warning"]
        self.local_port = local_port
        self.cold_start_s = 0.0

    def __enter__(self) -> BoxServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKROOM_")}
        env.update(BACKROOM_DEVICES="1", BACKROOM_MQTT_LOCAL_PORT=str(self.local_port))
        t0 = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the hub exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base + "/healthz").status_code == 200:
                        self.cold_start_s = time.perf_counter() - t0
                        return self
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"the hub did not answer /healthz within 30 s:\n{self.log_tail()}")
                time.sleep(0.005)


def _snapshot(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    return {name: {**_status(pid), "write_bytes": _write_bytes(pid)} for name, pid in pids.items()}


def bench_footprint(args: argparse.Namespace) -> dict[str, Any]:
    from devices import broker
    from devices.host import attach
    from edge.appliance.install import compile_bytecode

    compile_bytecode(Path(__file__).resolve().parents[1])  # as installed: no start compiles its modules

    n_tills, seconds, idle_s = int(args.tills), float(args.seconds), float(args.idle_seconds)
    started: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="backroom-footprint-") as scratch:
        work = Path(scratch)
        data = work / "data"
        data.mkdir()
        bench._seed(data)
        mqtt_port = bench._free_port()
        local_port = bench._free_port()
        while local_port == mqtt_port:
            local_port = bench._free_port()
        broker.configure(data, broker.Settings(store_id="demo-001", lan_port=mqtt_port, local_port=local_port,
                                               lan_bind="127.0.0.1", advertise_host="127.0.0.1"))
        broker.add_devices(data, [(d, p) for d, p, _ in DEVICES])
        try:
            for device_id, profile, transport in DEVICES:
                sim = _cli("devices", "simulate", "--profile", profile,
                           *(["--tcp", "0"] if transport == "tcp" else []), stdin=True)
                started.append(sim)
                where = _Line(sim).first()
                attach(data, device_id, f"tcp://{where}" if transport == "tcp" else where)
            with BoxServer(data, work / "hub.log", mqtt_port, local_port) as server:
                mosquitto = broker.running_pid(data)
                if mosquitto is None:
                    raise RuntimeError(f"the hub started no Mosquitto:\n{server.log_tail()}")
                host = _cli("devices", "host", "--data", str(data))
                started.append(host)
                json.loads(_Line(host).first())
                pids = {"hub": server.pid, "mosquitto": mosquitto, "host": host.pid}
                time.sleep(2.0)  # the bridges connect, open their ports and settle
                # A store's first sale of the day starts the hub's sale-writer process (edge/sales/sale_writer.py),
                # which then runs all day: one sale first, and the process is measured with the others.
                with httpx.Client(base_url=server.base, timeout=30) as client:
                    login = bench._login(client, "BENCH-01")
                    client.headers["authorization"] = f"Bearer {login['token']}"
                    bench._start_sale_writer(client, server.pid, login["till_id"])
                writers = [p for p in bench._children(server.pid) if bench._proc_name(p) == "edge.sales.writer_proc"]
                if writers:
                    pids["sale-writer"] = writers[0]
                idle0, t0 = _snapshot(pids), time.perf_counter()
                time.sleep(idle_s)
                idle1, idle_wall = _snapshot(pids), time.perf_counter() - t0
                together_idle = _together_mb(pids)
                with httpx.Client(base_url=server.base, timeout=30) as client:
                    tills = bench._prepare_tills(client, n_tills)
                load0 = _snapshot(pids)
                tally, _ = bench._run_async(bench._checkout_http(server, tills, 0.0, seconds))
                load1 = _snapshot(pids)
                together_load = _together_mb(pids)
                cold = server.cold_start_s
                if host.poll() is not None:
                    raise RuntimeError("the device host exited during the run")
            _stop(host)
        finally:
            for proc in reversed(started):
                _stop(proc)
    sales = tally.committed
    per_hour = 3600 / idle_wall
    processes: dict[str, dict[str, Any]] = {}
    for name in pids:
        processes[name] = {
            "rss_idle_mb": _mb(idle1[name]["VmRSS"]),
            "rss_checkout_mb": _mb(load1[name]["VmRSS"]),
            "rss_peak_mb": _mb(load1[name]["VmHWM"]),
            "pss_idle_mb": _mb(idle1[name]["Pss"]),
            "pss_checkout_mb": _mb(load1[name]["Pss"]),
            "idle_write_bytes_per_hour": round((idle1[name]["write_bytes"] - idle0[name]["write_bytes"]) * per_hour),
            "write_bytes_per_1000_sales": round((load1[name]["write_bytes"] - load0[name]["write_bytes"]) * 1000
                                                / sales) if sales else None,
        }
    return {
        "bench": "footprint",
        "devices": [d for d, _, _ in DEVICES],
        "cold_start_s": round(cold, 3),
        "idle_seconds": round(idle_wall, 1),
        "tills": n_tills,
        "seconds": seconds,
        "sales": sales,
        "errors": sum(tally.errors.values()),
        "processes": processes,
        "rss_idle_total_mb": round(sum(p["rss_idle_mb"] for p in processes.values()), 1),
        "rss_checkout_total_mb": round(sum(p["rss_checkout_mb"] for p in processes.values()), 1),
        "together_idle_mb": together_idle,
        "together_checkout_mb": together_load,
        "pss_idle_total_mb": round(sum(p["pss_idle_mb"] for p in processes.values()), 1),
        "pss_checkout_total_mb": round(sum(p["pss_checkout_mb"] for p in processes.values()), 1),
        "idle_write_bytes_per_hour": sum(p["idle_write_bytes_per_hour"] for p in processes.values()),
        "write_bytes_per_1000_sales": sum(p["write_bytes_per_1000_sales"] or 0 for p in processes.values()),
        "machine": bench._machine(Path(tempfile.gettempdir())),
    }


def _summary(f: dict[str, Any]) -> list[str]:
    lines = [f"backroom bench footprint: hub + Mosquitto + device host ({', '.join(f['devices'])})",
             f"  machine     {f['machine']}",
             f"  cold start  {f['cold_start_s']} s to the first /healthz (target < 1 s:"
             f" {'met' if f['cold_start_s'] < 1 else 'MISSED'})",
             f"  {'process':10}  {'RSS idle':>9}  {'RSS load':>9}  {'peak':>7}  {'PSS idle':>9}  {'PSS load':>9}"
             f"  {'idle B/h':>12}  {'B/1000 sales':>12}"]
    for name, p in f["processes"].items():
        lines.append(f"  {name:10}  {p['rss_idle_mb']:>6} MB  {p['rss_checkout_mb']:>6} MB  {p['rss_peak_mb']:>4} MB"
                     f"  {p['pss_idle_mb']:>6} MB  {p['pss_checkout_mb']:>6} MB"
                     f"  {p['idle_write_bytes_per_hour']:>12,}  {p['write_bytes_per_1000_sales'] or 0:>12,}")
    lines += [f"  {'total':10}  {f['rss_idle_total_mb']:>6} MB  {f['rss_checkout_total_mb']:>6} MB  {'':>7}"
              f"  {f['pss_idle_total_mb']:>6} MB  {f['pss_checkout_total_mb']:>6} MB"
              f"  {f['idle_write_bytes_per_hour']:>12,}  {f['write_bytes_per_1000_sales']:>12,}",
              f"  together    {f['together_idle_mb']} MB idle, {f['together_checkout_mb']} MB under load: the distinct"
              " physical pages of these processes (RSS counts a page of the runtime or a library that several"
              " share once in each; PSS divides it also among processes outside the box, the bench's own)",
              f"  load        {f['sales']} sales by {f['tills']} tills in {f['seconds']} s, errors {f['errors']};"
              f" idle window {f['idle_seconds']} s",
              f"  target      < 150 MB resident under load (goal 100 MB): RSS summed"
              f" {'met' if f['rss_checkout_total_mb'] < 150 else 'MISSED'}, together"
              f" {'met' if (f['together_checkout_mb'] or 1e9) < 150 else 'MISSED'}"]
    return lines


def run_footprint_bench(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per setup request otherwise
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if args.tills < 1 or args.seconds <= 0 or args.idle_seconds <= 0:
        print("--tills, --seconds and --idle-seconds must be positive", file=sys.stderr)
        return 2
    figures = bench_footprint(args)
    if not args.json:
        print("\n".join(_summary(figures)))
    print(msgspec.json.encode(figures).decode(), flush=True)
    return 0
