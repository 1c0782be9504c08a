"""Epson DM-D110 customer (pole) display: 2 lines of 20 characters, ESC/POS display commands.

Host: `CLR` (0x0C) clears the screen, `US $ x y` moves the cursor (1-based), text is written at the
cursor and wraps to the next line; `ESC @` initialises, `ESC t n` selects the code page and, on the
Chinese model, `FS &` ... `FS .` brackets GB18030 text (two columns per character). The display
never answers.

Display side (`Screen`): applies those bytes to a 2 x 20 grid; `text()` is what a customer sees.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from devices.codecs.base import ProtocolParams, Reading, Rendered, Request, ShowText, Unsupported

CLR, ESC, US, FS = 0x0C, 0x1B, 0x1F, 0x1C


class Params(ProtocolParams, tag="epson-display", frozen=True):
    columns: int = 20
    rows: int = 2
    code_page: Literal["cp437", "cp858"] = "cp437"
    chinese: Literal["gb18030", "none"] = "none"


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def fit(text: str, columns: int) -> str:
    """Cut or pad `text` to exactly `columns` display columns (wide characters count two)."""
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > columns:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (columns - used)


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params

    def encode(self, request: Request) -> bytes:
        if not isinstance(request, ShowText):
            raise Unsupported(request)
        out = bytearray([CLR])
        for row in range(self.params.rows):
            text = fit(request.lines[row] if row < len(request.lines) else "", self.params.columns)
            out += bytes([US, ord("$"), 1, row + 1])
            if text.isascii():
                out += text.encode("ascii")
            elif self.params.chinese == "gb18030":
                out += b"\x1c&" + text.encode("gb18030", errors="replace") + b"\x1c."
            else:
                out += text.encode(self.params.code_page, errors="replace")
        return bytes(out)

    def expects_reply(self, request: Request) -> bool:
        return False

    def feed(self, data: bytes) -> list[Reading]:
        return []


class Screen:
    """The display's side: a character grid that the received bytes draw on."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._buf = bytearray()
        self._chinese = False
        self.clear()

    def clear(self) -> None:
        self.grid = [[" "] * self.params.columns for _ in range(self.params.rows)]
        self.x = self.y = 0

    def text(self) -> str:
        return "\n".join("".join(row).rstrip() for row in self.grid)

    def rendered(self) -> Rendered:
        return Rendered(text=self.text())

    def feed(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        while pos < len(self._buf):
            used = self._step(pos)
            if used < 0:
                break
            pos += used
        del self._buf[:pos]

    def _step(self, pos: int) -> int:
        buf = self._buf
        byte = buf[pos]
        if byte == CLR:
            self.clear()
            return 1
        if byte == US:
            if pos + 1 >= len(buf):
                return -1
            if buf[pos + 1] == ord("$"):
                if pos + 3 >= len(buf):
                    return -1
                x, y = buf[pos + 2], buf[pos + 3]
                if 1 <= x <= self.params.columns and 1 <= y <= self.params.rows:
                    self.x, self.y = x - 1, y - 1
                return 4
            return 3 if buf[pos + 1] in (ord("C"), ord("E"), ord("X"), ord("r")) else 2
        if byte == ESC:
            if pos + 1 >= len(buf):
                return -1
            if buf[pos + 1] == ord("@"):
                self.clear()
                self._chinese = False
                return 2
            return 3 if buf[pos + 1] in (ord("t"), ord("R"), ord("=")) else 2
        if byte == FS:
            if pos + 1 >= len(buf):
                return -1
            if buf[pos + 1] in (ord("&"), ord(".")):
                self._chinese = buf[pos + 1] == ord("&")
            return 2
        if byte == 0x0D:
            self.x = 0
            return 1
        if byte == 0x0A:
            self.y = min(self.y + 1, self.params.rows - 1)
            return 1
        if byte < 0x20 or byte == 0x7F:
            return 1
        if self._chinese and byte >= 0x81:
            if pos + 1 >= len(buf):
                return -1
            size = 4 if 0x30 <= buf[pos + 1] <= 0x39 else 2
            if pos + size > len(buf):
                return -1
            char = bytes(buf[pos: pos + size]).decode("gb18030", errors="replace")[:1]
            self._put(char)
            self._put("")  # a wide character takes two cells
            return size
        self._put(bytes([byte]).decode(self.params.code_page, errors="replace"))
        return 1

    def _put(self, char: str) -> None:
        self.grid[self.y][self.x] = char
        self.x += 1
        if self.x >= self.params.columns:
            self.x = 0
            self.y = (self.y + 1) % self.params.rows
