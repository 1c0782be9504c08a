"""`make chain`: the demo chain in the foreground — a demo HQ, both demo stores paired to it, each with its
simulated devices — and everything it started stopped on SIGINT/SIGTERM.

1. Start the demo HQ (`backroom hq serve --demo`, SQLite in `{root}/hq/hq.sqlite3`).
2. Seed each demo store (`demo-001`, `demo-002`) in its own data directory when it is empty, and start
   its hub with `--hq`: a demo store pairs with a demo HQ by itself. Each hub has its own HTTP port and
   MQTT port (and, as in `make run`, its own Mosquitto, whose localhost listener takes the MQTT port + 1).
3. Start each store's demo devices exactly as `make run` does (edge/run_demo.py): a simulator and a
   bridge per device, on that store's broker.
4. Wait until HQ lists both stores as paired, then print the console URL, both tablet URLs and the
   demo logins. Lines typed here drive the simulators: `demo-002 scale-1 weight 1500` (the store may
   be left out for demo-001).

Environment: `BACKROOM_CHAIN_DATA` (default `./var/chain`), `BACKROOM_HQ_PORT` (8090), `BACKROOM_PORT`
(8080: demo-001; demo-002 takes the next port), `BACKROOM_MQTT_PORT` (1883: demo-001; demo-002 takes
the port two above, as each broker also listens on its port + 1). Logs of HQ and the hubs go to
`{root}/logs/`. The same process-group and parent-death rules as `make run` apply to every child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from edge.cli import main
from edge.run_demo import (
    DEMO_CONFIG,
    DEMO_DEVICES,
    Child,
    Supervisor,
    _die_with_parent,
    _start_devices,
    _wait_healthy,
)

CHAIN_STORES = ("demo-001", "demo-002")
HQ_LOGIN = ("hq", "hq-demo")
# Variables of `make run` that must not leak into the chain's children: each child gets its own by argument.
_OWN_VARS = ("BACKROOM_DATA", "BACKROOM_PORT", "BACKROOM_MQTT_PORT", "BACKROOM_STORE", "BACKROOM_HQ",
             "BACKROOM_HQ_PORT", "BACKROOM_HQ_DB", "BACKROOM_MQTT_LOCAL_PORT")


@dataclass(frozen=True)
class StorePlan:
    store_id: str
    data: Path
    port: int
    mqtt_port: int


def plan_stores(root: Path, port: int, mqtt_port: int) -> list[StorePlan]:
    """Each store's directory and ports: HTTP ports one apart, MQTT ports two apart (port + 1 is the broker's
    localhost listener)."""
    return [StorePlan(store, root / store, port + n, mqtt_port + 2 * n) for n, store in enumerate(CHAIN_STORES)]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OWN_VARS}
    return env


def _paired_stores(hq_url: str) -> set[str]:
    """Stores HQ lists as paired (empty on any error: HQ may be starting)."""
    with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
        login = httpx.post(f"{hq_url}/hq/v1/auth/login", json={"username": HQ_LOGIN[0], "password": HQ_LOGIN[1]},
                           timeout=5)
        token = login.json()["token"]
        listed = httpx.get(f"{hq_url}/hq/v1/stores", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        return {s["store_id"] for s in listed.json()["stores"] if s.get("paired")}
    return set()


def _wait_paired(hq_url: str, stop: threading.Event, timeout_s: float = 60.0) -> set[str]:
    deadline = time.monotonic() + timeout_s
    paired: set[str] = set()
    while time.monotonic() < deadline and not stop.is_set():
        paired = _paired_stores(hq_url)
        if paired >= set(CHAIN_STORES):
            break
        stop.wait(0.3)
    return paired


def _console(devices: dict[str, dict[str, Child]], stop: threading.Event) -> None:
    """`[store] <device> <command>` typed here goes to that store's simulator (the first store by default)."""
    first = CHAIN_STORES[0]
    for line in sys.stdin:
        if stop.is_set():
            return
        words = line.split()
        if not words:
            continue
        store = words[0] if words[0] in devices else first
        if words[0] in devices:
            words = words[1:]
        sims = devices.get(store, {})
        target = sims.get(words[0]) if words else None
        if target is None and words:
            target = next((c for name, c in sims.items() if name.startswith(words[0])), None)
        if target is None or target.proc.stdin is None or len(words) < 2:
            print(f"[chain] say `[store] <device> <command>`; stores: {', '.join(devices)}; "
                  f"devices: {', '.join(d.device_id for d in DEMO_DEVICES)}", flush=True)
            continue
        with contextlib.suppress(BrokenPipeError, OSError):
            target.proc.stdin.write((" ".join(words[1:]) + "\n").encode())
            target.proc.stdin.flush()


def _prepare_store(plan: StorePlan) -> int:
    if not (plan.data / "hub.sqlite3").exists():
        code = main(["seed", "--demo", "--store", plan.store_id, "--data", str(plan.data)])
        if code:
            return code
    config = plan.data / "demo-hub.toml"
    if not config.exists():
        config.write_text(DEMO_CONFIG.format(store=plan.store_id), "utf-8")
    return 0


def run() -> int:
    from devices import broker

    root = Path(os.environ.get("BACKROOM_CHAIN_DATA") or "var/chain")
    hq_port = int(os.environ.get("BACKROOM_HQ_PORT") or 8090)
    plans = plan_stores(root, int(os.environ.get("BACKROOM_PORT") or 8080),
                        int(os.environ.get("BACKROOM_MQTT_PORT") or 1883))
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        code = _prepare_store(plan)
        if code:
            return code

    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _die_with_parent()  # `make chain` does not pass SIGTERM on: stop too when it goes
    if os.getppid() == 1:
        stop.set()
    supervisor = Supervisor()
    env = _child_env()
    brokers_before = {plan.store_id: broker.running_pid(plan.data) for plan in plans}
    hq_url = f"http://127.0.0.1:{hq_port}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    code = 0
    try:
        hq = supervisor.spawn("hq", ["hq", "serve", "--demo", "--db", str(root / "hq" / "hq.sqlite3"), "--port",
                                     str(hq_port), "--log-level", "warning"], env=env, log=logs / "hq.log")
        if not _wait_healthy(hq_url, hq, stop):
            if stop.is_set():
                return 0
            print(f"[chain] HQ did not start (exit {hq.proc.poll()}); see {logs / 'hq.log'}", flush=True)
            return 1
        hubs: dict[str, Child] = {}
        for plan in plans:
            hubs[plan.store_id] = supervisor.spawn(
                plan.store_id, ["serve", "--data", str(plan.data), "--port", str(plan.port), "--mqtt-port",
                                str(plan.mqtt_port), "--hq", hq_url, "--config", str(plan.data / "demo-hub.toml"),
                                "--log-level", "warning"], env=env, log=logs / f"{plan.store_id}.log")
        for plan in plans:
            if not _wait_healthy(f"http://127.0.0.1:{plan.port}", hubs[plan.store_id], stop):
                if stop.is_set():
                    return 0
                print(f"[chain] the hub of {plan.store_id} did not start (exit {hubs[plan.store_id].proc.poll()}); "
                      f"see {logs / (plan.store_id + '.log')}", flush=True)
                return 1
        devices: dict[str, dict[str, tuple[Child, str]]] = {}
        for plan in plans:
            settings = broker.load_settings(plan.data)
            on = broker.running_pid(plan.data) is not None and settings is not None \
                and broker.wait_for_port("127.0.0.1", settings.lan_port, 5.0)
            if on and settings is not None and not stop.is_set():
                devices[plan.store_id] = _start_devices(supervisor, plan.data, plan.data / "printer" / stamp,
                                                        settings.store_id, settings.lan_port,
                                                        label=f"{plan.store_id} ")
        paired = _wait_paired(hq_url, stop)
        if stop.is_set():
            return 0
        _banner(hq_port, plans, devices, paired, logs)
        if devices:
            sims = {store: {name: c for name, (c, _) in started.items()} for store, started in devices.items()}
            threading.Thread(target=_console, args=(sims, stop), daemon=True).start()
        servers = [hq, *hubs.values()]
        while not stop.wait(0.5):
            gone = next((c for c in servers if c.proc.poll() is not None), None)
            if gone is not None:
                print(f"[chain] {gone.name} exited ({gone.proc.returncode}); stopping; see {logs}", flush=True)
                code = 1
                break
            for child in supervisor.children:
                if child not in servers and child.proc.poll() is not None and not child.reported:
                    print(f"[chain] {child.name} exited ({child.proc.returncode})", flush=True)
                    child.reported = True
    finally:
        print("[chain] stopping the bridges, simulators, hubs and HQ", flush=True)
        supervisor.stop_all()
        for plan in plans:
            orphan = broker.running_pid(plan.data)
            if orphan is not None and orphan != brokers_before[plan.store_id]:  # a hub died without its broker
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan, signal.SIGTERM)
        print("[chain] stopped", flush=True)
    return code


def _banner(hq_port: int, plans: list[StorePlan], devices: dict[str, dict[str, tuple[Child, str]]],
            paired: set[str], logs: Path) -> None:
    from devices.broker import lan_address

    host = lan_address()
    lines = ["", "Backroom demo chain is running.",
             f"  HQ console    http://{host}:{hq_port}/hq/ui   (简体中文 / English)",
             f"  HQ API        http://{host}:{hq_port}/hq/v1"]
    for plan in plans:
        state = "paired" if plan.store_id in paired else "NOT paired yet (see its log)"
        lines.append(f"  {plan.store_id:<13} tablet http://{host}:{plan.port}/ui   till API "
                     f"http://{host}:{plan.port}/api/v1   MQTT {plan.mqtt_port}   {state}")
        if plan.store_id not in devices:
            lines.append("                devices OFF: the hub could not start its Mosquitto (see its log)")
    from hq_sync.server.service.demo import DEMO_USERS

    logins = [f"{user} / {password} ({role}{', ' + ', '.join(regions) if regions else ''})"
              for user, password, role, regions in DEMO_USERS]
    lines.append("  Console       " + "\n                ".join(logins))
    lines += [
        "  Tablets       manager / manager-demo (store manager), cashier / PIN 1234 (cashier),",
        "                guide / PIN 5678 (sales guide), region / region-demo (region manager)",
        "  Demo member   M000001, phone 13800138000, card 8800000001 (gold)",
        f"  Logs          {logs}",
    ]
    if devices:
        lines.append("  Type here to drive the simulators: `demo-002 scale-1 weight 1500`, "
                     "`scanner-1 scan 6901234567892`")
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(run())
