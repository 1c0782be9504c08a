"""Whether the hub's single SQLite writer still takes work, for systemd's watchdog and `/healthz`.

The watchdog heartbeat (edge/appliance/sdnotify.py) comes from a task on the event loop, so a stalled
event loop stops it. The writer is a thread of its own: if it hangs (an fsync on a dying SD card that
never returns, a write that deadlocks), the loop keeps beating while every sale waits for a COMMIT that
never comes. So a probe submits a write that changes nothing (`BEGIN IMMEDIATE`, `COMMIT`: no page is
written, nothing is synced) every `PROBE_EVERY_S`, behind whatever is queued. While one is outstanding
for longer than `STALL_S`, the writer counts as stalled: the heartbeat stops (systemd restarts the hub
after `WatchdogSec`) and `/healthz` says so. A probe that fails (a full disk, a lock another process
holds) has been taken by the writer: that is not a stall, and the other checks report it.

The sale-writer process (edge/sales/sale_writer.py) is watched the same way: a sale it has left unanswered
for `STALL_S` gets the process killed; the hub commits (or, if the process had, replays) that sale on its
own writer and starts the process again, without a restart of the hub.

`STALL_S` is long on purpose: the longest legitimate writes (a catalog import, a stock-take's commit, a
large feed page) take seconds, and a hub restarted in the middle of one would meet the same write again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from edge.background import background

if TYPE_CHECKING:
    from litestar import Litestar

    from edge.sales.sale_writer import SaleWriter
    from edge.storage.db import Database

log = logging.getLogger("backroom.liveness")

PROBE_EVERY_S = 5.0
STALL_S = 120.0


def _stall_s() -> float:
    """STALL_S, or BACKROOM_WRITER_STALL_S (tests shorten it)."""
    try:
        return max(1.0, float(os.environ.get("BACKROOM_WRITER_STALL_S", STALL_S)))
    except ValueError:
        return STALL_S


def _nothing(conn: sqlite3.Connection) -> None:
    """The probe's write: the writer opened its transaction, which is all the probe asks."""


class WriterProbe:
    def __init__(self, db: Database, *, stall_s: float = STALL_S,
                 sale_writer: Callable[[], SaleWriter | None] = lambda: None) -> None:
        self.db = db
        self.stall_s = stall_s
        self.sale_writer = sale_writer
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
            sales = self.sale_writer()
            if sales is not None:  # the sale-writer process: a hung one is killed and started again
                sales.kill_if_stalled(self.stall_s)
            await asyncio.sleep(PROBE_EVERY_S)


@asynccontextmanager
async def probe_lifespan(app: Litestar) -> AsyncIterator[None]:
    hub = app.state.hub
    probe = WriterProbe(hub.db, stall_s=_stall_s(), sale_writer=lambda: getattr(hub, "sale_writer", None))
    app.state.writer_probe = probe
    async with background(probe.run()):
        yield
