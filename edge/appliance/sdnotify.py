"""systemd's service notification (sd_notify(3)), written out: one datagram to $NOTIFY_SOCKET.

The hub unit is `Type=notify` with `WatchdogSec=`: the hub says READY=1 once its port accepts connections
(not when the lifespan starts, which is before uvicorn binds), then WATCHDOG=1 from a task on the event loop.
If the loop stalls (a blocking call in a handler, a deadlock), the heartbeat stops and systemd restarts the
hub; so it does if the SQLite writer thread stops taking work (edge/appliance/liveness.py). No PyPI
package: the protocol is one `sendto` on an AF_UNIX datagram socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from edge.background import background, serving

if TYPE_CHECKING:
    from litestar import Litestar

    from edge.appliance.liveness import WriterProbe
    from edge.hub import Hub

log = logging.getLogger("backroom.sdnotify")



def notify(message: str, env: dict[str, str] | None = None, *, quiet: bool = False) -> bool | None:
    """Send `message` (e.g. "READY=1") to the service manager: True when sent; None when not run by one (no
    $NOTIFY_SOCKET); False when the manager's queue was full (`quiet`: without a warning)."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return None
    target = "\0" + address[1:] if address[0] == "@" else address  # "@name": Linux's abstract namespace
    # Non-blocking: a receiver that does not read (its queue full) must not stall the event loop that calls this.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
        try:
            sock.sendto(message.encode("utf-8"), target)
        except BlockingIOError:
            if not quiet:
                log.warning("sd_notify %s dropped: the service manager's queue is full", message.split("=", 1)[0])
            return False
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", message.split("=", 1)[0], exc)
            return None
    return True


async def notify_surely(message: str, wait_s: float = 2.0) -> bool:
    """`notify` for a message that must not be lost (READY=1, STOPPING=1): while the manager's queue is full
    (a datagram socket holds `net.unix.max_dgram_qlen` messages, 10 by default) try again for up to `wait_s`,
    without blocking the event loop. WATCHDOG=1 needs no retry: the next beat comes soon."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        sent = notify(message, quiet=True)
        if sent is not False or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.05)
    if sent is False:
        log.warning("sd_notify %s failed: the service manager's queue stayed full", message.split("=", 1)[0])
    return sent is True


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """Half the watchdog period systemd set for this process (WATCHDOG_USEC, WATCHDOG_PID), or None."""
    source = env if env is not None else os.environ
    usec, pid = source.get("WATCHDOG_USEC"), source.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (a parent that exec'd us without clearing it)
    return int(usec) / 2e6


async def _announce(hub: Hub, probe: WriterProbe | None) -> None:
    config = hub.config
    if await serving(config.host, config.port):
        await notify_surely(f"READY=1\nSTATUS=serving store {hub.store_id} on port {config.port}")
    else:
        log.error("the hub's port %d never accepted a connection; systemd is not told READY", config.port)
        return
    interval = watchdog_interval_s()
    if interval is not None:
        await heartbeat(interval, probe)


async def heartbeat(interval: float, probe: WriterProbe | None) -> None:
    """WATCHDOG=1 every `interval` while the writer takes work. On the event loop: a loop that stalls stops the
    heartbeat too, and systemd restarts the hub."""
    stalled = False
    while True:
        if probe is None or probe.alive():
            if stalled:
                notify("STATUS=the database writer takes work again")
                stalled = False
            notify("WATCHDOG=1")
        else:
            stalled = True
            notify(f"STATUS=the database writer has taken no write for {probe.stalled_for():.0f} s")
        await asyncio.sleep(interval)


@asynccontextmanager
async def notify_lifespan(app: Litestar) -> AsyncIterator[None]:
    """READY=1 once serving, WATCHDOG=1 while the loop runs, STOPPING=1 on the way out; nothing without systemd."""
    if not os.environ.get("NOTIFY_SOCKET"):
        yield
        return
    async with background(_announce(app.state.hub, getattr(app.state, "writer_probe", None))):
        try:
            yield
        finally:
            await notify_surely("STOPPING=1")
