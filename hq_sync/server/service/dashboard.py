"""The chain dashboard: today's sales, tickets, average basket and member share per store and per
region, the store ranking, and the chain's sales per hour against the same weekday a week earlier —
over the stores in the principal's scope.

"Today" is each store's own business day in its timezone (`hq_stores.timezone`); hours are the
stores' local hours (sale times carry the store's offset). Figures come from the hourly rollup
`hq_sales_hourly`, which ingest keeps in each batch's transaction (so a page costs the same after
years of sales). They are as fresh as the last batch HQ received, so each store also says when that
was and when HQ last heard from it at all: a store that is offline shows that age, never a zero that
looks like a quiet day.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import msgspec

from edge.money import div_half_up
from edge.reports.dashboard import share_bp
from hq_sync.server.service.access import Principal, require, scope_sql
from hq_sync.server.storage.db import HqDb

ONLINE_S = 120  # heard from within this: online; else offline (its figures are as of its last batch)
DEFAULT_TZ = "Asia/Shanghai"


def basket(sales: int, tickets: int) -> int | None:
    """Average basket, rounded half-up as on the stores' own dashboards; None without tickets."""
    return div_half_up(sales, tickets) if tickets else None


def member_share(member_tickets: int, tickets: int) -> int | None:
    """Member tickets in basis points of tickets (the stores' `share_bp`); None without tickets."""
    return share_bp(member_tickets, tickets) if tickets else None


class StoreDay(msgspec.Struct, frozen=True):
    store_id: str
    name: str
    region: str
    day: str  # the store's business day today
    sales: int  # fen, sum of sale totals
    tickets: int
    member_tickets: int
    last_week_sales: int  # the same weekday a week earlier
    last_seen: str | None  # last batch HQ received
    last_contact: str | None  # last time the store called HQ at all
    lag: int
    online: bool

    @property
    def basket(self) -> int | None:
        return basket(self.sales, self.tickets)

    @property
    def member_share_bp(self) -> int | None:
        return member_share(self.member_tickets, self.tickets)


class RegionDay(msgspec.Struct, frozen=True):
    region: str
    stores: int
    offline: int
    sales: int
    tickets: int
    member_tickets: int
    last_week_sales: int

    @property
    def basket(self) -> int | None:
        return basket(self.sales, self.tickets)

    @property
    def member_share_bp(self) -> int | None:
        return member_share(self.member_tickets, self.tickets)


class ChainDashboard(msgspec.Struct, frozen=True):
    stores: list[StoreDay]  # ranked by today's sales
    regions: list[RegionDay]
    hourly: list[int]  # 24 local hours, fen
    hourly_last_week: list[int]
    sales: int
    tickets: int
    member_tickets: int
    last_week_sales: int
    as_of: str

    @property
    def basket(self) -> int | None:
        return basket(self.sales, self.tickets)

    @property
    def member_share_bp(self) -> int | None:
        return member_share(self.member_tickets, self.tickets)


def _zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or DEFAULT_TZ)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(DEFAULT_TZ)


def _seconds_since(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return None


def chain_dashboard(db: HqDb, principal: Principal, now: datetime.datetime | None = None) -> ChainDashboard:
    require(principal, "dashboard.read")
    now = now or datetime.datetime.now(datetime.UTC)
    where, args = scope_sql(principal, "store_id")
    with db.read() as tx:
        stores = tx.all(f"""SELECT store_id, name, region, timezone, last_seen, last_contact, head_seq, acked_seq
                            FROM hq_stores WHERE {where} ORDER BY store_id""", args)
        today = {str(s[0]): now.astimezone(_zone(s[3])).date() for s in stores}
        days = sorted({d.isoformat() for d in today.values()} | {(d - datetime.timedelta(days=7)).isoformat()
                                                                 for d in today.values()})
        rows: list[Any] = []
        ids = list(today)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows += tx.all(f"""SELECT store_id, day, hour, tickets, total, member_tickets FROM hq_sales_hourly
                               WHERE store_id IN ({", ".join("?" * len(chunk))})
                                 AND day IN ({", ".join("?" * len(days))})""", [*chunk, *days])
    figures: dict[str, list[int]] = {sid: [0, 0, 0, 0] for sid in ids}  # sales, tickets, members, last week
    hourly, hourly_last_week = [0] * 24, [0] * 24
    for store_id, day, hour, count, total, members in rows:
        local = today[store_id]
        h = int(hour) if 0 <= int(hour) < 24 else 0
        if day == local.isoformat():
            cell = figures[store_id]
            cell[0] += int(total)
            cell[1] += int(count)
            cell[2] += int(members or 0)
            hourly[h] += int(total)
        elif day == (local - datetime.timedelta(days=7)).isoformat():
            figures[store_id][3] += int(total)
            hourly_last_week[h] += int(total)
    out: list[StoreDay] = []
    for store_id, name, region, _tz, last_seen, last_contact, head, acked in stores:
        heard = [s for s in (_seconds_since(last_seen, now), _seconds_since(last_contact, now)) if s is not None]
        sales, tickets, members, before = figures[str(store_id)]
        out.append(StoreDay(str(store_id), str(name), str(region), today[str(store_id)].isoformat(), sales, tickets,
                            members, before, last_seen, last_contact, max(0, int(head) - int(acked)),
                            bool(heard) and min(heard) <= ONLINE_S))
    out.sort(key=lambda s: (-s.sales, s.store_id))
    regions: dict[str, list[int]] = {}
    for s in out:
        cell = regions.setdefault(s.region, [0, 0, 0, 0, 0, 0])
        for i, value in enumerate((1, 0 if s.online else 1, s.sales, s.tickets, s.member_tickets, s.last_week_sales)):
            cell[i] += value
    region_days = sorted((RegionDay(r, *cell) for r, cell in regions.items()), key=lambda r: (-r.sales, r.region))
    return ChainDashboard(out, region_days, hourly, hourly_last_week, sum(s.sales for s in out),
                          sum(s.tickets for s in out), sum(s.member_tickets for s in out),
                          sum(s.last_week_sales for s in out), now.isoformat(timespec="seconds"))


def live_signature(db: HqDb, principal: Principal) -> tuple[int, int]:
    """Cheap: moves whenever a store in scope has a batch applied (its ack) or its count of sales."""
    where, args = scope_sql(principal, "store_id")
    with db.read() as tx:
        row = tx.one(f"SELECT coalesce(sum(acked_seq), 0), coalesce(sum(sales), 0) FROM hq_stores WHERE {where}",
                     args)
    return (int(row[0]), int(row[1])) if row else (0, 0)
