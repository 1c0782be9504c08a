"""Serial barcode scanners (and USB scanners in CDC/virtual-COM mode): one code per line.

The scanner ends each code with a configurable suffix (CR, LF, CRLF, TAB) and, when configured,
prefixes it with its AIM symbology identifier (`]E0` EAN/UPC, `]C1` GS1-128, `]A0` Code 39).
GS1 codes may carry GS (0x1D) as the FNC1 separator; any other control byte marks a line as noise.
"""

from __future__ import annotations

from typing import Literal

from devices.codecs import symbology
from devices.codecs.base import ProtocolParams, Reading, Request, ScanReading, Unsupported

_MAX_LINE = 512
_SUFFIX = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}


class Params(ProtocolParams, tag="serial-scanner", frozen=True):
    suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR"
    aim_prefix: bool = False


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._end = _SUFFIX[params.suffix][-1]
        self._line = bytearray()
        self._overflow = False

    def encode(self, request: Request) -> bytes:
        raise Unsupported(request)  # a scanner takes no commands over this link

    def expects_reply(self, request: Request) -> bool:
        return False

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        for byte in data:
            if byte == self._end:
                if not self._overflow:
                    reading = self._decode(bytes(self._line))
                    if reading is not None:
                        out.append(reading)
                self._line.clear()
                self._overflow = False
            elif byte in (0x0D, 0x0A) and self.params.suffix != "TAB":
                continue  # the other half of CRLF, or a stray line end from a misconfigured scanner
            elif not self._overflow:
                self._line.append(byte)
                if len(self._line) > _MAX_LINE:
                    self._line.clear()
                    self._overflow = True
        return out

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
