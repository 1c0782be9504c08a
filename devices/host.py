"""All of a box's device bridges in one process: `backroom devices host --data DIR`.

One Python process per bridge costs 27-36 MB resident each (the interpreter, paho, the codecs,
python-escpos); a box with a scale, a scanner, a printer and a display paid that four times. The
host runs every attached device's `Bridge` (devices/bridge.py) in one process, each in a thread
of its own with its own port and its own MQTT connection under the device's own credentials:

- a port that never answers or blocks stalls only its own thread (port reads poll with a timeout,
  writes give up after the port's write timeout; the other bridges and their paho network threads
  go on, as the GIL is released while a thread waits on its port);
- a bridge whose loop raises is logged and started again after a backoff (0.5 s doubling to 30 s),
  with a fresh `Bridge` (port, codec and MQTT session anew; a printer's spool directory is kept);
- a bridge whose loop has not come round for `STALL_S` is logged as stalled once (what a stuck
  driver looks like), and its status on the broker says what the bridge last knew;
- SIGTERM/SIGINT stop every bridge: each publishes `offline` and disconnects; a thread stuck in
  its port is left behind (daemon) so the process still exits;
- SIGHUP reads the attached devices again (after `devices attach`/`detach`): new ones start,
  detached or changed ones stop or restart, the rest run on untouched.

Which devices run, on which port: `backroom devices attach --device-id ID --port URL` (the device
must have been registered with `devices add`) writes `mqtt/host.json` in the data directory (mode
0600: it holds each attached device's broker password, freshly rotated by `attach`, since the
registry keeps only hashes). `devices detach` takes a device out. The host connects to the
broker's LAN listener on 127.0.0.1 (or `--mqtt-host`), where device credentials are accepted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from devices.bridge import Bridge

log = logging.getLogger("backroom.host")

STALL_S = 30.0
RESTART_START_S, RESTART_MAX_S = 0.5, 30.0


class HostedDevice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    device_id: str
    profile: str
    port: str  # a device path, a pyserial URL, or tcp://host:port
    username: str
    password: str
    spool: bool = True  # printers keep queued jobs in DIR/spool/<device_id>


class HostConfig(msgspec.Struct, forbid_unknown_fields=True):
    devices: dict[str, HostedDevice] = {}


def config_path(data_dir: Path) -> Path:
    return data_dir / "mqtt" / "host.json"


def load_config(data_dir: Path) -> HostConfig:
    path = config_path(data_dir)
    if not path.exists():
        return HostConfig()
    return msgspec.json.decode(path.read_bytes(), type=HostConfig)


def _save(data_dir: Path, config: HostConfig) -> None:
    path = config_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(msgspec.json.encode(config))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def attach(data_dir: Path, device_id: str, port: str, *, spool: bool = True) -> HostedDevice:
    """Put a registered device on the host at `port`, with new broker credentials kept for the host."""
    from devices import broker

    record = next((r for r in broker.devices(data_dir) if r.device_id == device_id), None)
    if record is None:
        raise broker.BrokerError(f"no device {device_id!r}: register it with `backroom devices add` first")
    creds = broker.rotate(data_dir, device_id)
    hosted = HostedDevice(device_id=device_id, profile=record.profile, port=port, username=creds.username,
                          password=creds.password, spool=spool)
    config = load_config(data_dir)
    config.devices[device_id] = hosted
    _save(data_dir, config)
    return hosted


def detach(data_dir: Path, device_id: str) -> bool:
    config = load_config(data_dir)
    if config.devices.pop(device_id, None) is None:
        return False
    _save(data_dir, config)
    return True


class Slot:
    """One device's thread: runs its bridge, restarts it when it fails, reports a stalled loop."""

    def __init__(self, device: HostedDevice, data_dir: Path, store_id: str, mqtt_host: str, mqtt_port: int) -> None:
        self.device = device
        self.data_dir = data_dir
        self.store_id = store_id
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.stop = threading.Event()  # this device's own: a reload stops one device, not all
        self.beat = time.monotonic()  # the last time this device's loop came round
        self.restarts = 0
        self.stalled = False
        self.bridge: Bridge | None = None
        self.thread = threading.Thread(target=self._run, name=f"bridge-{device.device_id}", daemon=True)

    def _make_bridge(self) -> Bridge:
        from devices import profiles
        from devices.bridge import Bridge, MqttTarget

        profile = profiles.get(self.device.profile)
        spool = self.data_dir / "spool" / self.device.device_id if self.device.spool and profile.can("print") \
            else None
        return Bridge(profile, self.device.port, self.device.device_id, self.store_id,
                      MqttTarget(self.mqtt_host, self.mqtt_port, self.device.username, self.device.password),
                      spool_dir=spool)

    def _run(self) -> None:
        backoff = RESTART_START_S
        while not self.stop.is_set():
            try:
                bridge = self.bridge = self._make_bridge()
                bridge.stop_event = self.stop
                self._loop(bridge)
                return
            except Exception:  # noqa: BLE001 -- one device's failure must not end the others
                log.exception("bridge %s failed; restarting in %.1f s", self.device.device_id, backoff)
                self.restarts += 1
                if self.stop.wait(backoff):
                    return
                backoff = min(backoff * 2, RESTART_MAX_S)

    def _loop(self, bridge: Bridge) -> None:
        from devices.bridge import _session_properties

        bridge.client.connect_async(bridge.target.host, bridge.target.port, keepalive=30, clean_start=False,
                                    properties=_session_properties())
        bridge.client.loop_start()
        try:
            while not self.stop.is_set():
                bridge.step()
                self.beat = time.monotonic()
                if self.stalled:
                    self.stalled = False
                    log.warning("bridge %s runs again", self.device.device_id)
        finally:
            bridge.shutdown()

    def check(self, now: float) -> None:
        if not self.stalled and self.thread.is_alive() and now - self.beat > STALL_S:
            self.stalled = True
            log.warning("bridge %s has been stuck for %.0f s (its port does not return); the other devices "
                        "go on", self.device.device_id, now - self.beat)


def _slots(data_dir: Path, store: str, mqtt_host: str, port: int) -> dict[str, Slot]:
    from devices import broker

    registered = {r.device_id for r in broker.devices(data_dir)}
    slots: dict[str, Slot] = {}
    for device in load_config(data_dir).devices.values():
        if device.device_id not in registered:
            log.warning("device %s is attached but no longer registered; skipped", device.device_id)
            continue
        slots[device.device_id] = Slot(device, data_dir, store, mqtt_host, port)
    return slots


def _stop_all(slots: list[Slot], timeout_s: float = 5.0) -> None:
    for slot in slots:
        slot.stop.set()
    deadline = time.monotonic() + timeout_s
    for slot in slots:
        if slot.thread.ident is not None:
            slot.thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [s.device.device_id for s in slots if s.thread.is_alive()]
    if stuck:
        log.warning("left behind, stuck in their ports: %s", ", ".join(stuck))


def run_host(data_dir: Path, *, mqtt_host: str = "127.0.0.1", mqtt_port: int | None = None,
             store_id: str | None = None, stop: threading.Event | None = None,
             reload: threading.Event | None = None) -> int:
    """Run every attached device until `stop` is set (SIGTERM/SIGINT from the CLI). When `reload` is set
    (SIGHUP), read mqtt/host.json again: devices attached since start, detached or changed (port,
    profile, credentials) are started, stopped or restarted; the others run on untouched."""
    from devices import broker

    settings = broker.load_settings(data_dir)
    port = mqtt_port or (settings.lan_port if settings else 1883)
    store = store_id or (settings.store_id if settings else "demo-001")
    stop = stop or threading.Event()
    reload = reload or threading.Event()
    slots = _slots(data_dir, store, mqtt_host, port)
    if not slots:
        log.warning("no devices attached in %s (backroom devices attach --device-id ID --port URL)",
                    config_path(data_dir))
    for slot in slots.values():
        slot.thread.start()
    print(json.dumps({"pid": os.getpid(), "devices": sorted(slots), "mqtt_port": port}), flush=True)
    while not stop.wait(1.0):
        if reload.is_set():
            reload.clear()
            try:
                wanted = _slots(data_dir, store, mqtt_host, port)
            except (OSError, msgspec.DecodeError) as exc:  # keep what runs; say why
                log.error("cannot read %s (%s); the devices running go on", config_path(data_dir), exc)
                continue
            gone = [s for d, s in slots.items() if d not in wanted or wanted[d].device != s.device]
            _stop_all(gone)
            for slot in gone:
                del slots[slot.device.device_id]
            for device_id, slot in wanted.items():
                if device_id not in slots:
                    slots[device_id] = slot
                    slot.thread.start()
            log.info("reloaded: %s", ", ".join(sorted(slots)) or "no devices")
        now = time.monotonic()
        for slot in slots.values():
            slot.check(now)
    _stop_all(list(slots.values()))
    return 0


# -- the CLI (registered under `backroom devices` by devices/cli.py) -----------------------------------------

def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo")


def cmd_host(args: argparse.Namespace) -> int:
    stop, reload = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        load_config(_data_dir(args))
    except (OSError, msgspec.DecodeError) as exc:
        print(f"cannot read {config_path(_data_dir(args))}: {exc}", file=sys.stderr)
        return 1
    return run_host(_data_dir(args), mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, store_id=args.store,
                    stop=stop, reload=reload)


def cmd_attach(args: argparse.Namespace) -> int:
    from devices import broker

    try:
        hosted = attach(_data_dir(args), args.device_id, args.port, spool=not args.no_spool)
    except broker.BrokerError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({"device_id": hosted.device_id, "profile": hosted.profile, "port": hosted.port,
                      "config": str(config_path(_data_dir(args)))}))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    if not detach(_data_dir(args), args.device_id):
        print(f"device {args.device_id!r} is not attached", file=sys.stderr)
        return 2
    return 0


def register(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`backroom devices host | attach | detach`."""
    host = dsub.add_parser("host", help="run every attached device's bridge in one process, a thread each")
    host.add_argument("--data")
    host.add_argument("--mqtt-host", default="127.0.0.1", help="the broker's LAN listener host")
    host.add_argument("--mqtt-port", type=int, default=None, help="default: the broker's configured LAN port")
    host.add_argument("--store", default=None, help="default: the broker's configured store id")
    host.set_defaults(fn=cmd_host)

    att = dsub.add_parser("attach", help="run a registered device in `devices host` at this port (new credentials)")
    att.add_argument("--device-id", required=True)
    att.add_argument("--port", required=True, help="a device path, a pyserial URL, or tcp://host:port")
    att.add_argument("--no-spool", action="store_true", help="printers: keep no on-disk spool")
    att.add_argument("--data")
    att.set_defaults(fn=cmd_attach)

    det = dsub.add_parser("detach", help="take a device out of `devices host`")
    det.add_argument("--device-id", required=True)
    det.add_argument("--data")
    det.set_defaults(fn=cmd_detach)
