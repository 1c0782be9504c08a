"""Prices and promotions: recorded at HQ and put on the feed for every store or the named ones."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.promotions.rules import RESERVED_PREFIXES, promotion_decoder, promotion_encoder
from hq_sync.server.service.access import Principal, require, require_stores, target_stores
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.prices import check_price, effective_time, record_prices
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import PromotionPut

# -- prices and promotions ----------------------------------------------------------------------------------------

def set_prices(db: HqDb, principal: Principal, private_key: bytes, prices: list[tuple[str, int]],
               stores: list[str] | None, effective_at: str | None, at: str,
               regions: list[str] | None = None) -> list[int]:
    """Record HQ's prices and put them on the feed (chunks of PRICE_CHUNK) for every store or the named
    stores and regions (a region manager: his stores only, all of them when he names none)."""
    require(principal, "prices.write")
    for _, price in prices:
        check_price(price)
    effective_at = effective_time(effective_at)
    with db.write() as tx:
        named = target_stores(tx, principal, stores, regions)
        targets = named if named is not None else ["*"]
        before = _prices_before(tx, [sku for sku, _ in prices], targets) if len(prices) <= AUDIT_DETAIL else None
        seqs = record_prices(tx, private_key, prices, named, effective_at, at, principal.username, "api")
        target = f"sku:{prices[0][0]}" if len(prices) == 1 else f"prices:{len(prices)}"
        after = {"prices": prices if len(prices) <= AUDIT_DETAIL else f"{len(prices)} prices",
                 "stores": targets, "effective_at": effective_at, "feed_seqs": seqs[:AUDIT_DETAIL]}
        audit(tx, principal, "price.set", target, before, after, at=at)
    return seqs


def feed_targets(db: HqDb, seqs: list[int]) -> list[str]:
    """The stores (or "*") that the feed entries `seqs` are addressed to."""
    if not seqs:
        return []
    with db.read() as tx:
        return [str(r[0]) for r in tx.all(f"SELECT DISTINCT store_id FROM hq_feed WHERE seq IN "
                                          f"({', '.join('?' * len(seqs))}) ORDER BY store_id", seqs)]


AUDIT_DETAIL = 50  # a bulk change is audited as one row; up to this many prices are listed in it


def _prices_before(tx: Tx, skus: list[str], targets: list[str]) -> dict[str, dict[str, int]]:
    """sku -> {store or "*": the price HQ had set there} (the catalog price as "*" when none was set)."""
    out: dict[str, dict[str, int]] = {}
    for sku in skus:
        row = tx.one("SELECT price FROM hq_items WHERE sku = ?", (sku,))
        here = {"*": int(row[0])} if row else {}
        marks = ", ".join("?" * len(targets))
        for store, price in tx.all(f"SELECT store_id, price FROM hq_prices WHERE sku = ? AND store_id IN ({marks})",
                                   [sku, *targets]):
            here[str(store)] = int(price)
        out[sku] = here
    return out


def _promotion_in_scope(principal: Principal, tx: Tx, stores: list[str]) -> None:
    """A region manager's promotion names its stores, all of them his."""
    if not principal.scoped:
        return
    if not stores:
        raise HqError(403, "out_of_scope", "a region manager's promotion names the stores of his regions "
                                           "(eligibility.stores)")
    require_stores(tx, principal, stores)


def put_promotion(db: HqDb, principal: Principal, private_key: bytes, rule_json: bytes, at: str) -> dict[str, Any]:
    require(principal, "promotions.write")
    try:
        promo = promotion_decoder.decode(rule_json)
    except msgspec.DecodeError as exc:
        raise HqError(400, "invalid_field", str(exc)) from None
    if promo.rule_id.startswith(RESERVED_PREFIXES):
        raise HqError(422, "reserved_rule_id", "rule ids starting with tier: or member_price are the hubs' own")
    text = promotion_encoder.encode(promo).decode()
    with db.write() as tx:
        _promotion_in_scope(principal, tx, list(promo.eligibility.stores))
        old = tx.one("SELECT rule, active FROM hq_promotions WHERE rule_id = ?", (promo.rule_id,))
        if old is not None:  # replacing a rule: the rule as it stands must be his to change, too
            _promotion_in_scope(principal, tx, list(promotion_decoder.decode(old[0]).eligibility.stores))
        tx.run("""INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)
                  ON CONFLICT (rule_id) DO UPDATE SET rule = excluded.rule, active = 1,
                  updated_at = excluded.updated_at""",
               (promo.rule_id, text, at))
        seq = append_feed(tx, private_key, "*", PromotionPut(rule_id=promo.rule_id, rule=text), at)
        audit(tx, principal, "promotion.put", f"promotion:{promo.rule_id}",
              None if old is None else {"rule": msgspec.json.decode(old[0]), "active": bool(old[1])},
              {"rule": msgspec.json.decode(text), "active": True, "feed_seq": seq}, at=at)
    return {"rule_id": promo.rule_id, "feed_seq": seq, "rule": msgspec.json.decode(text)}
