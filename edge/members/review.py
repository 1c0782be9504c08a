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

from edge.background import background, settled
from edge.members import auto_tags, tiers

log = logging.getLogger(__name__)


class PassResult(msgspec.Struct, frozen=True):
    tier_changes: int = 0
    tags_changed: int = 0
    skipped: bool = False  # paired with HQ


CHUNK = 100  # members per writer transaction: a sale waits for one chunk at most, not for the whole pass


def daily_pass(conn: sqlite3.Connection, today: datetime.date, at: str,
               member_ids: list[str] | None = None) -> PassResult:
    """The pass over these members (every member without `member_ids`), inside the writer."""
    if not tiers.is_standalone(conn):
        return PassResult(skipped=True)
    changed = tiers.review(conn, today, at, member_ids)
    tagged = auto_tags.recompute(conn, today, member_ids)
    return PassResult(tier_changes=len(changed), tags_changed=len(tagged))


async def run_pass(hub: Any) -> PassResult:
    """The daily pass in chunks of members, each its own writer transaction."""
    today = datetime.date.fromisoformat(hub.clock.today())
    ids = [str(r[0]) for r in hub.db.reader().execute("SELECT member_id FROM members ORDER BY member_id")]
    total = PassResult()
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        done: PassResult = await hub.db.write(lambda conn, chunk=chunk: daily_pass(conn, today, hub.clock.stamp(),
                                                                                  chunk))
        if done.skipped:
            return done
        total = PassResult(tier_changes=total.tier_changes + done.tier_changes,
                           tags_changed=total.tags_changed + done.tags_changed)
    return total


@asynccontextmanager
async def review_lifespan(app: Any) -> AsyncIterator[None]:
    hub = app.state.hub

    async def once() -> str:
        today = hub.clock.today()
        try:
            done = await run_pass(hub)
            if not done.skipped:
                log.info("member pass: %d tier changes, %d members' tags changed", done.tier_changes,
                         done.tags_changed)
        except Exception:
            log.exception("member pass failed")
        return str(today)

    async def daily() -> None:
        await settled(hub.config.host, hub.config.port)  # the first pass once the hub answers (edge/background.py)
        last = await once()
        while True:
            await asyncio.sleep(300)
            if hub.clock.today() != last:
                last = await once()

    async with background(daily()):
        yield
