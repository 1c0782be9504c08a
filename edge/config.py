"""Hub configuration: one strict Struct, from defaults, an optional TOML file and the environment."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from edge.catalog.barcodes import VariableMeasureLayout


class TillDevices(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The devices paired with one till (device ids in the broker's registry); the drawer is usually a printer."""

    printer: str | None = None
    drawer: str | None = None
    display: str | None = None
    scale: str | None = None
    scanner: str | None = None


class HubConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    data_dir: Path = Path("var/demo")
    store_id: str = "demo-001"
    host: str = "0.0.0.0"
    port: int = 8080
    mqtt_port: int = 1883
    hq_url: str | None = None
    # Without hq_url, sync with the HQ this hub was paired with (the tablet's pairing page, `backroom pair`): the
    # appliance's /etc/backroom/backroom.toml sets it (docs/appliance.md).
    hq_from_pairing: bool = False
    timezone: str = "Asia/Shanghai"
    token_ttl_s: int = 12 * 3600
    max_body_bytes: int = 256 * 1024
    barcode_layout: VariableMeasureLayout = VariableMeasureLayout()
    points_valid_months: int = 24  # points expire at the end of the month this many months after earning; 0 = never
    return_clawback: bool = False  # a return below a 满减 threshold gives back the lost discount (docs/promotions.md)
    till_float: int = 50000  # fen: each till's opening float, unless the manager sets another for the day (edge/eod)
    cash_variance_alert: int = 1000  # fen: a cash count off by more than this is an end-of-day anomaly
    # Devices (docs/devices.md): the hub's Mosquitto, its MQTT client and mDNS. Off with BACKROOM_DEVICES=0.
    devices_enabled: bool = True
    mqtt_local_port: int | None = None  # the hub's own localhost listener; default mqtt_port + 1
    mqtt_bind: str = "0.0.0.0"
    mqtt_advertise_host: str = ""  # the host in the mqtt_url handed to devices; empty: this host's LAN address
    mdns_enabled: bool = True
    # Print the box's status ticket once per boot (edge/appliance/first_boot.py); the appliance's config sets it.
    status_ticket: bool = False
    store_name: str = ""  # printed on receipts; empty: "Backroom {store_id}"
    tills: dict[str, TillDevices] = {}  # till id (or "*" for any till) -> its paired devices
    # Replenishment suggestions (edge/stock/insights.py): days until an order arrives, days it should last.
    replenish_lead_days: int = 2
    replenish_cover_days: int = 7
    # Appliance care (docs/appliance-care.md): where `backroom backup` writes and the damaged-database
    # message looks (default <data>/backups), and the free space below which doctor and the tablet warn.
    backup_dir: Path | None = None
    disk_low_mb: int = 1024
    # Where sales are committed (docs/performance.md, "Fourth round"): "process" = the sale-writer process on the
    # second core, "thread" = the hub's own writer thread (diagnosis, comparison). BACKROOM_SALE_WRITER overrides.
    sale_writer: Literal["process", "thread"] = "process"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hub.sqlite3"

    @property
    def backups_dir(self) -> Path:
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"


def load_config(
    config_file: Path | None = None, *, data_dir: Path | None = None, port: int | None = None,
    mqtt_port: int | None = None, hq_url: str | None = None, store_id: str | None = None,
) -> HubConfig:
    """Defaults < config file < environment (BACKROOM_*) < command-line arguments."""
    raw: dict[str, object] = {}
    if config_file is not None:
        raw.update(tomllib.loads(config_file.read_text("utf-8")))
    env = os.environ
    for key, var in (("data_dir", "BACKROOM_DATA"), ("port", "BACKROOM_PORT"), ("mqtt_port", "BACKROOM_MQTT_PORT"),
                     ("hq_url", "BACKROOM_HQ"), ("store_id", "BACKROOM_STORE"), ("devices_enabled", "BACKROOM_DEVICES"),
                     ("mqtt_local_port", "BACKROOM_MQTT_LOCAL_PORT"), ("backup_dir", "BACKROOM_BACKUP_DIR"),
                     ("sale_writer", "BACKROOM_SALE_WRITER")):
        if env.get(var):
            raw[key] = env[var]
    for key, value in (("data_dir", data_dir), ("port", port), ("mqtt_port", mqtt_port), ("hq_url", hq_url),
                       ("store_id", store_id)):
        if value is not None:
            raw[key] = value
    # The stored store id wins over defaults: a hub's data belongs to one store.
    return msgspec.convert(raw, HubConfig, strict=False, dec_hook=_dec_hook)


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is Path and isinstance(obj, (str, Path)):
        return Path(obj)
    raise NotImplementedError
