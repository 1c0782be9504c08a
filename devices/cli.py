"""The `backroom devices`, `backroom mqtt` and `backroom profiles` commands (registered by edge/cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devices.broker import Settings

log = logging.getLogger("backroom.devices")


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo")


def _store_id(args: argparse.Namespace, data_dir: Path | None = None) -> str:
    """--store, else the hub's own store id (its database), else BACKROOM_STORE, else demo-001."""
    if getattr(args, "store", None):
        return str(args.store)
    if data_dir is not None and (data_dir / "hub.sqlite3").exists():
        try:
            conn = sqlite3.connect(f"file:{data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
            finally:
                conn.close()
            if row:
                return str(row[0])
        except sqlite3.Error:
            pass
    return os.environ.get("BACKROOM_STORE") or "demo-001"


def _broker_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    from devices import broker

    current = broker.load_settings(data_dir)
    # A flag, else the environment (systemd, make run), else what was configured before, else the default.
    env_port, env_local = os.environ.get("BACKROOM_MQTT_PORT"), os.environ.get("BACKROOM_MQTT_LOCAL_PORT")
    lan_port = getattr(args, "port", None) or (int(env_port) if env_port else None) \
        or (current.lan_port if current else 1883)
    local_port = getattr(args, "local_port", None) or (int(env_local) if env_local else None) \
        or (current.local_port if current and current.lan_port == lan_port else lan_port + 1)
    return broker.Settings(
        store_id=_store_id(args, data_dir) if (getattr(args, "store", None) or not current) else current.store_id,
        lan_port=lan_port, local_port=local_port,
        lan_bind=getattr(args, "bind", None) or (current.lan_bind if current else "0.0.0.0"),
        advertise_host=getattr(args, "advertise_host", None) or (current.advertise_host if current else ""))


# --- profiles -----------------------------------------------------------------------------------

def cmd_profiles_check(args: argparse.Namespace) -> int:
    from devices import profiles
    from devices.vectors import check_profile

    directory = Path(args.dir) if args.dir else profiles.profiles_dir()
    failures = 0
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        print(f"no profiles in {directory}", file=sys.stderr)
        return 1
    for path in paths:
        try:
            profile = profiles.load(path)
        except profiles.ProfileError as exc:
            failures += 1
            print(f"FAIL {path.name}: {exc}")
            continue
        problems = check_profile(profile)
        if problems:
            failures += 1
            print(f"FAIL {profile.id}: " + "; ".join(problems))
        else:
            print(f"ok   {profile.id} ({profile.kind}, {profile.protocol.__struct_config__.tag}): "
                  f"{len(profile.vectors)} vectors pass against codec and simulator")
    print(f"{len(paths) - failures} of {len(paths)} profiles pass")
    return 1 if failures else 0


def cmd_profiles_list(args: argparse.Namespace) -> int:
    from devices import profiles

    for profile in profiles.load_all().values():
        print(f"{profile.id:32} {profile.kind:8} {profile.vendor} {profile.model}")
    return 0


# --- devices ------------------------------------------------------------------------------------

def cmd_devices_add(args: argparse.Namespace) -> int:
    from devices import broker, profiles

    try:
        profiles.get(args.profile)
    except profiles.ProfileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    if broker.load_settings(data_dir) is None:
        broker.configure(data_dir, _broker_settings(args, data_dir))
    try:
        creds = broker.add_device(data_dir, args.device_id, args.profile)
    except broker.BrokerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(broker.credentials_json(creds))
    return 0


def cmd_devices_rotate(args: argparse.Namespace) -> int:
    from devices import broker

    try:
        creds = broker.rotate(_data_dir(args), args.device_id)
    except broker.BrokerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(broker.credentials_json(creds))
    return 0


def cmd_devices_remove(args: argparse.Namespace) -> int:
    from devices import broker

    try:
        broker.remove_device(_data_dir(args), args.device_id)
    except broker.BrokerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    from devices import broker

    for record in broker.devices(_data_dir(args)):
        print(json.dumps({"device_id": record.device_id, "profile": record.profile, "username": record.username,
                          "created_at": record.created_at, "rotated_at": record.rotated_at}))
    return 0


def cmd_devices_simulate(args: argparse.Namespace) -> int:
    from devices import profiles
    from devices.profiles import TcpTransport
    from devices.simulators.factory import make_simulator
    from devices.simulators.runner import run

    try:
        profile = profiles.get(args.profile)
    except profiles.ProfileError as exc:
        print(str(exc), file=sys.stderr)
        return 2

    def show(text: str) -> None:
        print(f"--- {profile.kind} ---\n{text}\n--- end ---", flush=True)

    sim = make_simulator(profile, on_output=show, out_dir=Path(args.out) if args.out else None)
    if args.weight is not None:
        sim.control(["weight", str(args.weight)])
    tcp_port = args.tcp
    if tcp_port is None and isinstance(profile.transport, TcpTransport):
        tcp_port = profile.transport.port
    return run(sim, tcp_port=tcp_port, host=args.host)


def cmd_devices_bridge(args: argparse.Namespace) -> int:
    from devices import profiles
    from devices.bridge import Bridge, MqttTarget

    try:
        profile = profiles.get(args.profile)
    except profiles.ProfileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    url = args.mqtt or os.environ.get("BACKROOM_MQTT_URL") or "mqtt://127.0.0.1:1883"
    try:
        target = MqttTarget.parse(url)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    # `devices add` prints the mqtt_url and the credentials apart: they may come as options or from the
    # environment (a systemd unit's EnvironmentFile keeps the password off the command line).
    username = args.username or os.environ.get("BACKROOM_MQTT_USERNAME")
    password = args.password or os.environ.get("BACKROOM_MQTT_PASSWORD")
    if username or password:
        target = dataclasses.replace(target, username=username or target.username,
                                     password=password or target.password)
    bridge = Bridge(profile, args.port, args.device_id, _store_id(args), target,
                    spool_dir=Path(args.spool) if args.spool else None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: bridge.stop_event.set())
    bridge.run()
    return 0


# --- mqtt -----------------------------------------------------------------------------------------

def cmd_mqtt_observer(args: argparse.Namespace) -> int:
    from devices import broker

    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    if broker.load_settings(data_dir) is None:
        broker.configure(data_dir, _broker_settings(args, data_dir))
    print(broker.credentials_json(broker.observer_credentials(data_dir)))
    return 0


def cmd_mqtt_config(args: argparse.Namespace) -> int:
    from devices import broker

    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = broker.configure(data_dir, _broker_settings(args, data_dir))
    print(json.dumps({"conf": str(broker.Paths(data_dir).conf), "lan_port": settings.lan_port,
                      "local_port": settings.local_port, "store_id": settings.store_id}))
    return 0


def cmd_mqtt_broker(args: argparse.Namespace) -> int:
    """Run the managed Mosquitto in the foreground (what `make run` and tests use; systemd runs it directly)."""
    from devices import broker

    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with broker.Broker(data_dir, _broker_settings(args, data_dir)) as running:
        assert running.settings is not None
        print(json.dumps({"lan_port": running.settings.lan_port, "local_port": running.settings.local_port,
                          "pid": running.proc.pid if running.proc else None}), flush=True)
        while not stop.wait(0.5):
            if running.proc is None or running.proc.poll() is not None:
                print("mosquitto exited", file=sys.stderr)
                return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `devices`, `mqtt` and `profiles` command groups to the `backroom` parser."""
    devices = sub.add_parser("devices", help="device registry, simulators and bridges")
    dsub = devices.add_subparsers(dest="devices_command", required=True)

    add = dsub.add_parser("add", help="register an approved device; prints its broker credentials as JSON")
    add.add_argument("--device-id", required=True)
    add.add_argument("--profile", required=True)
    add.add_argument("--data")
    add.add_argument("--store")
    add.set_defaults(fn=cmd_devices_add)

    rotate = dsub.add_parser("rotate", help="new broker credentials for a device")
    rotate.add_argument("--device-id", required=True)
    rotate.add_argument("--data")
    rotate.set_defaults(fn=cmd_devices_rotate)

    remove = dsub.add_parser("remove", help="withdraw a device's broker credentials")
    remove.add_argument("--device-id", required=True)
    remove.add_argument("--data")
    remove.set_defaults(fn=cmd_devices_remove)

    listing = dsub.add_parser("list", help="registered devices, one JSON line each")
    listing.add_argument("--data")
    listing.set_defaults(fn=cmd_devices_list)

    simulate = dsub.add_parser("simulate", help="run a simulated device; the first line is its pty or host:port")
    simulate.add_argument("--profile", required=True)
    simulate.add_argument("--tcp", type=int, default=None, help="serve on TCP (0: any free port) instead of a pty")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--weight", type=int, default=None, help="scales: grams on the platter at start")
    simulate.add_argument("--out", default=None, help="printers: write each page as .txt and .png here")
    simulate.set_defaults(fn=cmd_devices_simulate)

    bridge = dsub.add_parser("bridge", help="run one device's bridge to the broker")
    bridge.add_argument("--profile", required=True)
    bridge.add_argument("--port", required=True, help="a device path, a pyserial URL, or tcp://host:port")
    bridge.add_argument("--device-id", required=True)
    bridge.add_argument("--mqtt", default=None, help="mqtt://[user:password@]host:port (or BACKROOM_MQTT_URL)")
    bridge.add_argument("--username", default=None, help="broker user, as `devices add` printed it "
                        "(or BACKROOM_MQTT_USERNAME); overrides one in the URL")
    bridge.add_argument("--password", default=None, help="broker password (better: BACKROOM_MQTT_PASSWORD)")
    bridge.add_argument("--store", default=None)
    bridge.add_argument("--spool", default=None, help="printers: keep queued jobs in this directory")
    bridge.set_defaults(fn=cmd_devices_bridge)

    from devices.host import register as register_host

    register_host(dsub)  # devices host | attach | detach: all of a box's bridges in one process

    mqtt = sub.add_parser("mqtt", help="the hub's managed Mosquitto")
    msub = mqtt.add_subparsers(dest="mqtt_command", required=True)
    observer = msub.add_parser("observer", help="read-only credentials for the store's topics, as JSON")
    observer.add_argument("--data")
    observer.set_defaults(fn=cmd_mqtt_observer)
    for name, fn, text in (("config", cmd_mqtt_config, "write mosquitto.conf, password files and ACLs"),
                           ("broker", cmd_mqtt_broker, "run the managed Mosquitto in the foreground")):
        cmd = msub.add_parser(name, help=text)
        cmd.add_argument("--data")
        cmd.add_argument("--store")
        cmd.add_argument("--port", type=int, default=None, help="LAN listener port (BACKROOM_MQTT_PORT)")
        cmd.add_argument("--local-port", type=int, default=None, help="the hub's localhost listener port")
        cmd.add_argument("--bind", default=None, help="LAN listener address (default 0.0.0.0)")
        cmd.add_argument("--advertise-host", default=None, help="host put in the mqtt_url given to devices")
        cmd.set_defaults(fn=fn)

    profiles = sub.add_parser("profiles", help="firmware profiles")
    psub = profiles.add_subparsers(dest="profiles_command", required=True)
    check = psub.add_parser("check", help="validate every profile and run its vectors against codec and simulator")
    check.add_argument("--dir", default=None)
    check.set_defaults(fn=cmd_profiles_check)
    plist = psub.add_parser("list", help="the known device models")
    plist.set_defaults(fn=cmd_profiles_list)
