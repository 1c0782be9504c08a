"""Points beyond earning and the points tender: expiry by batch, and rewards (积分兑换).

Batches: every positive points entry is a batch (`points_batches`, kept by `ledger.post` in the same
transaction) expiring at the end of the month `points_valid_months` after it was earned (0: never);
debits use batches first-expiring-first, so a member's points always equal Σ remaining.

Expiry: `expire_points` posts one `expire` entry per member for what is left of batches whose date
has passed, with a journal record and a `points_expired` delta. A hub paired with HQ does not expire
locally: its points are HQ's escrow and HQ's ledger is the authority (docs/promotions.md).

Rewards: `points_rewards` says item X costs N points. A sale line `{"reward": true}` is priced at 0
(applied `reward:<id>`) and the sale deducts N x qty points (ledger kind `reward`); returning the line
gives them back (`reward_return`).
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec

from edge.background import background, settled
from edge.errors import ApiError
from edge.journal import chain
from edge.members import ledger
from edge.members.models import PointsExpiring
from edge.money import share_of_units
from edge.outbox import queue as outbox
from edge.pricing.engine import Applied, BasketLine, PricedLine, Quote
from edge.stock.ledger import Actor
from hq_sync.protocol import PointsExpiredDelta

if TYPE_CHECKING:
    import asyncio
else:  # the sale-writer process, which has no event loop, does without it (8 MB resident)
    from edge.lazy_import import LazyModule

    asyncio = LazyModule("asyncio")

log = logging.getLogger(__name__)
EXPIRY_ACTOR = Actor(user_id="system:points-expiry", till_id=None)


class Reward(msgspec.Struct, frozen=True):
    reward_id: str
    sku: str
    points: int
    name_zh: str
    name_en: str


# -- expiry -------------------------------------------------------------------------------------------------------


def next_expiring(conn: sqlite3.Connection, member_id: str) -> PointsExpiring | None:
    row = conn.execute(
        """SELECT expires_on, sum(remaining) FROM points_batches
           WHERE member_id = ? AND remaining > 0 AND expires_on IS NOT NULL
           GROUP BY expires_on ORDER BY expires_on LIMIT 1""", (member_id,)).fetchone()
    return PointsExpiring(int(row[1]), str(row[0])) if row else None


def is_paired(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sync_state").fetchone() is not None


def expire_points(conn: sqlite3.Connection, today: str, at: str, actor: Actor = EXPIRY_ACTOR) -> list[tuple[str, int]]:
    """Expire what is left of every batch whose expiry date is before `today` (store-local date).
    Returns (member_id, points expired) per member. Idempotent: a second run finds nothing left."""
    due = conn.execute(
        """SELECT member_id, sum(remaining) FROM points_batches
           WHERE remaining > 0 AND expires_on IS NOT NULL AND expires_on < ?
           GROUP BY member_id ORDER BY member_id""", (today,)).fetchall()
    done = []
    for member_id, amount in due:
        points = int(amount)
        ref = f"{member_id}:{today}"
        # The expired batches expire first, so first-expiring-first consumption takes exactly them.
        ledger.post(conn, "points", member_id, -points, "expire", ref, actor, at)
        appended = chain.append(conn, "points_expire", ref, at, {
            "member_id": member_id, "points": points, "before": today, "user_id": actor.user_id})
        outbox.append(conn, PointsExpiredDelta(member_id=member_id, points=points, before=today, at=at,
                                               journal_seq=appended.seq), ref, at)
        done.append((member_id, points))
    return done


def set_valid_months(conn: sqlite3.Connection, months: int) -> None:
    conn.execute("""INSERT INTO settings (key, value) VALUES ('points_valid_months', ?)
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (str(months),))


def run_expiry(conn: sqlite3.Connection, today: str, at: str, hq_configured: bool) -> list[tuple[str, int]] | None:
    """The expiry pass of a hub: None (skipped) when the hub is paired with HQ or an HQ is configured."""
    if hq_configured or is_paired(conn):
        return None
    return expire_points(conn, today, at)


@asynccontextmanager
async def points_lifespan(app: Any) -> AsyncIterator[None]:
    """Record the configured validity, expire points at start, then once a day (on the store's date change)."""
    hub = app.state.hub
    config = hub.config
    await hub.db.write(lambda conn: set_valid_months(conn, config.points_valid_months))

    async def once() -> str:
        today = hub.clock.today()
        try:
            done = await hub.db.write(
                lambda conn: run_expiry(conn, today, hub.clock.stamp(), config.hq_url is not None))
            if done:
                log.info("points expired for %d members", len(done))
        except Exception:
            log.exception("points expiry pass failed")
        return str(today)

    async def daily() -> None:
        await settled(config.host, config.port)  # the first pass once the hub answers (edge/background.py)
        last = await once()
        while True:
            await asyncio.sleep(600)
            if hub.clock.today() != last:
                last = await once()

    async with background(daily()):
        yield


# -- rewards ------------------------------------------------------------------------------------------------------


def reward_for(conn: sqlite3.Connection, sku: str) -> Reward | None:
    row = conn.execute("SELECT reward_id, sku, points, name_zh, name_en FROM points_rewards WHERE sku = ? AND active",
                       (sku,)).fetchone()
    return Reward(row[0], row[1], int(row[2]), row[3], row[4]) if row else None


def price_rewards(conn: sqlite3.Connection, quote: Quote, lines: Sequence[BasketLine]) -> Quote:
    """Add reward lines (priced outside the promotions) to a quote: net 0, the whole gross as `reward:<id>`."""
    if not lines:
        return quote
    priced = list(quote.lines)
    for line in lines:
        reward = reward_for(conn, line.item.sku)
        where = f"lines[{line.line_no - 1}]"
        if reward is None:
            raise ApiError(422, "not_a_reward", f"{where}: {line.item.sku} cannot be had for points",
                           line_no=line.line_no)
        if line.item.unit != "each":
            raise ApiError(422, "not_a_reward", f"{where}: a reward is counted, not weighed", line_no=line.line_no)
        cost = reward.points * line.qty
        priced.append(PricedLine(
            line_no=line.line_no, sku=line.item.sku, name=line.item.name_zh, name_en=line.item.name_en,
            barcode=line.barcode, unit=line.item.unit, qty=line.qty, weight_g=line.weight_g,
            unit_price=line.unit_price, gross=line.gross, discount=line.gross, net=0, tax=0,
            tax_rate_bp=line.item.tax_rate_bp, category=line.item.category,
            applied=[Applied(f"reward:{reward.reward_id}", f"积分兑换 {reward.name_zh}",
                             f"Points reward {reward.name_en}", line.gross, note=f"{cost}积分",
                             note_en=f"{cost} points")]))
    priced.sort(key=lambda p: p.line_no)
    gross = sum(line.gross for line in lines)
    return msgspec.structs.replace(quote, lines=priced, subtotal=quote.subtotal + gross,
                                   discount=quote.discount + gross)


def record_rewards(conn: sqlite3.Connection, sale_id: str, quote: Quote) -> int:
    """Record a sale's reward lines; returns the points they cost."""
    total = 0
    for line in quote.lines:
        for applied in line.applied:
            if applied.rule_id.startswith("reward:"):
                row = conn.execute("SELECT points FROM points_rewards WHERE reward_id = ?",
                                   (applied.rule_id[len("reward:"):],)).fetchone()
                if row is None:
                    raise ApiError(409, "reward_changed", f"reward {applied.rule_id} is gone; quote again")
                cost = int(row[0]) * line.qty
                conn.execute("INSERT INTO sale_rewards (sale_id, line_no, reward_id, points) VALUES (?, ?, ?, ?)",
                             (sale_id, line.line_no, applied.rule_id[len("reward:"):], cost))
                total += cost
    return total


def reward_points_back(conn: sqlite3.Connection, sale_id: str, line_no: int, units: int, done: int,
                       taking: int) -> int:
    """Points a return of `taking` of a line's `units` (after `done` returned) gives back: 0 unless a reward line."""
    row = conn.execute("SELECT points FROM sale_rewards WHERE sale_id = ? AND line_no = ?",
                       (sale_id, line_no)).fetchone()
    return share_of_units(int(row[0]), units, done, taking) if row else 0


def list_rewards(conn: sqlite3.Connection) -> list[Reward]:
    return [Reward(r[0], r[1], int(r[2]), r[3], r[4]) for r in conn.execute(
        "SELECT reward_id, sku, points, name_zh, name_en FROM points_rewards WHERE active ORDER BY reward_id")]


def seed_rewards(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, int, str, str]]) -> int:
    conn.executemany("INSERT INTO points_rewards (reward_id, sku, points, name_zh, name_en) VALUES (?, ?, ?, ?, ?)",
                     rows)
    return len(rows)


def parse_today(text: str | None, fallback: str) -> str:
    return datetime.date.fromisoformat(text).isoformat() if text else fallback
