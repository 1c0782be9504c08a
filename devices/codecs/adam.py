"""Adam Equipment AZExtra (and Adam scales with the same RS-232 output); 8N1, commands end CR LF.

Host: `P` print (send the weight), `Z` zero, `T` tare. Scale: a line `    1.234kg` — or, in the
labelled formats, `ST,GS,+0001.234kg` (ST stable, US unstable, OL overload; GS gross, NT net).
Quirk: the AZExtra answers only when there is a new non-zero weight, and beeps when asked again
for one it already sent; silence is not an error.
"""

from __future__ import annotations

import re
from typing import Literal

from devices.codecs.base import (
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

_MAX_LINE = 48
_LINE = re.compile(r"(?:(ST|US|OL),(GS|NT),)? *([+-]?) *([0-9]+(?:\.[0-9]+)?) *(kg|g|lb|oz)")
_OVERLOAD = re.compile(r"(?:OL,(?:GS|NT),.*|-?O-?L-?)")


class Params(ProtocolParams, tag="adam-azextra", frozen=True):
    unit: Literal["kg", "g", "lb"] = "kg"


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._lines = LineSplitter(0x0A, _MAX_LINE)

    def encode(self, request: Request) -> bytes:
        match request:
            case Weigh():
                return b"P\r\n"
            case Zero():
                return b"Z\r\n"
            case Tare():
                return b"T\r\n"
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return False  # it may stay silent; readings are taken whenever they come

    def feed(self, data: bytes) -> list[Reading]:
        readings = (self._decode(line.strip(b"\r")) for line in self._lines.feed(data))
        return [r for r in readings if r is not None]

    def _decode(self, raw: bytes) -> WeightReading | None:
        try:
            line = raw.decode("ascii").strip(" ")
        except UnicodeDecodeError:
            return None
        if _OVERLOAD.fullmatch(line):
            return WeightReading(grams=None, stable=False, state="overload")
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        grams = to_grams(match.group(3) + match.group(4), match.group(5))
        if grams is None:
            return None
        return weight_state(grams, motion=match.group(1) == "US")
