"""Mettler Toledo 8217 (weight-only protocol; Viva, Ariva, and the scales that emulate it).

Host: single-byte commands `W` weight, `Z` zero, `T` tare, `C` clear tare; no terminator, at least
200 ms apart. Scale: `STX [spaces] digits [N] CR` with a stable weight (kg WW.WWW or lb WW.WW, `N` when
net), or `STX ? <status> CR` while moving, below zero or over capacity (bit0 motion, bit1 over
capacity, bit2 under zero, bit3 outside zero capture, bit4 centre of zero, bit5 net, bit6 always set).
"""

from __future__ import annotations

import re
from typing import Literal

from devices.codecs.base import (
    ClearTare,
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

STX, CR = 0x02, 0x0D
_MAX_FRAME = 16
_WEIGHT = re.compile(rb" *(\d+(?:\.\d+)?)(N?)")


class Params(ProtocolParams, tag="mettler-8217", frozen=True):
    unit: Literal["kg", "lb"] = "kg"
    command_spacing_ms: int = 200


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._frame: bytearray | None = None

    def encode(self, request: Request) -> bytes:
        match request:
            case Weigh():
                return b"W"
            case Zero():
                return b"Z"
            case Tare():
                return b"T"
            case ClearTare():
                return b"C"
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return isinstance(request, Weigh)

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        for raw in data:
            byte = raw & 0x7F  # 7 data bits: the 8th is parity, if a port passes it through
            if byte == STX:
                self._frame = bytearray()
            elif self._frame is None:
                continue
            elif byte == CR:
                reading = self._decode(bytes(self._frame))
                self._frame = None
                if reading is not None:
                    out.append(reading)
            else:
                self._frame.append(byte)
                if len(self._frame) > _MAX_FRAME:
                    self._frame = None
        return out

    def _decode(self, body: bytes) -> WeightReading | None:
        stripped = body.lstrip(b" ")
        if stripped[:1] == b"?":
            if len(stripped) != 2:
                return None
            bits = stripped[1]
            if not bits & 0x40:
                return None
            if bits & 0x07 == 0:
                return WeightReading(grams=None, stable=False, state="error")
            return weight_state(None, motion=bool(bits & 0x01), overload=bool(bits & 0x02),
                                underload=bool(bits & 0x04))
        match = _WEIGHT.fullmatch(body)
        if match is None:
            return None
        grams = to_grams(match.group(1).decode(), self.params.unit)
        return None if grams is None else weight_state(grams)
