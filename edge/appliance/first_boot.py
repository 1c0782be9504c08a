"""The status ticket a box prints when it boots: how a person who is not an engineer finds the box.

Once per boot (not on every restart of the hub), as soon as a receipt printer is registered and online,
the hub prints: the store, its addresses, the tablet's URL and a QR code of it, and whether it is paired
with HQ (when it is not: the store id HQ issues a pairing code for, and the tablet page that takes the code).
The boot is the kernel's boot id; `first-boot.json` in the data directory records the boot the ticket was
printed on, so a hub restarted by systemd (or by hand) does not print again until the box reboots.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from devices import topics
from devices.broker import lan_address
from edge import __version__
from edge.appliance import setup
from edge.background import background
from hq_sync import hub_state

if TYPE_CHECKING:
    from litestar import Litestar

    from edge.device_link.link import DeviceLink
    from edge.hub import Hub

log = logging.getLogger("backroom.first_boot")

RECORD = "first-boot.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
POLL_S = 1.0  # how often the hub looks for an online printer until it has printed
PRINT_TIMEOUT_S = 30.0
_SIOCGIFADDR = 0x8915


class Printed(msgspec.Struct, frozen=True):
    boot_id: str
    printed_at: str
    printer: str
    tablet_url: str


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    store_name: str
    store_id: str
    addresses: list[str]
    tablet_url: str
    hq_url: str | None  # the HQ it is paired with; None: not paired
    at: str
    setup_code: str | None = None  # while the box has no store manager (edge/appliance/setup.py)


def boot_id() -> str:
    """This boot of the machine (the kernel's random boot id); "" where there is none."""
    try:
        return BOOT_ID.read_text("ascii").strip()
    except OSError:
        return ""


def ipv4_addresses() -> list[str]:
    """Every IPv4 address of this host but loopback, one per interface (Linux: SIOCGIFADDR)."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on it (down, IPv6 only)
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                found.append(address)
    return found


def lines(ticket: Ticket) -> list[str]:
    """The ticket's text (bilingual, as the receipts are); the QR code of `tablet_url` follows it."""
    out = [ticket.store_name, "Backroom 状态 Status", ticket.at[:16].replace("T", " "), "",
           f"门店 Store: {ticket.store_id}", f"版本 Version: {__version__}"]
    out += [f"地址 Address: {a}" for a in ticket.addresses] or ["地址 Address: (no network)"]
    out += ["", "平板 Tablet:", ticket.tablet_url, ""]
    if ticket.setup_code:
        out += [f"设置码 Setup code: {setup.shown(ticket.setup_code)}", "在平板上设置店长账号",
                "Set up the store manager on the tablet:", ticket.tablet_url.rstrip("/") + "/setup", ""]
    if ticket.hq_url:
        out += ["总部 HQ: 已配对 paired", ticket.hq_url]
    else:
        out += ["总部 HQ: 未配对 not paired",
                f"总部为门店 {ticket.store_id} 生成配对码，", f"HQ issues a pairing code for {ticket.store_id};",
                "在平板上输入 enter it on the tablet:", ticket.tablet_url.rstrip("/") + "/sync/pair"]
    out += ["", "扫码打开平板页面 Scan for the tablet:"]
    return out


def ticket_for(hub: Hub) -> Ticket:
    addresses = ipv4_addresses()
    primary = lan_address()
    if primary in addresses:  # the address with the default route first: that is the one on the QR code
        addresses.remove(primary)
    addresses.insert(0, primary)
    state = hub_state.load_state(hub.db.reader())
    return Ticket(store_name=hub.config.store_name or f"Backroom {hub.store_id}", store_id=hub.store_id,
                  addresses=addresses, tablet_url=f"http://{primary}:{hub.config.port}/ui",
                  hq_url=state.hq_url if state is not None else None, at=hub.clock.stamp(),
                  setup_code=setup.code_if_needed(hub.db.reader(), hub.config.data_dir))


def already_printed(data_dir: Path, boot: str) -> bool:
    try:
        record = msgspec.json.decode((data_dir / RECORD).read_bytes(), type=Printed)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    return record.boot_id == boot


def _record(data_dir: Path, printed: Printed) -> None:
    path = data_dir / RECORD
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(msgspec.json.encode(printed))
    temp.replace(path)


def _printer(link: DeviceLink) -> str | None:
    """The printer to use: the one paired with every till ("*"), else the first registered printer that is online."""
    default = link.pairing("*")
    candidates = [default.printer] if default is not None and default.printer else []
    for device_id, record in sorted(link.registered().items()):
        profile = link.profile(record.profile)
        if profile is not None and profile.kind == "printer" and device_id not in candidates:
            candidates.append(device_id)
    return next((d for d in candidates if d in link.registered() and link.board.status(d) == "online"), None)


async def print_when_ready(app_state: object, hub: Hub, boot: str) -> None:
    """Wait for an online printer, print the ticket, record the boot; retried until it prints or the hub stops."""
    from edge.device_link.link import DeviceTimeout, LinkDown

    cmd_id = str(uuid.uuid4())
    while True:
        link: DeviceLink | None = getattr(app_state, "devices", None)
        printer = _printer(link) if link is not None else None
        if link is None or printer is None:
            await asyncio.sleep(POLL_S)
            continue
        ticket = await asyncio.to_thread(ticket_for, hub)
        try:
            result = await link.command(printer, topics.PrintCommand(cmd_id=cmd_id, lines=lines(ticket),
                                                                     qr=ticket.tablet_url), PRINT_TIMEOUT_S)
        except (DeviceTimeout, LinkDown) as exc:
            log.warning("status ticket not printed yet on %s: %s", printer, exc)
            await asyncio.sleep(POLL_S)
            continue
        if result.ok:
            await asyncio.to_thread(_record, hub.config.data_dir,
                                    Printed(boot, hub.clock.stamp(), printer, ticket.tablet_url))
            log.info("status ticket printed on %s (tablet %s)", printer, ticket.tablet_url)
            return
        log.warning("status ticket refused by %s: %s; trying again", printer, result.error)
        cmd_id = str(uuid.uuid4())
        await asyncio.sleep(POLL_S * 5)


@asynccontextmanager
async def first_boot_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Print the status ticket once per boot, in the background (config `status_ticket`: the appliance's
    /etc/backroom/backroom.toml turns it on; off for `make run` and tests that count printed pages)."""
    hub: Hub = app.state.hub
    boot = boot_id()
    if await asyncio.to_thread(setup.code_if_needed, hub.db.reader(), hub.config.data_dir):  # never log the code
        log.warning("this box has no store manager yet: open the tablet at /ui/setup with the setup code printed "
                    "on the status ticket (or run `backroom setup-code` on the box)")
    if not hub.config.status_ticket or not hub.config.devices_enabled:
        yield
        return
    if await asyncio.to_thread(already_printed, hub.config.data_dir, boot):
        log.info("status ticket already printed on this boot (%s); not again until the box restarts", boot)
        yield
        return
    async with background(print_when_ready(app.state, hub, boot)):
        yield
