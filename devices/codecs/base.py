"""What every codec speaks: requests (host -> device), readings (device -> host), and the Codec protocol.

A codec is pure: `encode(request)` returns the bytes to send, `feed(data)` takes whatever bytes
arrived (any split, any garbage) and returns the readings completed by them. It never blocks and
never raises on bad input; it drops what it cannot frame and resynchronises on the next frame.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Protocol

import msgspec

WeightState = Literal["ok", "motion", "overload", "underload", "error"]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class Weigh(_Request, tag="weigh", frozen=True):
    """Ask for the current weight (the protocol's poll)."""


class Enquire(_Request, tag="enquire", frozen=True):
    """A handshake some protocols need before a poll (CAS: ENQ -> ACK)."""


class Status(_Request, tag="status", frozen=True):
    """Ask for the device's status (why there is no weight; printer online/paper)."""


class Tare(_Request, tag="tare", frozen=True):
    pass


class Zero(_Request, tag="zero", frozen=True):
    pass


class ClearTare(_Request, tag="clear_tare", frozen=True):
    pass


class SetPrice(_Request, tag="set_price", frozen=True):
    """Unit price in fen per kg, for price-computing scales (Dialog 06)."""

    unit_price: int


class PrintText(_Request, tag="print", frozen=True):
    lines: list[str]
    cut: bool = True
    qr: str | None = None  # a QR code after the lines (a codec that has no QR command prints the text)


class ShowText(_Request, tag="display", frozen=True):
    lines: list[str]


class Kick(_Request, tag="kick", frozen=True):
    """Pulse the cash drawer connector: pin 2 or pin 5."""

    pin: Literal[2, 5] = 2


class Listen(_Request, tag="listen", frozen=True):
    """No request: the device talks by itself (scanners)."""


Request = Weigh | Enquire | Status | Tare | Zero | ClearTare | SetPrice | PrintText | ShowText | Kick | Listen


class _Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class WeightReading(_Reading, tag="weight", kw_only=True, frozen=True):
    """`grams` is None when the protocol reports a state without a weight (8217 motion, overload)."""

    grams: int | None = None
    stable: bool
    state: WeightState


class ScanReading(_Reading, tag="scan", frozen=True):
    code: str
    symbology: str


class Ack(_Reading, tag="ack", frozen=True):
    pass


class Nak(_Reading, tag="nak", frozen=True):
    pass


class DeviceError(_Reading, tag="error", frozen=True):
    code: str


class PrinterStatus(_Reading, tag="printer_status", frozen=True):
    online: bool


class Rendered(_Reading, tag="rendered", frozen=True):
    """What a printer printed up to a cut, or what a display shows, as text."""

    text: str


Reading = WeightReading | ScanReading | Ack | Nak | DeviceError | PrinterStatus | Rendered


class Unsupported(Exception):
    """The protocol has no encoding for this request."""


class Codec(Protocol):
    def encode(self, request: Request) -> bytes: ...

    def feed(self, data: bytes) -> list[Reading]: ...

    def expects_reply(self, request: Request) -> bool:
        """Whether the device answers this request (the bridge then waits for a reading)."""
        ...


_NUMBER = re.compile(r"[+-]?[0-9]{1,9}(?:\.[0-9]{1,6})?")
GRAMS_PER_UNIT: dict[str, Decimal] = {
    "g": Decimal(1), "kg": Decimal(1000), "mg": Decimal("0.001"), "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}


def to_grams(number: str, unit: str) -> int | None:
    """'1.234', 'kg' -> 1234 (half up). None if either part is not a number or a known unit."""
    factor = GRAMS_PER_UNIT.get(unit.strip().lower())
    if factor is None:
        return None
    text = number.strip().replace(" ", "")
    if _NUMBER.fullmatch(text) is None:
        return None
    value = Decimal(text)
    return int((value * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def weight_state(grams: int | None, *, motion: bool = False, overload: bool = False,
                 underload: bool = False) -> WeightReading:
    """One place that orders the flags: overload > underload > motion > ok. Below zero is underload."""
    if grams is not None and grams < 0:
        underload = True
    if overload:
        return WeightReading(grams=None, stable=False, state="overload")
    if underload:
        return WeightReading(grams=grams, stable=False, state="underload")
    if motion:
        return WeightReading(grams=grams, stable=False, state="motion")
    return WeightReading(grams=grams, stable=True, state="ok")


class FrameBuffer:
    """A bounded byte buffer: what a codec holds between `feed` calls."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def extend(self, data: bytes) -> None:
        self.data += data

    def overflowed(self) -> bool:
        return len(self.data) > self.limit

    def clear(self) -> None:
        self.data.clear()


class LineSplitter:
    """Cuts a byte stream into lines at `end`, dropping any line longer than `limit` whole (a line
    that overflowed is garbage up to its end: resynchronise at the next one). `skip` bytes are never
    part of a line (the other half of CR LF)."""

    def __init__(self, end: int, limit: int, skip: bytes = b"") -> None:
        self.end = end
        self.limit = limit
        self.skip = skip
        self._line = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        for byte in data:
            if byte == self.end:
                if not self._overflow:
                    lines.append(bytes(self._line))
                self._line.clear()
                self._overflow = False
            elif byte in self.skip:
                continue
            elif not self._overflow:
                self._line.append(byte)
                if len(self._line) > self.limit:
                    self._line.clear()
                    self._overflow = True
        return lines


class ProtocolParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="id"):
    """Timing every protocol has; each protocol's parameters extend it (tagged by protocol id)."""

    poll_interval_ms: int = 0  # 0: the device talks by itself, or only on command
    command_spacing_ms: int = 0  # the least gap between two commands sent (8217: 200 ms)
    response_timeout_ms: int = 500
    handshake: bool = False  # send `enquire` and wait for its ACK before each poll (CAS)
