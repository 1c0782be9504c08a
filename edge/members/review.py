"""A standalone hub's daily member pass: tier reviews (upgrades and due downgrades) and the automatic
tags, at start and then on each change of the store's date. A paired hub skips it: HQ runs the same
rules chain-wide and sends the results down the feed."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from edge.members import auto_tags, tiers

log = logging.getLogger(__name__)


class PassResult(msgspec.Struct, frozen=True):
    tier_changes: int = 0
    tags_changed: int = 0
    skipped: bool = False  # paired with HQ


def daily_pass(conn: sqlite3.Connection, today: datetime.date, at: str) -> PassResult:
    """One pass over every member (inside the writer: one transaction)."""
    if not tiers.is_standalone(conn):
        return PassResult(skipped=True)
    changed = tiers.review(conn, today, at)
    tagged = auto_tags.recompute(conn, today)
    return PassResult(tier_changes=len(changed), tags_changed=len(tagged))


@asynccontextmanager
async def review_lifespan(app: Any) -> AsyncIterator[None]:
    hub = app.state.hub

    async def once() -> str:
        today = hub.clock.today()
        try:
            done = await hub.db.write(
                lambda conn: daily_pass(conn, datetime.date.fromisoformat(today), hub.clock.stamp()))
            if not done.skipped:
                log.info("member pass: %d tier changes, %d members' tags changed", done.tier_changes,
                         done.tags_changed)
        except Exception:
            log.exception("member pass failed")
        return str(today)

    async def daily() -> None:
        last = await once()
        while True:
            await asyncio.sleep(300)
            if hub.clock.today() != last:
                last = await once()

    task = asyncio.create_task(daily())
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
