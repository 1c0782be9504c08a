"""A simulated customer display (Epson DM-D110): a 2 x 20 screen drawn by the received bytes."""

from __future__ import annotations

from collections.abc import Callable

from devices.codecs import dmd110
from devices.simulators.base import DeviceState


class Display:
    def __init__(self, params: dmd110.Params, on_change: Callable[[str], None] | None = None) -> None:
        self.screen = dmd110.Screen(params)
        self.on_change = on_change

    def receive(self, data: bytes) -> bytes:
        before = self.screen.text()
        self.screen.feed(data)
        if self.on_change is not None and self.screen.text() != before:
            self.on_change(self.screen.text())
        return b""

    def emit(self) -> bytes:
        return b""

    def set_state(self, state: DeviceState) -> None:
        self.screen.clear()

    def control(self, words: list[str]) -> str:
        return "a display has no commands; it shows what the host sends"

    def rendered(self) -> str | None:
        return self.screen.text()
