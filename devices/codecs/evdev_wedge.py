"""USB keyboard-wedge scanners read through evdev: key events in, one code per Enter out.

The bridge opens `/dev/input/eventN` and grabs it (EVIOCGRAB) so the keystrokes do not leak into
a console; this codec turns the `struct input_event` records (US layout) into codes. Records are
`timeval` + u16 type + u16 code + s32 value; `time_bytes` is 16 on 64-bit Linux (the layout the
profile vectors use) and 8 on 32-bit ARM, which the bridge sets from the running platform.
"""

from __future__ import annotations

import struct
from typing import Literal

from devices.codecs import symbology
from devices.codecs.base import ProtocolParams, Reading, Request, ScanReading, Unsupported

EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
EV_MAX = 0x1F
KEY_ENTER, KEY_KPENTER, KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 28, 96, 42, 54
_MAX_CODE = 512

# keycode -> (plain, shifted), US layout
KEYMAP: dict[int, tuple[str, str]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"), 7: ("6", "^"), 8: ("7", "&"),
    9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"), 12: ("-", "_"), 13: ("=", "+"), 15: ("\t", "\t"),
    16: ("q", "Q"), 17: ("w", "W"), 18: ("e", "E"), 19: ("r", "R"), 20: ("t", "T"), 21: ("y", "Y"),
    22: ("u", "U"), 23: ("i", "I"), 24: ("o", "O"), 25: ("p", "P"), 26: ("[", "{"), 27: ("]", "}"),
    30: ("a", "A"), 31: ("s", "S"), 32: ("d", "D"), 33: ("f", "F"), 34: ("g", "G"), 35: ("h", "H"),
    36: ("j", "J"), 37: ("k", "K"), 38: ("l", "L"), 39: (";", ":"), 40: ("'", '"'), 41: ("`", "~"),
    43: ("\\", "|"), 44: ("z", "Z"), 45: ("x", "X"), 46: ("c", "C"), 47: ("v", "V"), 48: ("b", "B"),
    49: ("n", "N"), 50: ("m", "M"), 51: (",", "<"), 52: (".", ">"), 53: ("/", "?"), 57: (" ", " "),
    71: ("7", "7"), 72: ("8", "8"), 73: ("9", "9"), 74: ("-", "-"), 75: ("4", "4"), 76: ("5", "5"),
    77: ("6", "6"), 78: ("+", "+"), 79: ("1", "1"), 80: ("2", "2"), 81: ("3", "3"), 82: ("0", "0"),
    83: (".", "."),
}
CHAR_TO_KEY: dict[str, tuple[int, bool]] = {}
for _code, (_plain, _shifted) in sorted(KEYMAP.items(), reverse=True):  # main-block keys win over keypad
    CHAR_TO_KEY[_plain] = (_code, False)
    if _shifted != _plain:
        CHAR_TO_KEY[_shifted] = (_code, True)


class Params(ProtocolParams, tag="evdev-keyboard", frozen=True):
    layout: Literal["us"] = "us"
    time_bytes: Literal[8, 16] = 16


def event_format(time_bytes: int) -> struct.Struct:
    return struct.Struct("<qqHHi" if time_bytes == 16 else "<iiHHi")


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._event = event_format(params.time_bytes)
        self._buf = bytearray()
        self._text: list[str] = []
        self._shift: set[int] = set()

    def encode(self, request: Request) -> bytes:
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return False

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        self._buf += data
        size = self._event.size
        while len(self._buf) >= size:
            _, _, ev_type, code, value = self._event.unpack_from(self._buf)
            if ev_type > EV_MAX or (ev_type == EV_KEY and value not in (0, 1, 2)):
                del self._buf[0]  # misaligned: slide until records make sense again
                continue
            del self._buf[:size]
            if ev_type != EV_KEY:
                continue
            if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
                if value:
                    self._shift.add(code)
                else:
                    self._shift.discard(code)
            elif value == 1 and code in (KEY_ENTER, KEY_KPENTER):
                text = "".join(self._text)
                self._text.clear()
                if text:
                    out.append(ScanReading(code=text, symbology=symbology.guess(text)))
            elif value == 1 and code in KEYMAP:
                self._text.append(KEYMAP[code][1 if self._shift else 0])
                if len(self._text) > _MAX_CODE:
                    self._text.clear()
        return out


def type_text(text: str, time_bytes: int = 16) -> bytes:
    """The events a keyboard wedge sends for `text` + Enter (press, SYN, release, SYN per key)."""
    event = event_format(time_bytes)
    out = bytearray()

    def key(code: int, value: int) -> None:
        out.extend(event.pack(0, 0, EV_KEY, code, value))
        out.extend(event.pack(0, 0, EV_SYN, 0, 0))

    for char in text:
        code, shifted = CHAR_TO_KEY[char]
        if shifted:
            key(KEY_LEFTSHIFT, 1)
        key(code, 1)
        key(code, 0)
        if shifted:
            key(KEY_LEFTSHIFT, 0)
    key(KEY_ENTER, 1)
    key(KEY_ENTER, 0)
    return bytes(out)
