"""The MQTT topic layout and payloads of CONTRACT.md, as one codec.

    backroom/v1/{store}/dev/{device}/birth               retained Birth
    backroom/v1/{store}/dev/{device}/status              retained "online" | "offline" (the will)
    backroom/v1/{store}/dev/{device}/data/weight         WeightEvent
    backroom/v1/{store}/dev/{device}/data/scan           ScanEvent
    backroom/v1/{store}/dev/{device}/cmd/{action}        Command (tagged by the action in the topic)
    backroom/v1/{store}/dev/{device}/cmd/{action}/result CommandResult

Payloads are JSON. Wire structs are tolerant (unknown fields ignored, new fields only with defaults)
so an older hub reads a newer bridge.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

import msgspec

from devices.receipt import Receipt

PREFIX = "backroom/v1"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
Kind = Literal["scale", "scanner", "printer", "display", "drawer"]
Action = Literal["print", "kick", "display", "tare", "zero"]
ACTIONS: tuple[Action, ...] = ("print", "kick", "display", "tare", "zero")
Status = Literal["online", "offline"]


def valid_segment(value: str) -> bool:
    """Store and device ids become topic levels: no `/`, `+`, `#`, and nothing an ACL could confuse."""
    return _SEGMENT.fullmatch(value) is not None


def root(store_id: str) -> str:
    if not valid_segment(store_id):
        raise ValueError(f"store id {store_id!r} cannot be a topic level")
    return f"{PREFIX}/{store_id}"


def device_root(store_id: str, device_id: str) -> str:
    if not valid_segment(device_id):
        raise ValueError(f"device id {device_id!r} cannot be a topic level")
    return f"{root(store_id)}/dev/{device_id}"


def birth(store_id: str, device_id: str) -> str:
    return f"{device_root(store_id, device_id)}/birth"


def status(store_id: str, device_id: str) -> str:
    return f"{device_root(store_id, device_id)}/status"


def data(store_id: str, device_id: str, name: Literal["weight", "scan"]) -> str:
    return f"{device_root(store_id, device_id)}/data/{name}"


def command(store_id: str, device_id: str, action: str) -> str:
    return f"{device_root(store_id, device_id)}/cmd/{action}"


def result(store_id: str, device_id: str, action: str) -> str:
    return f"{device_root(store_id, device_id)}/cmd/{action}/result"


class Topic(msgspec.Struct, frozen=True):
    """A parsed device topic: `channel` is birth, status, data, cmd or result; `name` the data name or action."""

    store_id: str
    device_id: str
    channel: Literal["birth", "status", "data", "cmd", "result"]
    name: str | None = None


def parse(topic: str) -> Topic | None:
    parts = topic.split("/")
    if len(parts) < 6 or "/".join(parts[:2]) != PREFIX or parts[3] != "dev":
        return None
    store_id, device_id, rest = parts[2], parts[4], parts[5:]
    if not (valid_segment(store_id) and valid_segment(device_id)):
        return None
    match rest:
        case ["birth"]:
            return Topic(store_id, device_id, "birth")
        case ["status"]:
            return Topic(store_id, device_id, "status")
        case ["data", name] if name:
            return Topic(store_id, device_id, "data", name)
        case ["cmd", action] if action:
            return Topic(store_id, device_id, "cmd", action)
        case ["cmd", action, "result"] if action:
            return Topic(store_id, device_id, "result", action)
    return None


def now() -> str:
    """RFC 3339 with the local offset, millisecond precision."""
    return datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")


# --- payloads -----------------------------------------------------------------------------------

class Birth(msgspec.Struct, frozen=True):
    device_id: str
    kind: Kind
    profile: str
    vendor: str
    model: str
    capabilities: list[str]
    ts: str = ""


class WeightEvent(msgspec.Struct, frozen=True):
    """`grams` is null when the scale reports a state without a weight (moving, overload on an 8217)."""

    seq: int
    ts: str
    grams: int | None
    stable: bool
    state: Literal["ok", "motion", "overload", "underload", "error"]


class ScanEvent(msgspec.Struct, frozen=True):
    seq: int
    ts: str
    code: str
    symbology: str


class CommandResult(msgspec.Struct, frozen=True, omit_defaults=True):
    cmd_id: str
    ok: bool
    error: str | None = None


class _Command(msgspec.Struct, frozen=True, tag_field="action", kw_only=True):
    cmd_id: str


class PrintCommand(_Command, tag="print", frozen=True):
    """`lines` (plain text), or `receipt` (the hub fills it in for a `sale_id`). `qr`: a QR code printed after
    the lines (native on a model with the `qr` capability, else as its text)."""

    sale_id: str | None = None
    lines: list[str] | None = None
    receipt: Receipt | None = None
    cut: bool = True
    qr: str | None = None


class KickCommand(_Command, tag="kick", frozen=True):
    pin: Literal[2, 5] = 2


class DisplayCommand(_Command, tag="display", frozen=True):
    lines: list[str]


class TareCommand(_Command, tag="tare", frozen=True):
    pass


class ZeroCommand(_Command, tag="zero", frozen=True):
    pass


Command = PrintCommand | KickCommand | DisplayCommand | TareCommand | ZeroCommand
_command_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder()


class BadCommand(ValueError):
    def __init__(self, cmd_id: str, message: str) -> None:
        super().__init__(message)
        self.cmd_id = cmd_id


def decode_command(action: str, payload: bytes) -> Command:
    """The action is the topic's last level; it becomes the union's tag."""
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise BadCommand("", f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadCommand("", "payload must be a JSON object")
    cmd_id = body.get("cmd_id") if isinstance(body.get("cmd_id"), str) else ""
    if action not in ACTIONS:
        raise BadCommand(str(cmd_id), f"unknown action {action!r}")
    try:
        return _command_decoder.decode(_encoder.encode({**body, "action": action}))
    except msgspec.ValidationError as exc:
        raise BadCommand(str(cmd_id), str(exc)) from None


def encode_command(command: Command) -> bytes:
    """The payload of a command (the action goes in the topic, not the body)."""
    body = msgspec.to_builtins(command)
    body.pop("action", None)
    return _encoder.encode(body)


def encode(payload: msgspec.Struct | str) -> bytes:
    return _encoder.encode(payload)
