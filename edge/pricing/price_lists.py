"""Which price is in force: HQ price lists with time windows, per-store overrides and tier prices.

A list covers some skus from `effective_from` (inclusive) until `effective_until` (exclusive, open
when NULL), for every store (`store_id` NULL) or one store, for everyone (`tier` NULL) or as the
member price of one tier. For a sale at time t the base price of an item is the entry of the most
specific list in force — a store's own list over the chain's, then the latest `effective_from`,
then the highest list id — and the item's catalog price where no list covers it. A tier list gives
that tier's member price the same way; the engine shows it as a "会员价" line discount. A store
manager may change a price locally only where no list in force says otherwise (`local_edit` = 0).
"""

from __future__ import annotations

import datetime
import sqlite3

import msgspec

from edge.catalog.models import Item

LOCAL_LIST_PREFIX = "local:"


def utc_text(at: datetime.datetime) -> str:
    """The text form price lists and coupons store times in, which sorts as time does."""
    utc = at.astimezone(datetime.UTC)
    if utc.year < 1000:  # the C library's %Y does not pad these; keep what was always stored
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # isoformat, not strftime: the same text (microseconds always written) in a third of the time
    # (strftime builds a time tuple and goes through the C library); once per quote.
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class PriceEntry(msgspec.Struct, frozen=True):
    list_id: str
    store_id: str | None
    tier: str | None
    price: int
    effective_from: str
    local_edit: bool = False


def _rank(entry: PriceEntry) -> tuple[bool, str, str]:
    return entry.store_id is not None, entry.effective_from, entry.list_id


def pick(entries: list[PriceEntry], tier: str | None) -> tuple[PriceEntry | None, PriceEntry | None]:
    """(base price entry, member price entry) among entries already filtered to the store and time.

    A store manager's local price counts only until HQ publishes a newer list for the sku."""
    hq = [e for e in entries if e.tier is None and not e.list_id.startswith(LOCAL_LIST_PREFIX)]
    newest_hq = max((e.effective_from for e in hq), default="")
    local = [e for e in entries if e.tier is None and e.list_id.startswith(LOCAL_LIST_PREFIX)
             and e.effective_from >= newest_hq]
    base = max(hq + local, key=_rank, default=None)
    member = max((e for e in entries if tier is not None and e.tier == tier), key=_rank, default=None)
    return base, member


_IN_FORCE = """
    SELECT l.list_id, l.store_id, l.tier, i.price, l.effective_from, l.local_edit
    FROM price_list_items i JOIN price_lists l ON l.list_id = i.list_id
    WHERE i.sku = ? AND l.effective_from <= ? AND (l.effective_until IS NULL OR l.effective_until > ?)
      AND (l.store_id IS NULL OR l.store_id = ?)"""


def entries_in_force(
    conn: sqlite3.Connection, sku: str, store_id: str, at: datetime.datetime | str
) -> list[PriceEntry]:
    t = at if isinstance(at, str) else utc_text(at)
    rows = conn.execute(_IN_FORCE, (sku, t, t, store_id)).fetchall()
    return [PriceEntry(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


class PriceBoard:
    """Prices in force for one quote: the store, the shopper's tier and the time are fixed."""

    def __init__(self, store_id: str, tier: str | None, at: datetime.datetime) -> None:
        self.store_id = store_id
        self.tier = tier
        self.at = at
        self._at_text = utc_text(at)  # once per quote, not once per line
        self._any: bool | None = None  # are there price lists at all? (asked once per quote)

    def apply(self, conn: sqlite3.Connection, item: Item) -> tuple[Item, int | None]:
        """The item at its price in force, and the shopper's member price if a tier list has one."""
        if self._any is None:
            self._any = conn.execute("SELECT 1 FROM price_list_items LIMIT 1").fetchone() is not None
        if not self._any:
            return item, None
        entries = entries_in_force(conn, item.sku, self.store_id, self._at_text)
        if not entries:
            return item, None
        base, member = pick(entries, self.tier)
        if base is not None and base.price != item.price:
            item = msgspec.structs.replace(item, price=base.price)
        return item, member.price if member is not None else None


def local_edit_blocked(conn: sqlite3.Connection, sku: str, store_id: str, at: datetime.datetime) -> str | None:
    """The HQ list that fixes this sku's price now (local edits not allowed), or None."""
    base, _ = pick(entries_in_force(conn, sku, store_id, at), None)
    if base is not None and not base.local_edit and not base.list_id.startswith(LOCAL_LIST_PREFIX):
        return base.list_id
    return None


def set_local_price(conn: sqlite3.Connection, sku: str, price: int, store_id: str, at: datetime.datetime) -> None:
    """A manager's price for this store: into the store's own list, which then outranks chain lists.

    Only needed where a list covers the sku (and allows local edits); elsewhere the catalog price is
    the price. Call after `local_edit_blocked` said no list forbids it."""
    if not entries_in_force(conn, sku, store_id, at):
        return
    list_id = f"{LOCAL_LIST_PREFIX}{store_id}"
    t = utc_text(at)
    conn.execute(
        """INSERT INTO price_lists (list_id, name, store_id, effective_from, local_edit, source, created_at)
           VALUES (?, '门店调价 Store price', ?, ?, 1, 'local', ?)
           ON CONFLICT (list_id) DO UPDATE SET effective_from = excluded.effective_from""",
        (list_id, store_id, t, t),
    )
    conn.execute(
        """INSERT INTO price_list_items (list_id, sku, price) VALUES (?, ?, ?)
           ON CONFLICT (list_id, sku) DO UPDATE SET price = excluded.price""",
        (list_id, sku, price),
    )
