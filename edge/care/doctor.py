"""`backroom doctor`: the box's checks, each with what it saw and what to do about it.

Checks (in this order): broker, disk, database, clock, hq, devices. Each returns a `Check`
`{"name", "ok", "detail", "remedy"}`; the command exits 0 only when every check is ok. The doctor
reads the data directory only (the database read-only); it runs beside a live hub.

`/healthz` carries the same components from the running hub's own state (`component_states`): the
same names and the same verdicts, without opening a second broker connection or walking the journal
on every poll.
"""

from __future__ import annotations

import datetime
import email.utils
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from edge.config import HubConfig

MIN_YEAR = 2024  # a box whose clock reads earlier lost its time (no RTC on a Pi, no NTP yet)
MAX_YEAR = 2100
MAX_SKEW_S = 120.0  # against HQ's Date header


class Check(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str
    remedy: str = ""


class Report(msgspec.Struct, frozen=True):
    ok: bool
    checks: list[Check]


# -- pure verdicts, shared by the doctor and /healthz -----------------------------------------------------------

def disk_check(data_dir: Path, low_mb: int) -> Check:
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError as exc:
        return Check("disk", False, f"cannot read free space of {data_dir}: {exc}",
                     "check that the data directory exists and its file system is mounted")
    free_mb = usage.free // (1024 * 1024)
    detail = f"{free_mb} MB free of {usage.total // (1024 * 1024)} MB on {data_dir}"
    if free_mb < low_mb:
        return Check("disk", False, f"{detail}; below the {low_mb} MB warning level",
                     "free space on the data file system (old backups, logs: journalctl --vacuum-size=50M) "
                     "or move the data to a larger card; sales are refused with 507 storage_full when it is full")
    return Check("disk", True, detail)


def clock_check(now: datetime.datetime, hq_date: datetime.datetime | None = None) -> Check:
    if not MIN_YEAR <= now.year < MAX_YEAR:
        return Check("clock", False, f"the clock reads {now.isoformat(timespec='seconds')}",
                     "set the time (timedatectl set-ntp true, or timedatectl set-time) and restart the hub")
    if hq_date is not None:
        skew = (now - hq_date).total_seconds()
        if abs(skew) > MAX_SKEW_S:
            return Check("clock", False, f"{skew:+.0f} s off HQ's clock (more than {MAX_SKEW_S:.0f} s)",
                         "turn on time synchronisation: timedatectl set-ntp true")
        return Check("clock", True, f"{now.isoformat(timespec='seconds')}, {skew:+.0f} s from HQ")
    return Check("clock", True, now.isoformat(timespec="seconds"))


def devices_check(statuses: dict[str, str]) -> Check:
    if not statuses:
        return Check("devices", True, "no devices registered")
    offline = sorted(d for d, s in statuses.items() if s != "online")
    if offline:
        return Check("devices", False, f"{len(offline)} of {len(statuses)} offline: {', '.join(offline)}",
                     "check the device's cable and power, then its bridge: systemctl status 'backroom-bridge@*'")
    return Check("devices", True, f"{len(statuses)} online")


# -- the doctor's own probes ---------------------------------------------------------------------------------

def _database_check(config: HubConfig) -> Check:
    from edge.storage.backup import check_database  # tarfile and the manifests: not for the hub's /healthz

    path = config.db_path
    if not path.exists():
        return Check("database", False, f"no hub database at {path}",
                     "seed the store (backroom seed) or restore a backup (backroom restore FILE)")
    problems, head = check_database(path)
    if problems:
        return Check("database", False, "; ".join(problems),
                     f"stop the hub and restore the last good backup: backroom restore FILE --data {config.data_dir}")
    journal = f", journal {head.count} records" if head else ""
    return Check("database", True, f"integrity ok{journal}")


def _sync_target(config: HubConfig) -> str | None:
    """HQ's URL when the hub is paired (its sync state), else the configured one, else None."""
    if config.db_path.exists():
        try:
            conn = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT hq_url FROM sync_state LIMIT 1").fetchone()
            finally:
                conn.close()
            if row and row[0]:
                return str(row[0])
        except sqlite3.Error:
            pass
    return config.hq_url


def _hq_checks(config: HubConfig, now: datetime.datetime) -> tuple[Check, datetime.datetime | None]:
    import httpx

    url = _sync_target(config)
    if not url:
        return Check("hq", True, "not paired (a standalone store)"), None
    try:
        resp = httpx.get(url.rstrip("/") + "/healthz", timeout=5.0)
    except httpx.HTTPError as exc:
        return Check("hq", False, f"HQ at {url} did not answer: {exc}",
                     "check the box's network and HQ's address; sales go on and sync catches up later"), None
    date = resp.headers.get("date")
    hq_date = email.utils.parsedate_to_datetime(date) if date else None
    if resp.status_code != 200:
        return Check("hq", False, f"HQ at {url} answered {resp.status_code}",
                     "ask HQ's operator; sales go on and sync catches up later"), hq_date
    return Check("hq", True, f"HQ at {url} answers"), hq_date


def _broker_probe(config: HubConfig, store_id: str, wait_s: float = 5.0) -> tuple[Check, dict[str, str] | None]:
    """Log in to the hub's broker as the hub does (its localhost listener) and read every device's retained
    status: (the broker check, device id -> status or None when the broker could not be read)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from devices import broker, topics

    settings = broker.load_settings(config.data_dir)
    if settings is None:
        return (Check("broker", False, f"no broker configuration in {config.data_dir / 'mqtt'}",
                      "start the hub once with devices on (it writes the broker's files), or backroom install"), None)
    creds = broker.hub_credentials(config.data_dir)
    registered = {r.device_id for r in broker.devices(config.data_dir)}
    statuses: dict[str, str] = dict.fromkeys(registered, "unknown")
    connected = threading.Event()
    subscribed = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            connected.set()
            return
        connected.set()
        client.subscribe(f"{topics.root(store_id)}/dev/+/status", qos=1)

    def on_subscribe(*_args: object) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) >= 2 and parts[-2] in statuses:
            text = message.payload.decode("utf-8", "replace").strip().strip('"')
            statuses[parts[-2]] = text if text in ("online", "offline") else "unknown"

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"backroom-doctor-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(creds.username, creds.password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    where = f"127.0.0.1:{settings.local_port}"
    remedy = "start the broker: systemctl restart backroom-hub (or mosquitto), and see mosquitto.log in the data dir"
    try:
        client.connect("127.0.0.1", settings.local_port, keepalive=10)
    except OSError as exc:
        return Check("broker", False, f"cannot connect to the broker at {where}: {exc}", remedy), None
    client.loop_start()
    try:
        if not connected.wait(wait_s):
            return Check("broker", False, f"no answer from the broker at {where}", remedy), None
        if refused:
            return (Check("broker", False, f"the broker at {where} refused the hub's login: {refused[0]}",
                          "the broker's password files are out of date: restart the hub, which rewrites them"), None)
        if subscribed.wait(wait_s):
            time.sleep(0.3)  # retained messages follow the SUBACK at once
        return Check("broker", True, f"the broker answers at {where}"), statuses
    finally:
        client.disconnect()
        client.loop_stop()


def _store_id(config: HubConfig) -> str:
    if config.db_path.exists():
        try:
            conn = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
            finally:
                conn.close()
            if row:
                return str(row[0])
        except sqlite3.Error:
            pass
    return config.store_id


def run(config: HubConfig) -> Report:
    now = datetime.datetime.now(datetime.UTC)
    if config.devices_enabled:
        broker_check, statuses = _broker_probe(config, _store_id(config))
        if statuses is None:
            device = Check("devices", False, "device status unknown: the broker could not be read",
                           "mend the broker first (see the broker check)")
        else:
            device = devices_check(statuses)
    else:
        broker_check = Check("broker", True, "devices are off on this hub (devices_enabled = false)")
        device = Check("devices", True, "devices are off on this hub")
    hq, hq_date = _hq_checks(config, now)
    checks = [broker_check, disk_check(config.data_dir, config.disk_low_mb), _database_check(config),
              clock_check(now, hq_date), hq, device]
    return Report(ok=all(c.ok for c in checks), checks=checks)
