"""The simulated device for a profile."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from devices.codecs import dmd110, escpos, evdev_wedge, serial_scanner
from devices.profiles import Profile
from devices.simulators.base import DeviceSim
from devices.simulators.display import Display
from devices.simulators.printer import Printer
from devices.simulators.scale import scale_for
from devices.simulators.scanner import KeyboardWedge, SerialScanner


def make_simulator(profile: Profile, *, on_output: Callable[[str], None] | None = None,
                   out_dir: Path | None = None, clock: Callable[[], float] = time.monotonic) -> DeviceSim:
    """The simulated device for a profile. `on_output` gets printed pages and display changes."""
    protocol = profile.protocol
    scale = scale_for(protocol, profile.capacity_g, profile.simulator, clock)
    if scale is not None:
        return scale
    match protocol:
        case serial_scanner.Params():
            return SerialScanner(protocol)
        case evdev_wedge.Params():
            return KeyboardWedge(protocol)
        case escpos.Params():
            return Printer(protocol, on_page=on_output, out_dir=out_dir)
        case dmd110.Params():
            return Display(protocol, on_change=on_output)
    raise ValueError(f"no simulator for protocol {type(protocol).__name__}")
