"""Hub configuration: one strict Struct, from defaults, an optional TOML file and the environment."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import msgspec

from edge.catalog.barcodes import VariableMeasureLayout


class HubConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    data_dir: Path = Path("var/demo")
    store_id: str = "demo-001"
    host: str = "0.0.0.0"
    port: int = 8080
    mqtt_port: int = 1883
    hq_url: str | None = None
    timezone: str = "Asia/Shanghai"
    token_ttl_s: int = 12 * 3600
    max_body_bytes: int = 256 * 1024
    barcode_layout: VariableMeasureLayout = VariableMeasureLayout()
    return_clawback: bool = False  # a return below a 满减 threshold gives back the lost discount (docs/promotions.md)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hub.sqlite3"


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
                     ("hq_url", "BACKROOM_HQ"), ("store_id", "BACKROOM_STORE")):
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
