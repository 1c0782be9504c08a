"""The demo chain: two stores, the demo catalog, tiers, members, promotions and one login per HQ role (DEMO_USERS)."""

from __future__ import annotations

import csv
from pathlib import Path

import msgspec

from edge.catalog.barcodes import classify
from hq_sync.server.service import pii
from hq_sync.server.service.auth import add_user
from hq_sync.server.service.stores import ensure_store
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import MemberRow

DEMO_DIR = Path(__file__).resolve().parents[3] / "edge" / "seed" / "demo"
DEMO_STORES = (("demo-001", "演示一店 Demo store 1", "华东 East"), ("demo-002", "演示二店 Demo store 2", "华北 North"))
# (username, password, role, regions): one login per HQ role (README, docs/hq-console.md)
DEMO_USERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("hq", "hq-demo", "hq_admin", ()),
    ("region-east", "region-demo", "region_manager", ("华东 East",)),
    ("operator", "operator-demo", "hq_operator", ()),
    ("finance", "finance-demo", "finance", ()),
    ("auditor", "auditor-demo", "auditor", ()),
)


# -- the demo chain ---------------------------------------------------------------------------------------------

def _csv(name: str) -> list[dict[str, str]]:
    with (DEMO_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def seed_demo(db: HqDb, at: str) -> bool:
    """Seed an empty HQ with the demo chain: two stores, the demo catalog, tiers, members, promotions
    and the `hq` / `hq-demo` login. False if it already holds a catalog."""
    with db.write() as tx:
        if tx.one("SELECT 1 FROM hq_items LIMIT 1") is not None:
            if is_demo_tx(tx):
                _demo_users(tx, at)  # a demo HQ made before these logins existed gains them
            return False
        for store_id, name, region in DEMO_STORES:
            ensure_store(tx, store_id, name, region, demo=True)
        _demo_users(tx, at)
        tx.many("INSERT INTO hq_categories (category_id, parent_id, name_zh, name_en) VALUES (?, ?, ?, ?)",
                [(r["category_id"], r["parent_id"] or None, r["name_zh"], r["name_en"])
                 for r in _csv("categories.csv")])
        tx.many("""INSERT INTO hq_tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [(r["tier"], r["name_zh"], r["name_en"], int(r["discount_bp"]), int(r["points_multiplier_pct"]),
                  int(r["min_points"])) for r in _csv("tiers.csv")])
        items = []
        for r in _csv("items.csv"):
            codes = [(c, classify(c) or "ean13") for c in filter(None, r["barcodes"].split("|"))]
            tags = [t for t in r["tags"].split("|") if t] if r["tags"] else []
            items.append((r["sku"], r["name_zh"], r["name_en"], r["category_id"], r["unit"], int(r["price"]),
                          int(r["tax_rate_bp"]), r["plu"] or None, r["brand"], msgspec.json.encode(tags).decode(),
                          msgspec.json.encode(codes).decode()))
        tx.many("""INSERT INTO hq_items (sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                   barcodes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", items)
        for r in _csv("members.csv"):
            tags = [t for t in r["tags"].split("|") if t] if r["tags"] else []
            pii.insert_member(tx, MemberRow(r["member_id"], r["tier"], r["phone"] or None, r["card_no"] or None,
                                            r["name"], r["birthday"] or None, tags, DEMO_STORES[0][0], at),
                              balance=int(r["balance"]), points=int(r["points"]))
            for ledger, amount in (("value", int(r["balance"])), ("points", int(r["points"]))):
                if amount:
                    tx.run("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
                              VALUES (?, ?, ?, 'opening', NULL, 'seed', ?)""", (r["member_id"], ledger, amount, at))
        promos = msgspec.json.decode((DEMO_DIR.parent / "demo" / "promotions.json").read_bytes())
        for rule in promos.get("promotions", []):
            tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)",
                   (rule["rule_id"], msgspec.json.encode(rule).decode(), at))
        tx.run("INSERT INTO hq_meta (key, value) VALUES ('demo', '1') ON CONFLICT (key) DO NOTHING")
    return True


def _demo_users(tx: Tx, at: str) -> None:
    for username, password, role, regions in DEMO_USERS:
        add_user(tx, username, password, role, regions, at=at)


def is_demo_tx(tx: Tx) -> bool:
    return tx.one("SELECT 1 FROM hq_meta WHERE key = 'demo'") is not None


def is_demo(db: HqDb) -> bool:
    with db.read() as tx:
        return is_demo_tx(tx)
