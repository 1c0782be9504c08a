"""HQ's schema, the same on SQLite and PostgreSQL (BIGINT everywhere; BLOB becomes BYTEA).

Append-only where money is concerned: `hq_member_ledger` holds every change of a member's balance
and points; `hq_members` caches the sums and `hq_escrow` what each store may spend of them, with
CHECK constraints so no code path can store a negative balance or a negative escrow.

Member rules (docs/members.md): `hq_tier_rules` is each tier's rule (a tier without a row is a points
rule at its `min_points`), `hq_member_status` a member's review date and automatic tags,
`hq_member_tier_changes` every tier change, `hq_tag_rules` the automatic tag definitions.

Ready for distributed PostgreSQL (docs/hq-scale.md): every table is classified in storage/distribution.py;
each key of a store's or a member's table leads with `store_id` / `member_id`; the big sale tables are
`PARTITION BY RANGE (day)` on PostgreSQL (text in `/*PG: ...*/` is PostgreSQL's only, storage/db.py) with
their months made by storage/partitions.py. A database made with the old keys is converted at start
(`REKEYED`).
"""

from __future__ import annotations

import datetime
import re

from edge.members import pii as pii_crypto
from hq_sync.server.storage import distribution, partitions
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.server.storage.statements import STATEMENTS_SCHEMA, create_statement_tables

VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS hq_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_keys (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    private_key BLOB NOT NULL,
    public_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_tokens (
    token TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_stores (
    store_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    public_key BLOB,
    base_seq BIGINT NOT NULL DEFAULT 0,
    acked_seq BIGINT NOT NULL DEFAULT 0,
    head_seq BIGINT NOT NULL DEFAULT 0,
    sales BIGINT NOT NULL DEFAULT 0,
    last_seen TEXT,
    paired_at TEXT,
    demo BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS hq_pair_codes (
    code_hash TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at TEXT,
    used_key BLOB
);
CREATE TABLE IF NOT EXISTS hq_deltas (
    store_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    day TEXT NOT NULL,
    amount BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('applied', 'quarantined')),
    reason TEXT NOT NULL DEFAULT '',
    payload BLOB,
    received_at TEXT NOT NULL,
    PRIMARY KEY (store_id, seq)
);
CREATE INDEX IF NOT EXISTS hq_deltas_quarantined ON hq_deltas (store_id, seq) WHERE status = 'quarantined';
CREATE TABLE IF NOT EXISTS hq_sales (
    sale_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    receipt_no TEXT NOT NULL,
    till_id TEXT NOT NULL,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    member_id TEXT,
    subtotal BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    total BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    value_spent BIGINT NOT NULL,
    points_redeemed BIGINT NOT NULL,
    points_earned BIGINT NOT NULL,
    PRIMARY KEY (store_id, sale_id, day)
) /*PG: PARTITION BY RANGE (day)*/;
CREATE INDEX IF NOT EXISTS hq_sales_sale ON hq_sales (sale_id);
CREATE INDEX IF NOT EXISTS hq_sales_member_at ON hq_sales (member_id, at) WHERE member_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS hq_sale_lines (
    sale_id TEXT NOT NULL,
    line_no BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    qty BIGINT NOT NULL,
    weight_g BIGINT,
    net BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    day TEXT NOT NULL,
    PRIMARY KEY (store_id, sale_id, line_no, day)
) /*PG: PARTITION BY RANGE (day)*/;
CREATE TABLE IF NOT EXISTS hq_sale_tenders (
    sale_id TEXT NOT NULL,
    tender_no BIGINT NOT NULL,
    method TEXT NOT NULL,
    amount BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    PRIMARY KEY (store_id, sale_id, tender_no, day)
) /*PG: PARTITION BY RANGE (day)*/;
CREATE TABLE IF NOT EXISTS hq_returns (
    return_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    sale_id TEXT NOT NULL,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    member_id TEXT,
    refund_total BIGINT NOT NULL,
    points_reversed BIGINT NOT NULL,
    PRIMARY KEY (store_id, return_id)
);
CREATE TABLE IF NOT EXISTS hq_topups (
    topup_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    member_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    method TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (store_id, topup_id)
);
CREATE TABLE IF NOT EXISTS hq_stock_movements (
    store_id TEXT NOT NULL,
    movement_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sku TEXT NOT NULL,
    kind TEXT NOT NULL,
    qty BIGINT NOT NULL,
    ref TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (store_id, movement_id)
);
CREATE TABLE IF NOT EXISTS hq_categories (
    category_id TEXT PRIMARY KEY,
    parent_id TEXT,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_items (
    sku TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    category_id TEXT NOT NULL,
    unit TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price >= 0),
    tax_rate_bp BIGINT NOT NULL,
    plu TEXT,
    brand TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    barcodes TEXT NOT NULL DEFAULT '[]',
    active BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS hq_prices (
    sku TEXT NOT NULL,
    store_id TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price >= 0),
    effective_at TEXT,
    set_at TEXT NOT NULL,
    feed_seq BIGINT NOT NULL,
    PRIMARY KEY (sku, store_id)
);
CREATE TABLE IF NOT EXISTS hq_promotions (
    rule_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    active BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_tiers (
    tier TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    discount_bp BIGINT NOT NULL,
    points_multiplier_pct BIGINT NOT NULL,
    min_points BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_members (
    member_id TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    phone TEXT,
    card_no TEXT,
    name TEXT NOT NULL DEFAULT '',
    birthday TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    home_store TEXT,
    created_at TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    points BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
    phone_hash TEXT,
    card_hash TEXT,
    phone_last4 TEXT,
    pii BLOB,
    erased_at TEXT
);
CREATE TABLE IF NOT EXISTS hq_member_aliases (
    alias TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    merged_at TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hq_member_aliases_member ON hq_member_aliases (member_id);
CREATE INDEX IF NOT EXISTS hq_members_phone ON hq_members (phone);
CREATE INDEX IF NOT EXISTS hq_members_card ON hq_members (card_no);
CREATE TABLE IF NOT EXISTS hq_pii_audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT /*PG: PRIMARY KEY (member_id, audit_id)*/,
    at TEXT NOT NULL,
    username TEXT NOT NULL,
    member_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    action TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_pii_audit_member ON hq_pii_audit (member_id, audit_id);
CREATE TABLE IF NOT EXISTS hq_member_ledger (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT /*PG: PRIMARY KEY (member_id, entry_id)*/,
    member_id TEXT NOT NULL,
    ledger TEXT NOT NULL CHECK (ledger IN ('value', 'points')),
    delta BIGINT NOT NULL,
    kind TEXT NOT NULL,
    store_id TEXT,
    ref TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_member_ledger_member ON hq_member_ledger (member_id);
CREATE TABLE IF NOT EXISTS hq_member_adjustments (
    adjustment_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    ledger TEXT NOT NULL CHECK (ledger IN ('value', 'points')),
    delta BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (member_id, adjustment_id)
);
CREATE INDEX IF NOT EXISTS hq_member_adjustments_member ON hq_member_adjustments (member_id, at);
CREATE TABLE IF NOT EXISTS hq_pii_views (
    view_id INTEGER PRIMARY KEY AUTOINCREMENT /*PG: PRIMARY KEY (member_id, view_id)*/,
    at TEXT NOT NULL,
    username TEXT NOT NULL,
    member_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_pii_views_member ON hq_pii_views (member_id, view_id);
CREATE TABLE IF NOT EXISTS hq_escrow (
    member_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ledger TEXT NOT NULL CHECK (ledger IN ('value', 'points')),
    outstanding BIGINT NOT NULL CHECK (outstanding >= 0),
    PRIMARY KEY (member_id, store_id, ledger)
);
CREATE TABLE IF NOT EXISTS hq_grants (
    grant_id TEXT NOT NULL,
    request_id TEXT,
    member_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ledger TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    at TEXT NOT NULL,
    PRIMARY KEY (member_id, grant_id),
    UNIQUE (member_id, request_id)
);
CREATE TABLE IF NOT EXISTS hq_escrow_activity (
    member_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    used_s BIGINT NOT NULL,
    PRIMARY KEY (member_id, store_id)
);
CREATE TABLE IF NOT EXISTS hq_reclaims (
    request_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ledger TEXT NOT NULL,
    amount BIGINT NOT NULL,
    at TEXT NOT NULL,
    released BIGINT,
    answered_at TEXT,
    PRIMARY KEY (member_id, request_id)
);
CREATE INDEX IF NOT EXISTS hq_reclaims_member ON hq_reclaims (member_id, store_id);
CREATE TABLE IF NOT EXISTS hq_coupons (
    code TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    member_id TEXT,
    max_uses BIGINT NOT NULL CHECK (max_uses >= 1),
    min_spend BIGINT NOT NULL DEFAULT 0,
    starts_at TEXT,
    expires_at TEXT,
    store_id TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_coupon_uses (
    code TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'redeemed', 'released')),
    reserved_ts BIGINT NOT NULL,
    reserved_head BIGINT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (code, sale_id)
);
CREATE INDEX IF NOT EXISTS hq_coupon_uses_store ON hq_coupon_uses (store_id, status);
CREATE TABLE IF NOT EXISTS hq_feed (
    seq BIGINT PRIMARY KEY,
    store_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    body BLOB NOT NULL,
    sig BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_feed_store ON hq_feed (store_id, seq);
-- PostgreSQL: feed entries appended without the feed counter's lock, waiting for their seq (service/feed.py
-- `queue_feed`: the sequencer numbers, signs and moves them into hq_feed right after their commit). Empty on SQLite.
CREATE TABLE IF NOT EXISTS hq_feed_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    xid BIGINT NOT NULL DEFAULT 0,
    store_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_transfers (
    transfer_id TEXT PRIMARY KEY,
    from_store TEXT NOT NULL,
    to_store TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('requested', 'in_transit', 'received')),
    note TEXT NOT NULL DEFAULT '',
    requested_at TEXT NOT NULL,
    shipped_at TEXT,
    received_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_transfer_lines (
    transfer_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    requested BIGINT NOT NULL,
    shipped BIGINT,
    received BIGINT,
    PRIMARY KEY (transfer_id, sku)
);
CREATE TABLE IF NOT EXISTS hq_stock_levels (
    store_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    as_of TEXT NOT NULL,
    PRIMARY KEY (store_id, sku)
);
CREATE TABLE IF NOT EXISTS hq_digest_checks (
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('match', 'mismatch')),
    detail TEXT NOT NULL DEFAULT '',
    checked_at TEXT NOT NULL,
    mismatches BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, day)
);
CREATE TABLE IF NOT EXISTS hq_regions (
    region TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_user_regions (
    username TEXT NOT NULL,
    region TEXT NOT NULL,
    PRIMARY KEY (username, region)
);
CREATE TABLE IF NOT EXISTS hq_audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX IF NOT EXISTS hq_audit_actor ON hq_audit (actor, audit_id);
CREATE INDEX IF NOT EXISTS hq_audit_action ON hq_audit (action, audit_id);
CREATE INDEX IF NOT EXISTS hq_audit_target ON hq_audit (target, audit_id);
CREATE TABLE IF NOT EXISTS hq_sales_hourly (
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    hour BIGINT NOT NULL,
    tickets BIGINT NOT NULL,
    total BIGINT NOT NULL,
    member_tickets BIGINT NOT NULL,
    PRIMARY KEY (store_id, day, hour)
);
CREATE TABLE IF NOT EXISTS hq_login_failures (
    username TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS hq_quarantine_notes (
    store_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('resolved')),
    note TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (store_id, seq)
);
CREATE TABLE IF NOT EXISTS hq_tier_rules (
    tier TEXT PRIMARY KEY,
    tier_rank BIGINT NOT NULL,
    metric TEXT NOT NULL CHECK (metric IN ('spend', 'points', 'visits')),
    threshold BIGINT NOT NULL CHECK (threshold >= 0)
);
CREATE TABLE IF NOT EXISTS hq_member_status (
    member_id TEXT PRIMARY KEY,
    tier_review_on TEXT,
    auto_tags TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS hq_referrals (
    member_id TEXT PRIMARY KEY,
    referrer_id TEXT NOT NULL,
    code TEXT NOT NULL,
    store_id TEXT,
    at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'rewarded', 'reversed', 'refused')),
    sale_id TEXT,
    decided_by TEXT,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hq_referrals_referrer ON hq_referrals (referrer_id);
CREATE TABLE IF NOT EXISTS hq_referral_rewards (
    member_id TEXT NOT NULL,
    level BIGINT NOT NULL CHECK (level >= 1),
    beneficiary_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('points', 'coupon')),
    points BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
    coupon_code TEXT,
    status TEXT NOT NULL CHECK (status IN ('granted', 'reversed')),
    taken_back BIGINT NOT NULL DEFAULT 0 CHECK (taken_back >= 0),
    shortfall BIGINT NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
    at TEXT NOT NULL,
    reversed_at TEXT,
    PRIMARY KEY (member_id, level)
);
CREATE INDEX IF NOT EXISTS hq_referral_rewards_beneficiary ON hq_referral_rewards (beneficiary_id);
CREATE INDEX IF NOT EXISTS hq_referral_rewards_sale ON hq_referral_rewards (sale_id);
CREATE TABLE IF NOT EXISTS hq_notifications (
    id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    period TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'sent', 'failed', 'not_configured')),
    sent_at TEXT,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (member_id, id),
    UNIQUE (member_id, campaign, period, channel)
);
CREATE INDEX IF NOT EXISTS hq_notifications_member ON hq_notifications (member_id, created_at);
CREATE INDEX IF NOT EXISTS hq_notifications_status ON hq_notifications (status);
CREATE TABLE IF NOT EXISTS hq_member_tier_changes (
    change_id INTEGER PRIMARY KEY AUTOINCREMENT /*PG: PRIMARY KEY (member_id, change_id)*/,
    member_id TEXT NOT NULL,
    from_tier TEXT NOT NULL,
    to_tier TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_member_tier_changes_member ON hq_member_tier_changes (member_id, change_id);
CREATE TABLE IF NOT EXISTS hq_tag_rules (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    rule TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hq_returns_member ON hq_returns (member_id, day) WHERE member_id IS NOT NULL
"""

# Columns added to tables that existing HQ databases already hold: (table, column, definition).
# create_schema adds each one that is missing, so an HQ made by an older version gains them at start.
ADDED_COLUMNS = (
    ("hq_users", "active", "BIGINT NOT NULL DEFAULT 1"),
    ("hq_users", "display_name", "TEXT NOT NULL DEFAULT ''"),
    ("hq_users", "created_at", "TEXT"),
    ("hq_users", "changed_at", "TEXT"),
    ("hq_stores", "timezone", "TEXT NOT NULL DEFAULT 'Asia/Shanghai'"),
    ("hq_stores", "address", "TEXT NOT NULL DEFAULT ''"),
    ("hq_stores", "last_contact", "TEXT"),
    ("hq_stores", "feed_cursor", "BIGINT NOT NULL DEFAULT 0"),  # the `after` of the store's last feed poll
    ("hq_members", "phone_hash", "TEXT"),  # personal data sealed (docs/privacy.md)
    ("hq_members", "card_hash", "TEXT"),
    ("hq_members", "phone_last4", "TEXT"),
    ("hq_members", "pii", "BLOB"),
    ("hq_members", "erased_at", "TEXT"),
)


def _columns(tx: Tx, table: str) -> set[str]:
    if tx.dialect == "postgresql":
        return {str(r[0]) for r in tx.all("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = current_schema() AND table_name = ?", (table,))}
    return {str(r[1]) for r in tx.all(f"PRAGMA table_info({table})")}


# The console's catalog, promotions, reports and transfers (docs/hq-console.md): price history and which
# stores have it (`hq_stores.feed_cursor`, the `after` of each store's feed poll), CSV price imports, each
# sale line's promotion amounts, the stores' Z reports, chain settings and transfer approvals; and the sales
# rollups the reports read (per store, day and hour; per store, day and sku; per promotion, store and day),
# kept by ingest in the batch's transaction and filled from the sales an older HQ already holds at its first
# start with them.
CATALOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS hq_price_changes (
    sku TEXT NOT NULL,
    feed_seq BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price >= 0),
    previous BIGINT,
    effective_at TEXT,
    set_at TEXT NOT NULL,
    set_by TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'api',
    PRIMARY KEY (sku, feed_seq, store_id)
);
CREATE TABLE IF NOT EXISTS hq_price_imports (
    import_id TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('invalid', 'ready', 'running', 'done')),
    total BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    rows_json TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS hq_sale_line_rules (
    sale_id TEXT NOT NULL,
    line_no BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (store_id, sale_id, line_no, rule_id, day)
) /*PG: PARTITION BY RANGE (day)*/;
CREATE INDEX IF NOT EXISTS hq_sale_line_rules_rule ON hq_sale_line_rules (rule_id, store_id);
CREATE TABLE IF NOT EXISTS hq_z_reports (
    store_id TEXT NOT NULL,
    z_no BIGINT NOT NULL,
    day TEXT NOT NULL,
    at TEXT NOT NULL,
    tickets BIGINT NOT NULL,
    net BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    refunded BIGINT NOT NULL,
    cash_expected BIGINT NOT NULL,
    cash_counted BIGINT NOT NULL,
    cash_variance BIGINT NOT NULL,
    anomalies BIGINT NOT NULL,
    PRIMARY KEY (store_id, z_no)
);
CREATE INDEX IF NOT EXISTS hq_z_reports_day ON hq_z_reports (store_id, day);
CREATE INDEX IF NOT EXISTS hq_returns_store_day ON hq_returns (store_id, day);
CREATE TABLE IF NOT EXISTS hq_store_hours (
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    hour TEXT NOT NULL,
    tickets BIGINT NOT NULL,
    gross BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    net BIGINT NOT NULL,
    PRIMARY KEY (store_id, day, hour)
);
CREATE TABLE IF NOT EXISTS hq_store_days (
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tickets BIGINT NOT NULL,
    gross BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    net BIGINT NOT NULL,
    PRIMARY KEY (store_id, day)
);
CREATE INDEX IF NOT EXISTS hq_store_days_day ON hq_store_days (day, store_id, tickets, gross, discount, net);
CREATE TABLE IF NOT EXISTS hq_rule_days (
    rule_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    uses BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    covered BIGINT NOT NULL,
    PRIMARY KEY (rule_id, store_id, day)
);
CREATE TABLE IF NOT EXISTS hq_sku_days (
    store_id TEXT NOT NULL,
    day TEXT NOT NULL,
    sku TEXT NOT NULL,
    lines BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    net BIGINT NOT NULL,
    PRIMARY KEY (store_id, day, sku)
);
CREATE TABLE IF NOT EXISTS hq_chain_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS hq_transfer_approvals (
    transfer_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reason TEXT NOT NULL DEFAULT '',
    held_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT
)
"""

def _fill_store_days(tx: Tx) -> None:
    """Once: the per-store-day rollup (a year's report sums 18,000 store days, not 275,000 store hours) from
    the store hours of an HQ that kept those before it (ingest keeps both from then on)."""
    if tx.one("SELECT 1 FROM hq_store_days LIMIT 1") is None and tx.one("SELECT 1 FROM hq_store_hours LIMIT 1"):
        tx.run("""INSERT INTO hq_store_days (store_id, day, tickets, gross, discount, net)
                  SELECT store_id, day, sum(tickets), sum(gross), sum(discount), sum(net) FROM hq_store_hours
                  GROUP BY store_id, day""")


def _fill_rollups(tx: Tx) -> None:
    """Once: the sales rollups of the sales HQ held before it kept them (ingest keeps them from then on)."""
    if tx.one("SELECT 1 FROM hq_meta WHERE key = 'sales_rollups'") is not None:
        return
    tx.run("""INSERT INTO hq_store_hours (store_id, day, hour, tickets, gross, discount, net)
              SELECT store_id, day, substr(at, 12, 2), count(*), sum(subtotal), sum(discount), sum(total)
              FROM hq_sales GROUP BY store_id, day, substr(at, 12, 2)""")
    tx.run("""INSERT INTO hq_sku_days (store_id, day, sku, lines, qty, discount, net)
              SELECT x.store_id, x.day, l.sku, count(*), sum(l.qty), sum(l.discount), sum(l.net)
              FROM hq_sale_lines l
              JOIN hq_sales x ON x.store_id = l.store_id AND x.sale_id = l.sale_id AND x.day = l.day
              GROUP BY x.store_id, x.day, l.sku""")
    tx.run("""INSERT INTO hq_rule_days (rule_id, store_id, day, uses, discount, lines, covered)
              SELECT u.rule_id, u.store_id, u.day, count(*), sum(u.amount), sum(u.lines), sum(x.total)
              FROM (SELECT rule_id, sale_id, store_id, day, sum(amount) AS amount, count(*) AS lines
                    FROM hq_sale_line_rules GROUP BY rule_id, sale_id, store_id, day) u
              JOIN hq_sales x ON x.store_id = u.store_id AND x.sale_id = u.sale_id AND x.day = u.day
              GROUP BY u.rule_id, u.store_id, u.day""")
    tx.run("INSERT INTO hq_meta (key, value) VALUES ('sales_rollups', '1')")
# Indexes of earlier versions that no query needs any more: each one was a write per row ingested. The
# sales by store and day are found by the primary key (store_id, sale_id, day); the member's sales by the
# partial index of member sales (most sales are anonymous); quarantined deltas by a partial index.
DROPPED_INDEXES = ("hq_sales_store_day", "hq_sales_member", "hq_deltas_quarantine")

# The rollups every batch adds to (an UPDATE of the same rows, batch after batch). PostgreSQL: pages kept
# part empty, so the new version of a row lands on its page (a heap-only tuple: no index entry to add, and
# the old version is pruned on the page) instead of a new page and an entry in every index.
ROLLUP_TABLES = ("hq_sku_days", "hq_store_days", "hq_store_hours", "hq_sales_hourly", "hq_rule_days")
ROLLUP_FILLFACTOR = 70

# Indexes on the added columns (they cannot be in SCHEMA: an older database gets the columns later).
_INDEXES = """
CREATE INDEX IF NOT EXISTS hq_members_phone_hash ON hq_members (phone_hash);
CREATE INDEX IF NOT EXISTS hq_members_card_hash ON hq_members (card_hash);
CREATE INDEX IF NOT EXISTS hq_members_phone_last4 ON hq_members (phone_last4)
"""


def _seal_plaintext(tx: Tx) -> int:
    """Data stored before personal data was sealed (once, `hq_meta` pii_sealed): seal members and empty
    their plain columns; seal feed entries and quarantined deltas that carry member profiles.
    Returns how many rows changed."""
    if tx.one("SELECT 1 FROM hq_meta WHERE key = 'pii_sealed'") is not None:
        return 0
    tx.run("INSERT INTO hq_meta (key, value) VALUES ('pii_sealed', '1')")
    keys = pii_crypto.load(tx.key_path)
    changed = 0
    for seq, kind, body in tx.all("SELECT seq, kind, body FROM hq_feed WHERE kind IN ('members')"):
        tx.run("UPDATE hq_feed SET body = ? WHERE seq = ?", (keys.seal(bytes(body), b"feed:" + kind.encode()), seq))
        changed += 1
    for store_id, seq, kind, payload in tx.all(
            "SELECT store_id, seq, kind, payload FROM hq_deltas WHERE kind IN ('member') AND payload IS NOT NULL"):
        tx.run("UPDATE hq_deltas SET payload = ? WHERE store_id = ? AND seq = ?",
               (keys.seal(bytes(payload), b"delta:" + kind.encode()), store_id, seq))
        changed += 1
    rows = tx.all("""SELECT member_id, phone, card_no, name, birthday FROM hq_members
                     WHERE phone IS NOT NULL OR card_no IS NOT NULL OR name != '' OR birthday IS NOT NULL""")
    for member_id, phone, card_no, name, birthday in rows:
        personal = pii_crypto.Personal(phone=phone, name=name or "", birthday=birthday, card_no=card_no)
        phone_hash, card_hash, tail, blob = keys.columns(member_id, personal)
        tx.run("""UPDATE hq_members SET phone = NULL, card_no = NULL, name = '', birthday = NULL, phone_hash = ?,
                  card_hash = ?, phone_last4 = ?, pii = ? WHERE member_id = ?""",
               (phone_hash, card_hash, tail, blob, member_id))
    return changed + len(rows)


# Tables whose keys changed for distribution (docs/hq-scale.md): the distribution column leads each key, and
# on PostgreSQL the big store facts are partitioned by month (so `day` joined their keys). An HQ database made
# before has them with the old keys: create_schema renames such a table aside, makes the new one, copies the
# rows (new columns from these expressions over the old row `o`, filled from the parent sale) and drops the
# old. A copy of every row: minutes for a chain's year on PostgreSQL, seconds for a small chain on SQLite.
_SALE_OF = "(SELECT s.{} FROM hq_sales s WHERE s.sale_id = o.sale_id ORDER BY s.store_id LIMIT 1)"
REKEYED: dict[str, dict[str, str]] = {
    "hq_sales": {},
    "hq_sale_lines": {"day": f"coalesce({_SALE_OF.format('day')}, '')"},
    "hq_sale_tenders": {"store_id": f"coalesce({_SALE_OF.format('store_id')}, '')",
                        "day": f"coalesce({_SALE_OF.format('day')}, '')"},
    "hq_sale_line_rules": {},
    "hq_returns": {},
    "hq_topups": {},
    "hq_member_adjustments": {},
    "hq_grants": {},
    "hq_reclaims": {},
    "hq_notifications": {},
    "hq_member_ledger": {},
    "hq_pii_audit": {},
    "hq_pii_views": {},
    "hq_member_tier_changes": {},
}
_ASIDE = "__rekey"


def _table_ddl(ddl: str, table: str) -> str:
    match = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\)", ddl, re.S)
    assert match is not None, table
    return match.group(1)


def declared_key(ddl: str, table: str) -> tuple[str, ...]:
    """The primary key a (dialect-translated) schema declares for `table`."""
    body = _table_ddl(ddl, table)
    match = re.search(r"PRIMARY KEY \(([^)]*)\)", body)
    if match:
        return tuple(c.strip() for c in match.group(1).split(","))
    column = re.search(r"^\s*(\w+) [^\n]*PRIMARY KEY", body, re.M)
    assert column is not None, table
    return (column.group(1),)


def primary_key(tx: Tx, table: str) -> tuple[str, ...]:
    """The primary key the database holds for `table` (empty if it has none or does not exist)."""
    if tx.dialect == "postgresql":
        rows = tx.all("""SELECT a.attname FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid
                         AND a.attnum = ANY(x.indkey) WHERE x.indrelid = to_regclass(?) AND x.indisprimary
                         ORDER BY array_position(x.indkey::int2[], a.attnum)""", (table,))
        return tuple(str(r[0]) for r in rows)
    info = sorted((int(r[5]), str(r[1])) for r in tx.all(f"PRAGMA table_info({table})") if int(r[5]) > 0)
    return tuple(name for _, name in info)


def _exists(tx: Tx, table: str) -> bool:
    if tx.dialect == "postgresql":
        return tx.one("SELECT to_regclass(?)", (table,)) not in (None, (None,))
    return tx.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) is not None


def _set_aside(tx: Tx, ddl: str) -> list[str]:
    """Rename the tables whose keys (or partitioning) differ from the schema's; their indexes go (the new
    tables get them under the same names). Returns the tables set aside."""
    aside: list[str] = []
    for table in REKEYED:
        if not _exists(tx, table):
            continue
        partitioned = table in distribution.partitioned() and tx.dialect == "postgresql"
        if primary_key(tx, table) == declared_key(ddl, table) and (
                not partitioned or partitions.is_partitioned(tx, table)):
            continue
        old = table + _ASIDE
        if tx.dialect == "postgresql":
            for (name,) in tx.all("""SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                                     WHERE x.indrelid = to_regclass(?) AND NOT EXISTS
                                     (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)""", (table,)):
                tx.run(f"DROP INDEX {name}")
            for (name,) in tx.all("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(?) AND contype "
                                  "IN ('p', 'u')", (table,)):
                tx.run(f"ALTER TABLE {table} RENAME CONSTRAINT {name} TO {name}{_ASIDE}")
        else:
            for (name,) in tx.all("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                  "AND sql IS NOT NULL", (table,)):
                tx.run(f"DROP INDEX {name}")
        tx.run(f"ALTER TABLE {table} RENAME TO {old}")
        aside.append(table)
    return aside


def _copy_back(tx: Tx, table: str) -> None:
    old = table + _ASIDE
    new_columns = _ordered_columns(tx, table)
    have = _columns(tx, old)
    fills = REKEYED[table]
    picked = [c for c in new_columns if c in have or c in fills]
    values = ", ".join(f"o.{c}" if c in have else fills[c] for c in picked)
    tx.run(f"INSERT INTO {table} ({', '.join(picked)}) SELECT {values} FROM {old} o")
    tx.run(f"DROP TABLE {old}")
    if tx.dialect == "postgresql":  # an identity column carries on after the highest id copied
        for (column,) in tx.all("""SELECT column_name FROM information_schema.columns WHERE table_schema =
                                   current_schema() AND table_name = ? AND is_identity = 'YES'""", (table,)):
            tx.one(f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce((SELECT max({column}) FROM {table}), 0) "
                   "+ 1, false)", (table, column))


def _ordered_columns(tx: Tx, table: str) -> list[str]:
    if tx.dialect == "postgresql":
        return [str(r[0]) for r in tx.all("""SELECT column_name FROM information_schema.columns WHERE table_schema =
                                             current_schema() AND table_name = ? ORDER BY ordinal_position""",
                                          (table,))]
    return [str(r[1]) for r in tx.all(f"PRAGMA table_info({table})")]


def create_schema(db: HqDb) -> None:
    ddl = db.type_words(SCHEMA + ";" + CATALOG_SCHEMA)
    with db.write() as tx:
        if tx.dialect == "postgresql":  # workers starting together make the schema one after another
            tx.one("SELECT pg_advisory_xact_lock(?)", (partitions.SCHEMA_LOCK,))
        aside = _set_aside(tx, ddl)
        for statement in ddl.split(";"):
            if statement.strip():
                tx.run(statement)
        today = datetime.datetime.now(datetime.UTC).date()
        partitions.ensure_partitions(tx, today)  # the default partition first: copied rows of any day land
        for table in aside:
            _copy_back(tx, table)
        if aside:
            partitions.ensure_partitions(tx, today)  # ... and move into their months
        for table, column, definition in ADDED_COLUMNS:
            if column not in _columns(tx, table):
                tx.run(db.type_words(f"ALTER TABLE {table} ADD COLUMN {column} {definition}"))
        tx.run("""INSERT INTO hq_regions (region, created_at) SELECT DISTINCT region, '' FROM hq_stores
                  WHERE region <> '' ON CONFLICT (region) DO NOTHING""")
        if tx.one("SELECT 1 FROM hq_sales_hourly LIMIT 1") is None and tx.one("SELECT 1 FROM hq_sales LIMIT 1"):
            # an HQ from before the rollup: build it once from the sales it holds (ingest keeps it from now on)
            tx.run("""INSERT INTO hq_sales_hourly (store_id, day, hour, tickets, total, member_tickets)
                      SELECT store_id, day, CAST(substr(at, 12, 2) AS BIGINT), count(*), sum(total),
                             sum(CASE WHEN member_id IS NULL THEN 0 ELSE 1 END)
                      FROM hq_sales GROUP BY store_id, day, CAST(substr(at, 12, 2) AS BIGINT)""")
        _fill_rollups(tx)
        _fill_store_days(tx)
        create_statement_tables(tx, db.type_words(STATEMENTS_SCHEMA))
        for statement in _INDEXES.split(";"):
            if statement.strip():
                tx.run(statement)
        for name in DROPPED_INDEXES:
            tx.run(f"DROP INDEX IF EXISTS {name}")
        if tx.dialect == "postgresql":  # room in each page for the rollups' updates to stay on it (HOT)
            for table in ROLLUP_TABLES:
                tx.run(f"ALTER TABLE {table} SET (fillfactor = {ROLLUP_FILLFACTOR})")
        sealed = _seal_plaintext(tx)
        tx.run("INSERT INTO hq_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING",
               (str(VERSION),))
    if sealed:  # the plaintext may linger in freed pages and the WAL
        db.compact(["hq_members", "hq_feed", "hq_feed_pending", "hq_deltas"])
