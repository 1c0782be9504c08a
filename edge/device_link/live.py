"""What the hub knows of each device right now, from its MQTT messages: birth, status, last readings.

The paho thread calls `Board.apply` for every message, so it only parses the topic and keeps the
payload's bytes; readings are decoded when someone asks (`view`). The board never blocks: at 200
devices x 10 readings a second this is most of what the hub does for devices.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Literal, TypeVar

import msgspec

from devices import topics
from devices.broker import DeviceRecord
from edge.lazy_import import LazyDecoder

T = TypeVar("T")
Status = Literal["online", "offline", "unknown"]
_birth = LazyDecoder(lambda: msgspec.json.Decoder(topics.Birth))  # built on first use
_weight = LazyDecoder(lambda: msgspec.json.Decoder(topics.WeightEvent))
_scan = LazyDecoder(lambda: msgspec.json.Decoder(topics.ScanEvent))
_status = msgspec.json.Decoder(str)


@dataclass(slots=True)
class LiveDevice:
    device_id: str
    birth: topics.Birth | None = None
    status: Status = "unknown"
    last_seen: float = 0.0  # wall-clock time of the last message from the device
    data: dict[str, bytes] = field(default_factory=dict)  # "weight" / "scan" -> the last payload


class DeviceView(msgspec.Struct, omit_defaults=False):
    """One registered device as `GET /api/v1/devices` shows it."""

    device_id: str
    profile: str
    kind: str
    vendor: str
    model: str
    capabilities: list[str]
    status: Status
    last_seen: str | None
    weight: topics.WeightEvent | None
    scan: topics.ScanEvent | None
    registered_at: str
    rotated_at: str


class Board:
    def __init__(self, store_id: str, tz: tzinfo = UTC) -> None:
        self.store_id = store_id
        self.tz = tz  # the store's: `last_seen` reads like every other time the hub gives out
        self.devices: dict[str, LiveDevice] = {}
        self.messages = 0  # every device message the hub received (benchmarks read it)
        self._lock = threading.Lock()

    def device(self, device_id: str) -> LiveDevice:
        found = self.devices.get(device_id)
        if found is None:
            with self._lock:
                found = self.devices.setdefault(device_id, LiveDevice(device_id))
        return found

    def apply(self, parsed: topics.Topic, payload: bytes) -> None:
        """Record one message (not command results: the link resolves those)."""
        self.messages += 1
        live = self.device(parsed.device_id)
        live.last_seen = time.time()
        match parsed.channel:
            case "data" if parsed.name is not None:
                live.data[parsed.name] = payload
            case "status":
                try:
                    value = _status.decode(payload)
                except msgspec.DecodeError:
                    return
                live.status = value if value in ("online", "offline") else "unknown"  # type: ignore[assignment]
            case "birth":
                try:
                    live.birth = _birth.decode(payload)
                except msgspec.DecodeError:
                    return

    def status(self, device_id: str) -> Status:
        live = self.devices.get(device_id)
        return live.status if live is not None else "unknown"

    def view(self, record: DeviceRecord, kind: str, vendor: str, model: str, capabilities: list[str]) -> DeviceView:
        live = self.devices.get(record.device_id) or LiveDevice(record.device_id)
        birth = live.birth
        weight = _decoded(_weight, live.data.get("weight"))
        scan = _decoded(_scan, live.data.get("scan"))
        return DeviceView(
            device_id=record.device_id, profile=record.profile, kind=birth.kind if birth else kind,
            vendor=birth.vendor if birth else vendor, model=birth.model if birth else model,
            capabilities=list(birth.capabilities) if birth else capabilities, status=live.status,
            last_seen=self._rfc3339(live.last_seen) if live.last_seen else None, weight=weight, scan=scan,
            registered_at=record.created_at, rotated_at=record.rotated_at)

    def _rfc3339(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.tz).isoformat(timespec="milliseconds")


def _decoded(decoder: LazyDecoder[T], payload: bytes | None) -> T | None:
    if payload is None:
        return None
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError:
        return None
