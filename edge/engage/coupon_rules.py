"""The promotions behind engagement coupons (birthday, referral): a coupon-only amount off the basket.

A policy names the rule id; where no such promotion exists yet, the hub or HQ creates it with the
policy's amount, so a birthday or referral coupon is always a real coupon a till can redeem. A chain
that wants another benefit publishes its own promotion under that id (docs/members.md).
"""

from __future__ import annotations

import sqlite3

import msgspec

from edge.promotions.repository import bump_version
from edge.promotions.rules import promotion_decoder, promotion_encoder


def coupon_rule_text(rule_id: str, name_zh: str, name_en: str, off: int) -> str:
    """The rule in the documented format, checked by the promotion decoder (deterministic JSON)."""
    rule = {"rule_id": rule_id, "name": name_zh, "name_en": name_en, "eligibility": {"coupon": True},
            "benefit": {"kind": "amount_off", "amount": off, "per": "basket"}}
    return promotion_encoder.encode(promotion_decoder.decode(msgspec.json.encode(rule))).decode()


def ensure_coupon_rule(conn: sqlite3.Connection, rule_id: str, name_zh: str, name_en: str, off: int, at: str) -> bool:
    """Create the hub's promotion `rule_id` if it is missing (writer). True if it was created."""
    if conn.execute("SELECT 1 FROM promotions WHERE rule_id = ?", (rule_id,)).fetchone() is not None:
        return False
    conn.execute("""INSERT INTO promotions (rule_id, rule, active, source, created_by, created_at, updated_at)
                    VALUES (?, ?, 1, 'local', 'system:engage', ?, ?)""",
                 (rule_id, coupon_rule_text(rule_id, name_zh, name_en, off), at, at))
    bump_version(conn)
    return True
