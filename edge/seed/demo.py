"""Load the demo store from `seed/demo/*.csv` (static files; dates relative to the seeding day).

Opening stock, points and balances enter through the ledgers as `opening` entries, and one journal
record marks the seeding, so the derived balances equal the ledger sums from the first moment.
Seeded data is HQ's own demo data, so nothing goes to the outbox.
"""

from __future__ import annotations

import csv
import datetime
import sqlite3
import uuid
from pathlib import Path

import msgspec

from edge.auth.passwords import hash_secret
from edge.auth.roles import ROLES
from edge.catalog.barcodes import classify
from edge.clock import StoreClock
from edge.journal import chain
from edge.members import ledger as member_ledger
from edge.members import pii
from edge.members.points import seed_rewards
from edge.promotions.repository import seed_promotions
from edge.stock import ledger as stock
from edge.stock.ledger import Actor

DEMO_DIR = Path(__file__).with_name("demo")
SEED_ACTOR = Actor(user_id="system", till_id=None)


class AlreadySeeded(Exception):
    pass


def _rows(name: str) -> list[dict[str, str]]:
    with (DEMO_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _opt_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _tags(text: str) -> str:
    return msgspec.json.encode([t for t in text.split("|") if t]).decode()


def seed_demo(conn: sqlite3.Connection, store_id: str, clock: StoreClock) -> dict[str, int]:
    """Runs inside one writer transaction. Returns counts of what it loaded."""
    if conn.execute("SELECT count(*) FROM items").fetchone()[0]:
        raise AlreadySeeded("this hub already has a catalog; seed an empty data directory")
    at = clock.stamp()
    today = clock.now().date()
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('store_id', ?)", (store_id,))
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('demo', '1')")

    for row in _rows("users.csv"):
        if row["role"] not in ROLES:
            raise ValueError(f"users.csv: unknown role {row['role']}")
        conn.execute(
            """INSERT INTO users (user_id, username, display_name, role, password_hash, pin_hash, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (f"U-{row['username']}", row["username"], row["display_name"], row["role"],
             hash_secret(row["password"]) if row["password"] else None,
             hash_secret(row["pin"]) if row["pin"] else None, at),
        )
    for row in _rows("categories.csv"):
        conn.execute("INSERT INTO categories (category_id, parent_id, name_zh, name_en) VALUES (?, ?, ?, ?)",
                     (row["category_id"], row["parent_id"] or None, row["name_zh"], row["name_en"]))
    for rank, row in enumerate(_rows("tiers.csv")):  # rule: points earned over 12 months (docs/members.md)
        conn.execute(
            """INSERT INTO tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points, tier_rank,
                   metric, threshold) VALUES (?, ?, ?, ?, ?, ?, ?, 'points', ?)""",
            (row["tier"], row["name_zh"], row["name_en"], int(row["discount_bp"]),
             int(row["points_multiplier_pct"]), int(row["min_points"]), rank, int(row["min_points"])),
        )
    items = _rows("items.csv")
    for row in items:
        conn.execute(
            """INSERT INTO items (sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                   low_threshold, high_threshold, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (row["sku"], row["name_zh"], row["name_en"], row["category_id"], row["unit"], int(row["price"]),
             int(row["tax_rate_bp"]), row["plu"] or None, row["brand"], _tags(row["tags"]),
             _opt_int(row["low_threshold"]), _opt_int(row["high_threshold"]), at),
        )
        for code in filter(None, row["barcodes"].split("|")):
            symbology = classify(code)
            if symbology is None:
                raise ValueError(f"items.csv: {row['sku']} has an invalid barcode {code}")
            conn.execute("INSERT INTO barcodes (code, sku, symbology) VALUES (?, ?, ?)", (code, row["sku"], symbology))
        if int(row["initial_stock"] or 0):
            stock.record(conn, sku=row["sku"], qty=int(row["initial_stock"]), kind="receive", at=at,
                         actor=SEED_ACTOR, ref="seed", reason="opening stock")
    batches = _rows("batches.csv")
    for row in batches:
        expiry = (today + datetime.timedelta(days=int(row["expiry_days"]))).isoformat()
        received = (today + datetime.timedelta(days=int(row["received_days"]))).isoformat()
        batch_id = stock.ensure_batch(conn, row["sku"], row["lot"], expiry, received)
        stock.record(conn, sku=row["sku"], qty=int(row["qty"]), kind="receive", at=at, actor=SEED_ACTOR,
                     ref="seed", batch_id=batch_id, reason="opening stock")
    for row in items:
        stock.check_thresholds(conn, row["sku"], at)
    members = _rows("members.csv")
    for row in members:
        pii.insert_member(conn, row["member_id"], pii.Personal(
            phone=row["phone"] or None, name=row["name"], birthday=row["birthday"] or None,
            card_no=row["card_no"] or None), tier=row["tier"], tags=_tags(row["tags"]), home_store=store_id,
            created_at=at)
        conn.execute("INSERT INTO member_balance (member_id) VALUES (?)", (row["member_id"],))
        if int(row["points"]):
            member_ledger.post(conn, "points", row["member_id"], int(row["points"]), "opening", "seed", SEED_ACTOR, at)
        if int(row["balance"]):
            member_ledger.post(conn, "value", row["member_id"], int(row["balance"]), "opening", "seed", SEED_ACTOR, at)
    promotions = seed_promotions(conn, DEMO_DIR / "promotions.json", at)
    seed_rewards(conn, [(r["reward_id"], r["sku"], int(r["points"]), r["name_zh"], r["name_en"])
                        for r in _rows("points_rewards.csv")])
    counts = {"users": len(_rows("users.csv")), "items": len(items), "batches": len(batches),
              "members": len(members), "promotions": promotions}
    chain.append(conn, "seed", str(uuid.uuid4()), at, {"store_id": store_id, "demo": True, **counts})
    return counts
