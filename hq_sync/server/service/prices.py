"""Catalog and prices for the console and the admin API: item search, a price change targeted at stores and
regions with an effective time, each sku's price history, and which stores have each change.

A price change is one feed entry per target (`*` for the chain, else one per store, regions expanded to
their stores as they are now) and one `hq_price_changes` row per sku and target, with the price it
replaced. A store *has* a change once its feed cursor (the `after` of its last feed poll, recorded in
`hq_stores.feed_cursor`) reached the change's feed sequence: the hub applies a page before it asks for
the next one. A change with a future `effective_at` is held by the hub until then.
"""

from __future__ import annotations

import datetime
from typing import Any

from hq_sync.server.service import targets
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import PriceChange

PRICE_CHUNK = 5000
MAX_PRICE = 100_000_000  # fen: ¥1,000,000, as the promotion rules bound amounts
CHAIN_TZ = datetime.timezone(datetime.timedelta(hours=8))  # China Standard Time: the chain's stores' zone


def effective_time(text: str | None) -> str | None:
    """An effective time as the hubs compare it: RFC 3339 in the chain's zone (+08:00), milliseconds. Accepts
    RFC 3339 with any offset, or a local `YYYY-MM-DDTHH:MM[:SS]` (a browser's datetime-local) in the chain's
    zone. None or empty: at once. Anything else is a 400."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        if len(raw) > 40:
            raise ValueError(raw)
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise HqError(400, "bad_time", "effective_at is RFC 3339 (2026-12-24T08:00:00+08:00) or "
                                       "YYYY-MM-DDTHH:MM in China Standard Time") from None
    if "T" not in raw or not 2000 <= when.year <= 2199:
        raise HqError(400, "bad_time", "effective_at needs a date and a time between 2000 and 2199")
    if when.tzinfo is None:
        when = when.replace(tzinfo=CHAIN_TZ)
    return when.astimezone(CHAIN_TZ).isoformat(timespec="milliseconds")


def check_price(price: int) -> None:
    if not 0 <= price <= MAX_PRICE:
        raise HqError(422, "bad_price", f"a price is whole fen from 0 to {MAX_PRICE}")


def record_prices(tx: Tx, private_key: bytes, prices: list[tuple[str, int]], stores: list[str] | None,
                  effective_at: str | None, at: str, set_by: str = "", source: str = "api") -> list[int]:
    """Put prices on the feed (chunks of PRICE_CHUNK per target) and record them, with the price each replaced,
    inside the caller's transaction. `stores` None: the whole chain."""
    seqs: list[int] = []
    for store in stores or ["*"]:
        before = _previous(tx, store, list(dict(prices)))
        for i in range(0, len(prices), PRICE_CHUNK):
            chunk = prices[i:i + PRICE_CHUNK]
            seq = append_feed(tx, private_key, store, PriceChange(prices=chunk, effective_at=effective_at), at)
            seqs.append(seq)
            latest = dict(chunk)  # a sku listed twice in one change: the last price, as hq_prices keeps it
            tx.copy("hq_price_changes",
                    "sku, feed_seq, store_id, price, previous, effective_at, set_at, set_by, source",
                    [(sku, seq, store, price, before.get(sku), effective_at, at, set_by, source)
                     for sku, price in latest.items()])
            tx.many("""INSERT INTO hq_prices (sku, store_id, price, effective_at, set_at, feed_seq)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sku, store_id) DO UPDATE SET price = excluded.price,
                       effective_at = excluded.effective_at, set_at = excluded.set_at,
                       feed_seq = excluded.feed_seq""",
                    [(sku, store, price, effective_at, at, seq) for sku, price in chunk])
    if stores is None and effective_at is None:
        tx.many("UPDATE hq_items SET price = ? WHERE sku = ?", [(price, sku) for sku, price in prices])
    return seqs


BULK = 200  # above this many skus, the prices they replace are read in one pass over the tables


def _previous(tx: Tx, store: str, skus: list[str]) -> dict[str, int | None]:
    """The price each sku has at `store` ("*": the chain) before a change: as `current_prices` has it."""
    if len(skus) <= BULK:
        return {sku: current_prices(tx, sku, [store])[store] for sku in skus}
    items = {str(r[0]): int(r[1]) for r in tx.all("SELECT sku, price FROM hq_items")}
    set_here: dict[str, tuple[int, int]] = {}
    for sku, price, seq in tx.all("SELECT sku, price, feed_seq FROM hq_prices WHERE store_id IN ('*', ?)", (store,)):
        if str(sku) not in set_here or int(seq) > set_here[str(sku)][1]:
            set_here[str(sku)] = (int(price), int(seq))
    return {sku: set_here[sku][0] if sku in set_here else items.get(sku) for sku in skus}


def set_price(db: HqDb, principal: Principal, private_key: bytes, sku: str, price: int, stores: list[str],
              regions: list[str], effective_at: str | None, at: str, source: str = "console") -> dict[str, Any]:
    """One sku's price for the chain, or for stores and regions (a region manager: only his own; all of them
    when he names none). Audited with the price each target had."""
    require(principal, "prices.write")
    check_price(price)
    when = effective_time(effective_at)
    with db.write() as tx:
        if tx.one("SELECT 1 FROM hq_items WHERE sku = ?", (sku,)) is None:
            raise HqError(404, "unknown_sku", f"no item {sku[:64]}")
        reach = targets.resolve(tx, stores, regions, targets.scope_of(tx, principal))
        before = current_prices(tx, sku, reach or ["*"])
        seqs = record_prices(tx, private_key, [(sku, price)], reach, when, at, principal.username, source)
        audit(tx, principal, "price.set", f"sku:{sku}", {"prices": before},
              {"price": price, "stores": reach or ["*"], "regions": regions, "effective_at": when, "feed_seqs": seqs},
              at=at)
    return {"sku": sku, "price": price, "stores": reach or ["*"], "effective_at": when, "feed_seqs": seqs}


def current_prices(tx: Tx, sku: str, stores: list[str]) -> dict[str, int | None]:
    """The latest price set for each target (a store's own, or the chain's when that is newer), else the
    catalog price."""
    rows = {str(r[0]): (int(r[1]), int(r[2])) for r in
            tx.all("SELECT store_id, price, feed_seq FROM hq_prices WHERE sku = ?", (sku,))}
    item = tx.one("SELECT price FROM hq_items WHERE sku = ?", (sku,))
    base = int(item[0]) if item else None
    out: dict[str, int | None] = {}
    chain = rows.get("*")
    for store in stores:
        own = rows.get(store)
        best = max((p for p in (own, chain) if p is not None), key=lambda p: p[1], default=None)
        out[store] = best[0] if best is not None else base
    return out


# -- reading ----------------------------------------------------------------------------------------------------

def search_items(db: HqDb, principal: Principal, query: str, category: str, limit: int, offset: int) -> dict[str, Any]:
    require(principal, "catalog.read")
    like = f"%{query.strip().lower()}%"
    where = "(lower(sku) LIKE ? OR lower(name_zh) LIKE ? OR lower(name_en) LIKE ? OR barcodes LIKE ?)"
    args: list[Any] = [like, like, like, f"%{query.strip()}%"]
    if category:
        where += " AND category_id = ?"
        args.append(category)
    with db.read() as tx:
        total_row = tx.one(f"SELECT count(*) FROM hq_items WHERE {where}", args)
        rows = tx.all(f"""SELECT sku, name_zh, name_en, category_id, unit, price, active,
                                 (SELECT count(*) FROM hq_prices p WHERE p.sku = i.sku AND p.store_id <> '*')
                          FROM hq_items i WHERE {where} ORDER BY sku LIMIT ? OFFSET ?""", [*args, limit, offset])
    return {"items": [{"sku": r[0], "name_zh": r[1], "name_en": r[2], "category": r[3], "unit": r[4],
                       "price": int(r[5]), "active": bool(r[6]), "store_prices": int(r[7])} for r in rows],
            "total": int(total_row[0]) if total_row else 0}


def categories(db: HqDb, principal: Principal) -> list[dict[str, Any]]:
    require(principal, "catalog.read")
    with db.read() as tx:
        rows = tx.all("SELECT category_id, parent_id, name_zh, name_en FROM hq_categories ORDER BY category_id")
    return [{"category_id": r[0], "parent_id": r[1], "name_zh": r[2], "name_en": r[3]} for r in rows]


def item_prices(db: HqDb, principal: Principal, sku: str, history_limit: int = 50) -> dict[str, Any]:
    """A sku's price per store (those the caller sees), its history and, per change, which of its target stores
    have it (feed cursor ≥ the change's feed sequence) and which do not yet."""
    require(principal, "catalog.read")
    with db.read() as tx:
        scope = targets.scope_of(tx, principal)
        item = tx.one("SELECT sku, name_zh, name_en, category_id, unit, price FROM hq_items WHERE sku = ?", (sku,))
        if item is None:
            raise HqError(404, "unknown_sku", f"no item {sku[:64]}")
        stores = [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4] is not None) for r in
                  tx.all("SELECT store_id, name, region, feed_cursor, paired_at FROM hq_stores ORDER BY store_id")]
        stores = [s for s in stores if scope is None or s[0] in scope]
        now = current_prices(tx, sku, [s[0] for s in stores])
        changes = tx.all("""SELECT feed_seq, store_id, price, previous, effective_at, set_at, set_by, source
                            FROM hq_price_changes WHERE sku = ? ORDER BY feed_seq DESC LIMIT ?""",
                         (sku, history_limit * 4))
    cursor = {s[0]: s[3] for s in stores}
    paired = [s[0] for s in stores if s[4]]
    history = []
    for seq, store, price, previous, effective_at, set_at, set_by, source in changes:
        if store != "*" and scope is not None and store not in scope:
            continue
        reach = paired if store == "*" else [store]
        have = [s for s in reach if cursor.get(s, 0) >= int(seq)]
        history.append({"feed_seq": int(seq), "target": store, "price": int(price),
                        "previous": None if previous is None else int(previous), "effective_at": effective_at,
                        "set_at": set_at, "set_by": set_by, "source": source, "applied": have,
                        "pending": [s for s in reach if s not in have]})
        if len(history) >= history_limit:
            break
    return {"sku": item[0], "name_zh": item[1], "name_en": item[2], "category": item[3], "unit": item[4],
            "chain_price": int(item[5]),
            "stores": [{"store_id": s[0], "name": s[1], "region": s[2], "price": now[s[0]], "feed_cursor": s[3],
                        "paired": s[4]} for s in stores],
            "history": history}
