"""MT-SICS (Mettler Toledo Standard Interface Command Set), level 0/1: commands and replies end CR LF.

Host: `SI` weight now, `S` next stable weight, `Z` zero, `T` tare, `TAC` clear tare, `@` reset.
Balance: `S S      100.00 g` (stable), `S D      100.01 g` (dynamic), `S +` overload, `S -`
underload, `S I` busy; `Z A` zeroed, `T S <tare> g` tared; `ES`/`ET`/`EL` syntax, transmission and
logic errors.
"""

from __future__ import annotations

import re
from typing import Literal

from devices.codecs.base import (
    Ack,
    ClearTare,
    DeviceError,
    LineSplitter,
    ProtocolParams,
    Reading,
    Request,
    Tare,
    Unsupported,
    Weigh,
    WeightReading,
    Zero,
    to_grams,
    weight_state,
)

_MAX_LINE = 64
_WEIGHT = re.compile(r"S ([SD]) +(-?\d+(?:\.\d+)?) +([A-Za-z]+)")
_ERRORS = {"ES": "syntax", "ET": "transmission", "EL": "logical"}
_STATUS = {"I": "busy", "+": "overload", "-": "underload", "L": "logical"}


class Params(ProtocolParams, tag="mt-sics", frozen=True):
    poll: Literal["SI", "S"] = "SI"  # SI answers at once, with `D` while the load moves


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._lines = LineSplitter(0x0A, _MAX_LINE)

    def encode(self, request: Request) -> bytes:
        match request:
            case Weigh():
                return self.params.poll.encode() + b"\r\n"
            case Zero():
                return b"Z\r\n"
            case Tare():
                return b"T\r\n"
            case ClearTare():
                return b"TAC\r\n"
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return True

    def feed(self, data: bytes) -> list[Reading]:
        readings = (self._decode(line.rstrip(b"\r")) for line in self._lines.feed(data))
        return [r for r in readings if r is not None]

    def _decode(self, raw: bytes) -> Reading | None:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        if line in _ERRORS:
            return DeviceError(code=_ERRORS[line])
        match = _WEIGHT.fullmatch(line)
        if match is not None:
            grams = to_grams(match.group(2), match.group(3))
            if grams is None:
                return None
            return weight_state(grams, motion=match.group(1) == "D")
        parts = line.split(" ")
        if len(parts) < 2:
            return None
        command, status = parts[0], parts[1]
        if command in ("S", "SI") and len(parts) == 2:
            if status == "+":
                return WeightReading(grams=None, stable=False, state="overload")
            if status == "-":
                return WeightReading(grams=None, stable=False, state="underload")
            if status == "I":
                return DeviceError(code="busy")
            return None
        if command in ("Z", "T", "TAC"):
            if status in ("A", "S"):
                return Ack()
            if status in _STATUS:
                return DeviceError(code=_STATUS[status])
        return None
