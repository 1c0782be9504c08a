"""udev rules for stable device names under /dev/backroom/, written from firmware_profiles/.

Two kinds of name:
- by port: every USB serial adapter as /dev/backroom/by-port/<ID_PATH_TAG>, the USB socket it is plugged
  into. It survives reboots and a second adapter of the same make, which a ttyUSB number does not: a bridge
  configured with it finds its scale again however the kernel numbered the adapters this time.
- by model: a profile whose transport declares USB ids (`vendor_id`, `product_id`: a USB printer, or a
  scale that ships its own USB-serial cable) gets /dev/backroom/<kind>N (N the kernel's number), and the
  group that the bridge's unit has (dialout for serial, lp for USB printers).
"""

from __future__ import annotations

from collections.abc import Iterable

from devices.profiles import Profile, SerialTransport, UsbTransport

RULES_NAME = "60-backroom.rules"

_HEADER = """\
# Stable names for Backroom's devices under /dev/backroom/ (docs/appliance.md).
# Written by `backroom install` from firmware_profiles/; a new install rewrites it.
"""
_BY_PORT = """\
# Every USB serial adapter by the USB port it is plugged into.
SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_PATH_TAG}=="?*", \\
  SYMLINK+="backroom/by-port/$env{ID_PATH_TAG}", GROUP="dialout", MODE="0660"
"""


def rules(profiles: Iterable[Profile]) -> str:
    """The rules file for these profiles (deterministic: sorted by USB ids, one rule per id pair)."""
    by_ids: dict[tuple[str, str, str], list[Profile]] = {}
    for profile in profiles:
        transport = profile.transport
        if isinstance(transport, SerialTransport | UsbTransport) and transport.vendor_id and transport.product_id:
            subsystem = "tty" if isinstance(transport, SerialTransport) else "usbmisc"
            by_ids.setdefault((subsystem, transport.vendor_id, transport.product_id), []).append(profile)
    out = [_HEADER, _BY_PORT]
    for (subsystem, vendor, product), found in sorted(by_ids.items()):
        kinds = sorted({p.kind for p in found})
        names = ", ".join(f"{p.id} ({p.vendor} {p.model})" for p in sorted(found, key=lambda p: p.id))
        kernel = 'KERNEL=="lp[0-9]*", ' if subsystem == "usbmisc" else ""
        group = "lp" if subsystem == "usbmisc" else "dialout"
        links = " ".join(f'SYMLINK+="backroom/{kind}%n"' for kind in kinds)
        out.append(f"# {names}\n"
                   f'SUBSYSTEM=="{subsystem}", {kernel}ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}", '
                   f'\\\n  {links}, GROUP="{group}", MODE="0660"\n')
    return "\n".join(out)
