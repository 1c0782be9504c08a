"""Serial barcode scanners (and USB scanners in CDC/virtual-COM mode): one code per line.

The scanner ends each code with a configurable suffix (CR, LF, CRLF, TAB) and, when configured,
prefixes it with its AIM symbology identifier (`]E0` EAN/UPC, `]C1` GS1-128, `]A0` Code 39).
GS1 codes may carry GS (0x1D) as the FNC1 separator; any other control byte marks a line as noise.
"""

from __future__ import annotations

from typing import Literal

from devices.codecs import symbology
from devices.codecs.base import LineSplitter, ProtocolParams, Reading, Request, ScanReading, Unsupported

_MAX_LINE = 512
_SUFFIX = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}


class Params(ProtocolParams, tag="serial-scanner", frozen=True):
    suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR"
    aim_prefix: bool = False


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        # A stray CR or LF is the other half of CRLF or a misconfigured scanner's line end: skipped.
        # After a TAB suffix they stay in the line, and a line with control bytes is refused.
        skip = b"\r\n" if params.suffix != "TAB" else b""
        self._lines = LineSplitter(_SUFFIX[params.suffix][-1], _MAX_LINE, skip)

    def encode(self, request: Request) -> bytes:
        raise Unsupported(request)  # a scanner takes no commands over this link

    def expects_reply(self, request: Request) -> bool:
        return False

    def feed(self, data: bytes) -> list[Reading]:
        readings = (self._decode(line) for line in self._lines.feed(data))
        return [r for r in readings if r is not None]

    def _decode(self, raw: bytes) -> ScanReading | None:
        if not raw or any(byte < 0x20 and byte != 0x1D or byte == 0x7F for byte in raw):
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if self.params.aim_prefix:
            if len(text) < 4 or text[0] != "]":
                return None
            code = text[3:]
            return ScanReading(code=code, symbology=symbology.from_aim(text[1:3], code))
        return ScanReading(code=text, symbology=symbology.guess(text))
