"""Firmware profiles: one TOML file per device model in `firmware_profiles/`, decoded strictly.

A profile is the model as data — kind, vendor, model, transport defaults, protocol id and
parameters, capabilities, quirks and test vectors. Code picks behaviour by capability, never by
model name. Every struct forbids unknown fields, so a typo in a file fails at load, naming it.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from devices import bytespec
from devices.codecs import ProtocolSpec
from devices.codecs.base import Listen, Reading, Request
from devices.simulators.base import DeviceState, SimulatorSpec

PROFILES_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"
Kind = Literal["scale", "scanner", "printer", "display", "drawer"]
Capability = Literal[
    "weigh", "tare", "zero", "clear_tare", "set_price", "status", "scan", "print", "cut", "kick", "qr",
    "barcode", "display", "chinese",
]
_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_USB_ID = re.compile(r"[0-9a-f]{4}")


class SerialTransport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="serial", tag_field="type"):
    """`vendor_id`/`product_id`: the USB ids of the model's own USB-serial cable, when it has one; udev then
    names it /dev/backroom/<kind>N (`backroom install` writes the rules, edge/appliance/udev.py)."""

    baud: int = 9600
    bits: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    vendor_id: str = ""
    product_id: str = ""


class TcpTransport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="tcp", tag_field="type"):
    port: int = 9100


class UsbTransport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="usb", tag_field="type"):
    """A USB printer-class device (`/dev/usb/lpN`), written like a file."""

    vendor_id: str = ""
    product_id: str = ""


class EvdevTransport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="evdev", tag_field="type"):
    grab: bool = True  # EVIOCGRAB: keystrokes go to the bridge only, not to a console


Transport = SerialTransport | TcpTransport | UsbTransport | EvdevTransport


class Vector(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Host sends `send` for `request`; the device in `device` state answers `answer`; that means `reading`.

    Byte strings use `devices.bytespec` notation (`<STX>001.234<CR>`).
    """

    name: str
    request: Request = Listen()
    send: str = ""
    answer: str = ""
    reading: Reading | None = None
    device: DeviceState | None = None

    def send_bytes(self) -> bytes:
        return bytespec.parse(self.send)

    def answer_bytes(self) -> bytes:
        return bytespec.parse(self.answer)


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    kind: Kind
    vendor: str
    model: str
    transport: Transport
    protocol: ProtocolSpec
    capabilities: list[Capability]
    vectors: list[Vector]
    quirks: list[str] = []
    notes: str = ""
    capacity_g: int = 0  # scales: the maximum load
    simulator: SimulatorSpec = SimulatorSpec()

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities


class ProfileError(ValueError):
    pass


def profiles_dir() -> Path:
    return Path(os.environ.get("BACKROOM_PROFILES") or PROFILES_DIR)


def decode(text: str, source: str = "<profile>") -> Profile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not TOML: {exc}") from None
    try:
        profile = msgspec.convert(raw, Profile, strict=True)
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{source}: {exc}") from None
    problems = validate(profile)
    if problems:
        raise ProfileError(f"{source}: " + "; ".join(problems))
    return profile


def validate(profile: Profile) -> list[str]:
    """What the schema alone cannot say."""
    problems = []
    if not _ID.fullmatch(profile.id):
        problems.append(f"id {profile.id!r} must be lowercase letters, digits and '-'")
    if not profile.vectors:
        problems.append("a profile needs at least one test vector")
    if profile.kind == "scale" and profile.capacity_g <= 0:
        problems.append("a scale needs capacity_g")
    if len(set(profile.capabilities)) != len(profile.capabilities):
        problems.append("capabilities are listed twice")
    transport = profile.transport
    if isinstance(transport, SerialTransport | UsbTransport):
        ids = (transport.vendor_id, transport.product_id)
        if any(ids) and not all(_USB_ID.fullmatch(i) for i in ids):
            problems.append("vendor_id and product_id are both four lowercase hex digits (as lsusb shows them)")
    for vector in profile.vectors:
        for field, spec in (("send", vector.send), ("answer", vector.answer)):
            try:
                bytespec.parse(spec)
            except bytespec.ByteSpecError as exc:
                problems.append(f"vector {vector.name!r} {field}: {exc}")
    return problems


def load(path: Path) -> Profile:
    profile = decode(path.read_text("utf-8"), str(path))
    if profile.id != path.stem:
        raise ProfileError(f"{path}: id {profile.id!r} must match the file name")
    return profile


def load_all(directory: Path | None = None) -> dict[str, Profile]:
    directory = directory or profiles_dir()
    return {path.stem: load(path) for path in sorted(directory.glob("*.toml"))}


def get(profile_id: str, directory: Path | None = None) -> Profile:
    path = (directory or profiles_dir()) / f"{profile_id}.toml"
    if not _ID.fullmatch(profile_id) or not path.exists():
        raise ProfileError(f"no firmware profile {profile_id!r} in {path.parent}")
    return load(path)
