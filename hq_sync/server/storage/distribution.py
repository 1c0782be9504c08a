"""Where each HQ table lives when one PostgreSQL server is not enough: the classification as data.

docs/hq-scale.md maps it onto Citus (distributed PostgreSQL); tests/test_hq_schema_distribution.py checks
the real schema against it on SQLite and on PostgreSQL, so the mapping cannot rot:
- every table of the schema is classified here (and nothing here is missing from the schema);
- a distributed table has its distribution column, and each of its primary and unique keys contains it
  (the rule Citus enforces: a key is only checked within one shard);
- a partitioned table is range-partitioned by month on PostgreSQL, by its `partition` column, and that
  column is in each of its keys too (PostgreSQL's rule for partitioned tables).

Kinds:
- `distributed`: sharded by `column`; tables with the same column form one colocation group (a store's
  rows of every table on one node, a member's likewise), so a store's batch or a member's authorisation
  is a single-node (router) transaction.
- `reference`: small, chain-wide, read everywhere (catalog, prices, promotions, users, regions...):
  copied to every node.
- `local`: stays on the coordinator (HQ's own key, counters, sessions, the chain-ordered feed log with
  its one sequence, the console's audit log).
"""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["distributed", "reference", "local"]


class Placement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Kind
    column: str | None = None  # the distribution column (distributed tables)
    partition: str | None = None  # PostgreSQL: range-partitioned by month on this column (a 'YYYY-MM-DD' day)
    note: str = ""


def _store(note: str = "", partition: str | None = None) -> Placement:
    return Placement("distributed", "store_id", partition, note)


def _member(note: str = "") -> Placement:
    return Placement("distributed", "member_id", None, note)


def _reference(note: str = "") -> Placement:
    return Placement("reference", None, None, note)


def _local(note: str = "") -> Placement:
    return Placement("local", None, None, note)


PLACEMENT: dict[str, Placement] = {
    # -- a store's data: everything its batches bring, its sync state and the rollups of its sales ----------
    "hq_stores": _store("the store's sync state; a batch locks this row"),
    "hq_deltas": _store("every delta received, idempotency by (store, seq)"),
    "hq_quarantine_notes": _store(),
    "hq_digest_checks": _store(),
    "hq_sales": _store("one row per sale", partition="day"),
    "hq_sale_lines": _store("one row per sale line", partition="day"),
    "hq_sale_tenders": _store(partition="day"),
    "hq_pay_tenders": _store("provider-paid tenders and refunds with their references, for the chain bill"),
    "hq_sale_line_rules": _store("promotion amounts per sale line", partition="day"),
    "hq_returns": _store(),
    "hq_topups": _store("a store's top-ups; the member's money moves in hq_member_ledger"),
    "hq_stock_movements": _store(),
    "hq_stock_levels": _store(),
    "hq_z_reports": _store(),
    "hq_sales_hourly": _store("rollup: the dashboard's"),
    "hq_store_hours": _store("rollup: reports by hour"),
    "hq_store_days": _store("rollup: reports by store, region and day"),
    "hq_sku_days": _store("rollup: reports by category and item"),
    "hq_rule_days": _store("rollup: promotion results"),
    # -- a member's data: balances, escrow, ledger, grants and reclaims, rules, referrals, notices ----------
    "hq_members": _member("balances (cached sums of the ledger); an authorisation locks this row"),
    "hq_member_ledger": _member("append-only value and points ledger"),
    "hq_member_adjustments": _member(),
    "hq_escrow": _member("what each store may spend offline: keyed by member, store_id a column"),
    "hq_escrow_activity": _member(),
    "hq_grants": _member("escrow grants; idempotent by (member, request)"),
    "hq_reclaims": _member(),
    "hq_member_status": _member(),
    "hq_member_tier_changes": _member(),
    "hq_referrals": _member("keyed by the referred member"),
    "hq_referral_rewards": _member("keyed by the referred member"),
    "hq_notifications": _member(),
    "hq_pii_audit": _member(),
    "hq_pii_views": _member(),
    # -- chain coupons: their own colocation group, keyed by the code --------------------------------------
    "hq_coupons": Placement("distributed", "code", None, "a coupon and its uses are counted per code"),
    "hq_coupon_uses": Placement("distributed", "code", None, "max_uses is checked within the code's shard"),
    # -- reference tables: small, chain-wide --------------------------------------------------------------
    "hq_items": _reference("catalog"),
    "hq_categories": _reference("catalog"),
    "hq_prices": _reference("chain and per-store prices (a few per item)"),
    "hq_price_changes": _reference("price history"),
    "hq_promotions": _reference(),
    "hq_tiers": _reference(),
    "hq_tier_rules": _reference(),
    "hq_tag_rules": _reference(),
    "hq_users": _reference(),
    "hq_regions": _reference(),
    "hq_user_regions": _reference(),
    "hq_chain_settings": _reference(),
    "hq_pair_codes": _reference("looked up by the code a store presents, before it is paired"),
    "hq_member_aliases": _reference("merged members' old ids, looked up by the old id; few"),
    "hq_transfers": _reference("between two stores, so no one store key; a few a day per store"),
    "hq_transfer_lines": _reference(),
    "hq_transfer_approvals": _reference(),
    # -- local to the coordinator -------------------------------------------------------------------------
    "hq_meta": _local(),
    "hq_keys": _local("HQ's signing key"),
    "hq_counters": _local(),
    "hq_tokens": _local("sessions"),
    "hq_login_failures": _local(),
    "hq_feed": _local("the chain's signed feed: one ordered log, one sequence"),
    "hq_feed_pending": _local("feed entries waiting for their seq (PostgreSQL's sequencer)"),
    "hq_audit": _local("the console's audit log"),
    "hq_price_imports": _local("CSV imports in progress"),
    # -- the chain's merchant bills (docs/payments-hq.md): one import covers every store; finance work, not a
    # hot path. The bill and its split stay on the coordinator; matching reads each store's hq_pay_tenders by
    # its store key.
    "hq_statements": _local("an imported chain bill"),
    "hq_statement_rows": _local("the bill's rows, attributed to stores"),
    "hq_statement_stores": _local("the bill's split per store"),
    "hq_statement_anomalies": _local("differences found, with their resolutions"),
    "hq_statement_store_codes": _reference("provider store field -> store"),
}


def distributed() -> dict[str, str]:
    """Table → distribution column, for the distributed tables."""
    return {t: p.column for t, p in PLACEMENT.items() if p.kind == "distributed" and p.column is not None}


def partitioned() -> dict[str, str]:
    """Table → its monthly partition column (PostgreSQL)."""
    return {t: p.partition for t, p in PLACEMENT.items() if p.partition is not None}


def colocation_groups() -> dict[str, list[str]]:
    """Distribution column → the tables distributed by it (one colocation group each)."""
    groups: dict[str, list[str]] = {}
    for table, column in distributed().items():
        groups.setdefault(column, []).append(table)
    return groups
