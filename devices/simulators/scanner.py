"""Simulated scanners: a serial scanner (suffix, optional AIM prefix) and a keyboard wedge (evdev events)."""

from __future__ import annotations

from collections import deque

from devices.codecs import evdev_wedge, serial_scanner
from devices.codecs.symbology import guess
from devices.simulators.base import DeviceState

AIM_IDS = {"ean13": "]E0", "upca": "]E0", "ean8": "]E4", "code128": "]C0", "gs1-128": "]C1", "code39": "]A0",
           "qr": "]Q1", "datamatrix": "]d1", "gs1-datamatrix": "]d2", "itf": "]I0", "codabar": "]F0",
           "code93": "]G0", "pdf417": "]L0"}
SUFFIXES = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}


class _Scanner:
    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.state = DeviceState()

    def receive(self, data: bytes) -> bytes:
        return b""

    def set_state(self, state: DeviceState) -> None:
        self.state = state

    def emit(self) -> bytes:
        """Scans queued by `control`, or the vector's code when frozen in a state."""
        if self.queue:
            return self.queue.popleft()
        if self.state.code:
            code, self.state = self.state, DeviceState()
            return self.frame(code.code, code.symbology or guess(code.code))
        return b""

    def control(self, words: list[str]) -> str:
        if len(words) == 2 and words[0] == "scan":
            self.queue.append(self.frame(words[1], guess(words[1])))
            return f"scanned {words[1]}"
        return "commands: scan CODE"

    def rendered(self) -> str | None:
        return None

    def frame(self, code: str, symbology: str) -> bytes:
        raise NotImplementedError


class SerialScanner(_Scanner):
    def __init__(self, params: serial_scanner.Params) -> None:
        super().__init__()
        self.params = params

    def frame(self, code: str, symbology: str) -> bytes:
        prefix = AIM_IDS.get(symbology, "]X0") if self.params.aim_prefix else ""
        return (prefix + code).encode("utf-8") + SUFFIXES[self.params.suffix]


class KeyboardWedge(_Scanner):
    def __init__(self, params: evdev_wedge.Params) -> None:
        super().__init__()
        self.params = params

    def frame(self, code: str, symbology: str) -> bytes:
        return evdev_wedge.type_text(code, self.params.time_bytes)
