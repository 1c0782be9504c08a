"""Prices and promotions: recorded at HQ and put on the feed for every store or the named ones."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.promotions.rules import RESERVED_PREFIXES, promotion_decoder, promotion_encoder
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.storage.db import HqDb
from hq_sync.wire import (
    PriceChange,
    PromotionPut,
)

PRICE_CHUNK = 5000


# -- prices and promotions ----------------------------------------------------------------------------------------

def set_prices(db: HqDb, private_key: bytes, prices: list[tuple[str, int]], stores: list[str] | None,
               effective_at: str | None, at: str) -> list[int]:
    """Record HQ's prices and put them on the feed (chunks of PRICE_CHUNK) for every store or the named ones."""
    if any(p < 0 for _, p in prices):
        raise HqError(422, "bad_price", "prices are non-negative fen")
    targets = stores or ["*"]
    seqs: list[int] = []
    with db.write() as tx:
        for store in targets:
            for i in range(0, len(prices), PRICE_CHUNK):
                chunk = prices[i:i + PRICE_CHUNK]
                seq = append_feed(tx, private_key, store, PriceChange(prices=chunk, effective_at=effective_at), at)
                seqs.append(seq)
                tx.many("""INSERT INTO hq_prices (sku, store_id, price, effective_at, set_at, feed_seq)
                           VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sku, store_id) DO UPDATE SET price = excluded.price,
                           effective_at = excluded.effective_at, set_at = excluded.set_at,
                           feed_seq = excluded.feed_seq""",
                        [(sku, store, price, effective_at, at, seq) for sku, price in chunk])
        if stores is None and effective_at is None:
            tx.many("UPDATE hq_items SET price = ? WHERE sku = ?", [(price, sku) for sku, price in prices])
    return seqs


def put_promotion(db: HqDb, private_key: bytes, rule_json: bytes, at: str) -> dict[str, Any]:
    try:
        promo = promotion_decoder.decode(rule_json)
    except msgspec.DecodeError as exc:
        raise HqError(400, "invalid_field", str(exc)) from None
    if promo.rule_id.startswith(RESERVED_PREFIXES):
        raise HqError(422, "reserved_rule_id", "rule ids starting with tier: or member_price are the hubs' own")
    text = promotion_encoder.encode(promo).decode()
    with db.write() as tx:
        tx.run("""INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)
                  ON CONFLICT (rule_id) DO UPDATE SET rule = excluded.rule, active = 1,
                  updated_at = excluded.updated_at""",
               (promo.rule_id, text, at))
        seq = append_feed(tx, private_key, "*", PromotionPut(rule_id=promo.rule_id, rule=text), at)
    return {"rule_id": promo.rule_id, "feed_seq": seq, "rule": msgspec.json.decode(text)}
