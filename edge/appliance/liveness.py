"""Whether the hub's single SQLite writer still takes work, for systemd's watchdog and `/healthz`.

The watchdog heartbeat (edge/appliance/sdnotify.py) comes from a task on the event loop, so a stalled
event loop stops it. The writer is a thread of its own: if it hangs (an fsync on a dying SD card that
never returns, a write that deadlocks), the loop keeps beating while every sale waits for a COMMIT that
never comes. So a probe submits a write that changes nothing (`BEGIN IMMEDIATE`, `COMMIT`: no page is
written, nothing is synced) every `PROBE_EVERY_S`, behind whatever is queued. While one is outstanding
for longer than `STALL_S`, the writer counts as stalled: the heartbeat stops (systemd restarts the hub
after `WatchdogSec`) and `/healthz` says so. A probe that fails (a full disk, a lock another process
holds) has been taken by the writer: that is not a stall, and the other checks report it.

`STALL_S` is long on purpose: the longest legitimate writes (a catalog import, a stock-take's commit, a
large feed page) take seconds, and a hub restarted in the middle of one would meet the same write again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from edge.background import background

if TYPE_CHECKING:
    from litestar import Litestar

    from edge.storage.db import Database

log = logging.getLogger("backroom.liveness")

PROBE_EVERY_S = 5.0
STALL_S = 120.0


def _nothing(conn: sqlite3.Connection) -> None:
    """The probe's write: the writer opened its transaction, which is all the probe asks."""


class WriterProbe:
    def __init__(self, db: Database, *, stall_s: float = STALL_S) -> None:
        self.db = db
        self.stall_s = stall_s
        self._pending: concurrent.futures.Future[None] | None = None
        self._since = 0.0
        self._reported = False

    def poke(self) -> None:
        """Submit a probe unless one is still waiting for the writer."""
        if self._pending is not None and not self._pending.done():
            return
        if self._reported:
            log.warning("the database writer takes work again")
            self._reported = False
        try:
            self._pending = self.db.submit(_nothing, replayable=True)  # no effect outside the database
        except RuntimeError:  # closed: the hub is stopping
            self._pending = None
            return
        self._since = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds the oldest outstanding probe has waited (0 when the writer took the last one)."""
        if self._pending is None or self._pending.done():
            return 0.0
        return time.monotonic() - self._since

    def alive(self) -> bool:
        waited = self.stalled_for()
        if waited < self.stall_s:
            return True
        if not self._reported:
            log.error("the database writer has not taken a write for %.0f s; the watchdog heartbeat stops", waited)
            self._reported = True
        return False

    async def run(self) -> None:
        while True:
            self.poke()
            await asyncio.sleep(PROBE_EVERY_S)


@asynccontextmanager
async def probe_lifespan(app: Litestar) -> AsyncIterator[None]:
    probe = WriterProbe(app.state.hub.db)
    app.state.writer_probe = probe
    async with background(probe.run()):
        yield
