"""What a simulated device is: bytes from the host in, the device's answer out, plus state to set.

The device side of each protocol is written here independently of its codec (the host side), so a
profile's test vectors check one against the other: the codec must encode the vector's request
to `send` and decode `answer` to `reading`; the simulator, put in the vector's state, must answer
`send` with exactly `answer`.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

WeightState = Literal["ok", "motion", "overload", "underload", "error"]


class DeviceState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A device's state for one test vector (defaults derived from the vector's reading)."""

    grams: int = 0
    state: WeightState = "ok"
    tare_g: int = 0
    unit_price: int = 0
    code: str = ""
    symbology: str = ""
    online: bool = True


class SimulatorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the simulator of a model behaves beyond its protocol."""

    settle_ms: int = 600  # how long a new load is in motion before it is stable
    unit: Literal["kg", "g", "lb"] = "kg"  # what the display shows, where the protocol carries a unit
    decimals: int = 3


class DeviceSim(Protocol):
    def receive(self, data: bytes) -> bytes:
        """Bytes from the host; returns what the device sends back."""
        ...

    def emit(self) -> bytes:
        """What the device sends by itself now (a scanner's scans), if anything."""
        ...

    def set_state(self, state: DeviceState) -> None:
        """Freeze the device in a state (test vectors)."""
        ...

    def control(self, words: list[str]) -> str:
        """An operator's command from the simulator's stdin (`weight 1500`, `scan 690...`)."""
        ...

    def rendered(self) -> str | None:
        """Printers and displays: what is printed or shown, as text."""
        ...
