"""NCI ECR protocol (Weigh-Tronix, Avery Berkel scales in ECR mode); 7 data bits.

Host: `W<CR>` weight, `S<CR>` status, `Z<CR>` zero. Scale: `<LF>01.234KG<CR><LF>S00<CR><ETX>` —
a weight line (absent when the scale cannot show one) and a status line of `S` and two or three
bytes 0x30-0x3F: byte 1 bit0 motion, bit1 at zero; byte 2 bit0 under capacity, bit1 over capacity.
"""

from __future__ import annotations

import re
from typing import Literal

from devices.codecs.base import (
    ProtocolParams,
    Reading,
    Request,
    Status,
    Unsupported,
    Weigh,
    WeightReading,
    Zero,
    to_grams,
    weight_state,
)

ETX = 0x03
_KEEP = 48  # a frame is at most ~20 bytes: keep the tail of anything longer
_WEIGHT = re.compile(rb"(-?)(\d+(?:\.\d+)?) ?(KG|LB|G|OZ|kg|lb|g|oz)")
_STATUS = re.compile(rb"S([0-?])([0-?])([0-?]?)")


class Params(ProtocolParams, tag="nci-ecr", frozen=True):
    unit: Literal["kg", "lb"] = "kg"


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._buf = bytearray()

    def encode(self, request: Request) -> bytes:
        match request:
            case Weigh():
                return b"W\r"
            case Status():
                return b"S\r"
            case Zero():
                return b"Z\r"
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return True

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        for raw in data:
            byte = raw & 0x7F
            if byte != ETX:
                self._buf.append(byte)
                if len(self._buf) > _KEEP:
                    del self._buf[: len(self._buf) - _KEEP]
                continue
            reading = self._decode(bytes(self._buf))
            self._buf.clear()
            if reading is not None:
                out.append(reading)
        return out

    def _decode(self, frame: bytes) -> WeightReading | None:
        # The frame is the bytes since the previous ETX; garbage before its first LF is not ours.
        lines = re.split(rb"[\r\n]", frame)
        status_at = None
        for index in range(len(lines) - 1, -1, -1):
            if _STATUS.fullmatch(lines[index]):
                status_at = index
                break
        if status_at is None:
            return None
        status = _STATUS.fullmatch(lines[status_at])
        assert status is not None
        first, second = status.group(1)[0], status.group(2)[0]
        grams: int | None = None
        for index in range(status_at - 1, -1, -1):
            if lines[index] == b"":
                continue
            weight = _WEIGHT.fullmatch(lines[index])
            if weight is not None:
                grams = to_grams(weight.group(1).decode() + weight.group(2).decode(), weight.group(3).decode())
            break
        overload, underload, motion = bool(second & 0x02), bool(second & 0x01), bool(first & 0x01)
        if grams is None and not (overload or underload or motion):
            return None if not first & 0x02 else weight_state(0)
        return weight_state(grams, motion=motion, overload=overload, underload=underload)
