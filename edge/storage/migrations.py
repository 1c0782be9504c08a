"""Schema of the hub database, as sqlite-utils migrations applied at start-up.

Never edit a migration that has shipped: add a new one. Ledgers (stock, points, stored value,
journal, outbox) are append-only; the `*_balance` tables are caches written in the same
transaction as the ledger entry they summarise.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.members import pii

if TYPE_CHECKING:
    import sqlite_utils


class LazyMigrations:
    """sqlite-utils' `Migrations` (same decorator, same `_sqlite_migrations` records), with sqlite-utils
    itself imported only when a migration is pending: it brings some 130 modules and 13 MB of
    resident memory (dateutil, click, pluggy...) that a hub whose schema is current never needs
    (docs/performance.md, footprint)."""

    table = "_sqlite_migrations"

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: list[tuple[str, Callable[..., Any], bool]] = []

    def __call__(self, *, name: str | None = None,
                 transactional: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def inner(fn: Callable[..., Any]) -> Callable[..., Any]:
            step = name or fn.__name__
            if any(s[0] == step for s in self._steps):
                raise ValueError(f"Migration '{step}' is already registered in set '{self.name}'")
            self._steps.append((step, fn, transactional))
            return fn
        return inner

    def pending_names(self, conn: sqlite3.Connection) -> list[str]:
        """What `apply` would run, read with plain sqlite3."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)).fetchone():
            done = {r[0] for r in conn.execute(f"SELECT name FROM {self.table} WHERE migration_set = ?",
                                                (self.name,))}
        else:
            done = set()
        return [s[0] for s in self._steps if s[0] not in done]

    def real(self) -> Any:
        from sqlite_utils import Migrations

        real = Migrations(self.name)
        for step, fn, transactional in self._steps:
            real(name=step, transactional=transactional)(fn)
        return real

    def apply(self, db: sqlite_utils.Database, **kwargs: Any) -> None:
        self.real().apply(db, **kwargs)


migrations = LazyMigrations("backroom.hub")


def _run(db: sqlite_utils.Database, script: str) -> None:
    # executescript() would commit the migration's transaction; run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m001_foundation(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL,
            password_hash TEXT,
            pin_hash TEXT,
            active INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        );

        CREATE TABLE categories (
            category_id TEXT PRIMARY KEY,
            parent_id TEXT REFERENCES categories(category_id),
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL
        );

        CREATE TABLE items (
            sku TEXT PRIMARY KEY,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            category_id TEXT NOT NULL REFERENCES categories(category_id),
            unit TEXT NOT NULL CHECK (unit IN ('each', 'kg')),
            price INTEGER NOT NULL CHECK (price >= 0),
            tax_rate_bp INTEGER NOT NULL CHECK (tax_rate_bp >= 0),
            plu TEXT UNIQUE,
            brand TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            low_threshold INTEGER,
            high_threshold INTEGER,
            active INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX items_category ON items(category_id);

        CREATE TABLE barcodes (
            code TEXT PRIMARY KEY,
            sku TEXT NOT NULL REFERENCES items(sku),
            symbology TEXT NOT NULL
        );
        CREATE INDEX barcodes_sku ON barcodes(sku);

        CREATE TABLE tiers (
            tier TEXT PRIMARY KEY,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            discount_bp INTEGER NOT NULL DEFAULT 0,
            points_multiplier_pct INTEGER NOT NULL DEFAULT 100,
            min_points INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE batches (
            batch_id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL REFERENCES items(sku),
            lot TEXT NOT NULL,
            expiry TEXT,
            received_at TEXT NOT NULL,
            UNIQUE (sku, lot)
        );

        CREATE TABLE stock_movements (
            movement_id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL REFERENCES items(sku),
            batch_id INTEGER REFERENCES batches(batch_id),
            kind TEXT NOT NULL CHECK (kind IN
                ('receive', 'sale', 'return', 'adjustment', 'transfer_out', 'transfer_in', 'count')),
            qty INTEGER NOT NULL,
            ref TEXT,
            reason TEXT NOT NULL DEFAULT '',
            user_id TEXT,
            till_id TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX stock_movements_sku ON stock_movements(sku, movement_id);

        CREATE TABLE stock_balance (
            sku TEXT NOT NULL REFERENCES items(sku),
            batch_id INTEGER NOT NULL DEFAULT 0,
            on_hand INTEGER NOT NULL,
            PRIMARY KEY (sku, batch_id)
        );

        CREATE TABLE stock_alerts (
            alert_id INTEGER PRIMARY KEY,
            sku TEXT NOT NULL REFERENCES items(sku),
            kind TEXT NOT NULL CHECK (kind IN ('low', 'high')),
            on_hand INTEGER NOT NULL,
            threshold INTEGER NOT NULL,
            raised_at TEXT NOT NULL,
            cleared_at TEXT
        );
        CREATE INDEX stock_alerts_open ON stock_alerts(sku, kind, cleared_at);

        CREATE TABLE members (
            member_id TEXT PRIMARY KEY,
            phone TEXT UNIQUE,
            card_no TEXT UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            birthday TEXT,
            tier TEXT NOT NULL REFERENCES tiers(tier),
            tags TEXT NOT NULL DEFAULT '[]',
            home_store TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE points_ledger (
            entry_id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES members(member_id),
            delta INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT,
            user_id TEXT,
            till_id TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX points_ledger_member ON points_ledger(member_id);

        CREATE TABLE value_ledger (
            entry_id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES members(member_id),
            delta INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT,
            user_id TEXT,
            till_id TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX value_ledger_member ON value_ledger(member_id);

        CREATE TABLE member_balance (
            member_id TEXT PRIMARY KEY REFERENCES members(member_id),
            points INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),
            balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0)
        );

        CREATE TABLE sales (
            sale_id TEXT PRIMARY KEY,
            receipt_no TEXT NOT NULL UNIQUE,
            till_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            member_id TEXT REFERENCES members(member_id),
            subtotal INTEGER NOT NULL,
            discount INTEGER NOT NULL,
            total INTEGER NOT NULL,
            tax INTEGER NOT NULL,
            tendered INTEGER NOT NULL,
            change INTEGER NOT NULL,
            points_earned INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            journal_seq INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX sales_created ON sales(created_at);

        CREATE TABLE sale_lines (
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            line_no INTEGER NOT NULL,
            sku TEXT NOT NULL REFERENCES items(sku),
            barcode TEXT,
            qty INTEGER NOT NULL,
            weight_g INTEGER,
            unit_price INTEGER NOT NULL,
            gross INTEGER NOT NULL,
            discount INTEGER NOT NULL,
            net INTEGER NOT NULL,
            tax INTEGER NOT NULL,
            tax_rate_bp INTEGER NOT NULL,
            applied TEXT NOT NULL,
            batches TEXT NOT NULL,
            PRIMARY KEY (sale_id, line_no)
        );
        CREATE INDEX sale_lines_sku ON sale_lines(sku);

        CREATE TABLE sale_tenders (
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            tender_no INTEGER NOT NULL,
            method TEXT NOT NULL,
            amount INTEGER NOT NULL,
            reference TEXT,
            PRIMARY KEY (sale_id, tender_no)
        );

        CREATE TABLE returns (
            return_id TEXT PRIMARY KEY,
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            till_id TEXT,
            user_id TEXT NOT NULL,
            refund_total INTEGER NOT NULL,
            points_reversed INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            journal_seq INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX returns_sale ON returns(sale_id);

        CREATE TABLE return_lines (
            return_id TEXT NOT NULL REFERENCES returns(return_id),
            line_no INTEGER NOT NULL,
            qty INTEGER NOT NULL,
            weight_g INTEGER,
            refund INTEGER NOT NULL,
            PRIMARY KEY (return_id, line_no)
        );

        CREATE TABLE return_refunds (
            return_id TEXT NOT NULL REFERENCES returns(return_id),
            refund_no INTEGER NOT NULL,
            method TEXT NOT NULL,
            amount INTEGER NOT NULL,
            PRIMARY KEY (return_id, refund_no)
        );

        CREATE TABLE topups (
            topup_id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES members(member_id),
            amount INTEGER NOT NULL,
            method TEXT NOT NULL,
            till_id TEXT,
            user_id TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );

        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            body BLOB NOT NULL,
            hash TEXT NOT NULL
        );

        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE audit (
            audit_id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user_id TEXT,
            till_id TEXT,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )
        """,
    )


@migrations()
def m002_client_requests(db: sqlite_utils.Database) -> None:
    """Idempotency records for client-id'd requests that have no table of their own."""
    _run(
        db,
        """
        CREATE TABLE client_requests (
            request_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
    )


@migrations()
def m020_promotions(db: sqlite_utils.Database) -> None:
    """Price lists, promotions, coupons and their use (edge/promotions, docs/promotions.md).

    Times in price_lists and coupons are UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ', so SQL compares them
    as text. A coupon's uses are numbered: (code, use_no) is the primary key, so the same use of a
    coupon can never be recorded twice, whichever sale or store tries.
    """
    _run(
        db,
        """
        CREATE TABLE price_lists (
            list_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            store_id TEXT,
            tier TEXT,
            effective_from TEXT NOT NULL,
            effective_until TEXT,
            local_edit INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL DEFAULT 'hq',
            created_at TEXT NOT NULL
        );

        CREATE TABLE price_list_items (
            list_id TEXT NOT NULL REFERENCES price_lists(list_id),
            sku TEXT NOT NULL REFERENCES items(sku),
            price INTEGER NOT NULL CHECK (price >= 0),
            PRIMARY KEY (list_id, sku)
        );
        CREATE INDEX price_list_items_sku ON price_list_items(sku);

        CREATE TABLE promotions (
            rule_id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT 'local',
            created_by TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE coupons (
            code TEXT PRIMARY KEY,
            rule_id TEXT NOT NULL REFERENCES promotions(rule_id),
            member_id TEXT REFERENCES members(member_id),
            max_uses INTEGER NOT NULL DEFAULT 1 CHECK (max_uses >= 1),
            min_spend INTEGER NOT NULL DEFAULT 0 CHECK (min_spend >= 0),
            starts_at TEXT,
            expires_at TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE coupon_redemptions (
            code TEXT NOT NULL REFERENCES coupons(code),
            use_no INTEGER NOT NULL CHECK (use_no >= 1),
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            store_id TEXT NOT NULL,
            member_id TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (code, use_no),
            UNIQUE (code, sale_id)
        );

        CREATE TABLE promotion_usage (
            rule_id TEXT NOT NULL,
            member_id TEXT NOT NULL REFERENCES members(member_id),
            period TEXT NOT NULL,
            uses INTEGER NOT NULL,
            amount INTEGER NOT NULL,
            PRIMARY KEY (member_id, rule_id, period)
        );

        CREATE TABLE promotion_totals (
            rule_id TEXT PRIMARY KEY,
            uses INTEGER NOT NULL,
            amount INTEGER NOT NULL
        );

        CREATE TABLE sale_promotions (
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            rule_id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            times INTEGER NOT NULL,
            coupon_code TEXT,
            rule TEXT NOT NULL,
            bases TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (sale_id, rule_id)
        );

        CREATE TABLE return_clawbacks (
            return_id TEXT PRIMARY KEY REFERENCES returns(return_id),
            sale_id TEXT NOT NULL REFERENCES sales(sale_id),
            amount INTEGER NOT NULL
        );
        CREATE INDEX return_clawbacks_sale ON return_clawbacks(sale_id);

        INSERT OR IGNORE INTO settings (key, value) VALUES ('promotions_version', '0')
        """,
    )


def apply_migrations(conn: sqlite3.Connection) -> None:
    if not migrations.pending_names(conn):
        return  # the usual start: no sqlite-utils import at all
    import sqlite_utils

    migrations.apply(sqlite_utils.Database(conn))


@migrations()
def m040_sync(db: sqlite_utils.Database) -> None:
    """HQ sync (hq_sync/, docs/sync.md): pairing and keys, the acked outbox sequence, the feed cursor,
    escrow grants and releases applied (idempotency by HQ's id), future-dated prices, sync alerts."""
    _run(
        db,
        """
        CREATE TABLE sync_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            store_id TEXT NOT NULL,
            hq_url TEXT NOT NULL,
            private_key BLOB NOT NULL,
            public_key BLOB NOT NULL,
            hq_public_key BLOB NOT NULL,
            base_seq INTEGER NOT NULL,
            acked_seq INTEGER NOT NULL DEFAULT 0,
            feed_cursor INTEGER NOT NULL DEFAULT 0,
            feed_head INTEGER NOT NULL DEFAULT 0,
            paired_at TEXT NOT NULL,
            last_push_at TEXT,
            last_pull_at TEXT,
            last_digest_at TEXT
        );

        CREATE TABLE sync_escrow (
            ref TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('grant', 'release', 'pairing')),
            member_id TEXT NOT NULL,
            ledger TEXT NOT NULL CHECK (ledger IN ('value', 'points')),
            amount INTEGER NOT NULL CHECK (amount >= 0),
            at TEXT NOT NULL
        );
        CREATE INDEX sync_escrow_member ON sync_escrow(member_id);

        CREATE TABLE sync_pending_prices (
            sku TEXT NOT NULL,
            effective_at TEXT NOT NULL,
            price INTEGER NOT NULL CHECK (price >= 0),
            feed_seq INTEGER NOT NULL,
            PRIMARY KEY (sku, effective_at)
        );
        CREATE INDEX sync_pending_prices_due ON sync_pending_prices(effective_at);

        CREATE TABLE sync_alerts (
            alert_id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            cleared_at TEXT,
            UNIQUE (kind, ref)
        )
        """,
    )


@migrations()
def m060_transfers(db: sqlite_utils.Database) -> None:
    """Transfers between stores (调拨, hq_sync/transfers.py): requested here or routed here by HQ,
    shipped by the sender, received by the requester; per sku the requested, shipped and received
    quantities (shipped − received is the discrepancy)."""
    _run(
        db,
        """
        CREATE TABLE transfers (
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
        CREATE INDEX transfers_state ON transfers(state);

        CREATE TABLE transfer_lines (
            transfer_id TEXT NOT NULL REFERENCES transfers(transfer_id),
            sku TEXT NOT NULL,
            requested INTEGER NOT NULL CHECK (requested >= 0),
            shipped INTEGER CHECK (shipped >= 0),
            received INTEGER CHECK (received >= 0),
            PRIMARY KEY (transfer_id, sku)
        )
        """,
    )


@migrations()
def m070_points_batches(db: sqlite_utils.Database) -> None:
    """Points by batch (edge/members/points.py): each positive points entry is a batch with an expiry
    date (NULL: never), spent first-expiring-first; `remaining` is a cache written in the same
    transaction as the ledger entry, so a member's points = Σ remaining. Existing balances become one
    batch each, dated by the member's last positive entry (24 months, the default validity).
    Points rewards (积分兑换): item `sku` for `points` points; `sale_rewards` records each reward line sold."""
    _run(
        db,
        """
        CREATE TABLE points_batches (
            entry_id INTEGER PRIMARY KEY REFERENCES points_ledger(entry_id),
            member_id TEXT NOT NULL REFERENCES members(member_id),
            earned INTEGER NOT NULL CHECK (earned > 0),
            expires_on TEXT,
            remaining INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= earned)
        );
        CREATE INDEX points_batches_open ON points_batches(member_id, remaining);
        CREATE INDEX points_batches_expiry ON points_batches(expires_on) WHERE remaining > 0;

        INSERT INTO points_batches (entry_id, member_id, earned, expires_on, remaining)
        SELECT (SELECT max(l.entry_id) FROM points_ledger l WHERE l.member_id = b.member_id AND l.delta > 0),
               b.member_id, b.points,
               date((SELECT substr(l.at, 1, 10) FROM points_ledger l WHERE l.member_id = b.member_id AND l.delta > 0
                     ORDER BY l.entry_id DESC LIMIT 1), 'start of month', '+25 months', '-1 day'),
               b.points
        FROM member_balance b WHERE b.points > 0;

        CREATE TABLE points_rewards (
            reward_id TEXT PRIMARY KEY,
            sku TEXT NOT NULL UNIQUE,
            points INTEGER NOT NULL CHECK (points > 0),
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1
        );

        CREATE TABLE sale_rewards (
            sale_id TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            reward_id TEXT NOT NULL,
            points INTEGER NOT NULL CHECK (points > 0),
            PRIMARY KEY (sale_id, line_no)
        )
        """,
    )


@migrations()
def m080_chain_coupons(db: sqlite_utils.Database) -> None:
    """Chain coupons (hq_sync/coupons.py): coupons HQ issued, fed down as `coupon` entries. HQ counts
    their uses across stores; `allocated` is the uses HQ set aside for this store (redeemable offline).
    A coupon without a row here is the store's own and is checked locally only."""
    _run(
        db,
        """
        CREATE TABLE chain_coupons (
            code TEXT PRIMARY KEY REFERENCES coupons(code),
            allocated INTEGER NOT NULL DEFAULT 0 CHECK (allocated >= 0),
            feed_seq INTEGER NOT NULL
        )
        """,
    )


@migrations()
def m090_report_rollups(db: sqlite_utils.Database) -> None:
    """Reporting rollups (edge/reports/): sales per store day and sku, tickets and totals per store day
    and hour, promotion uses per day. Kept by triggers in the transaction of every sale, return and
    exchange (whatever path writes them), backfilled from the rows already there. Days and hours are
    the store's own: `created_at` carries the store's offset. Returns count on the day of the return;
    `refunded` is per line before any 满减 clawback, `sales_hourly.refunds` the returns' refund totals."""
    _run(
        db,
        """
        CREATE TABLE sales_daily_sku (
            day TEXT NOT NULL,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL DEFAULT 0,
            weight_g INTEGER NOT NULL DEFAULT 0,
            net INTEGER NOT NULL DEFAULT 0,
            lines INTEGER NOT NULL DEFAULT 0,
            returned_qty INTEGER NOT NULL DEFAULT 0,
            returned_weight_g INTEGER NOT NULL DEFAULT 0,
            refunded INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, sku)
        ) WITHOUT ROWID;
        CREATE INDEX sales_daily_sku_sku ON sales_daily_sku(sku, day);

        CREATE TABLE sales_hourly (
            day TEXT NOT NULL,
            hour INTEGER NOT NULL,
            tickets INTEGER NOT NULL DEFAULT 0,
            member_tickets INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            refunds INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, hour)
        ) WITHOUT ROWID;

        CREATE TABLE promotion_daily (
            day TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            uses INTEGER NOT NULL DEFAULT 0,
            amount INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, rule_id)
        ) WITHOUT ROWID;

        INSERT INTO sales_hourly (day, hour, tickets, member_tickets, total, refunds)
        SELECT substr(created_at, 1, 10), CAST(substr(created_at, 12, 2) AS INTEGER), count(*),
               sum(member_id IS NOT NULL), sum(total), 0
        FROM sales GROUP BY 1, 2;

        INSERT INTO sales_hourly (day, hour, refunds)
        SELECT substr(created_at, 1, 10), CAST(substr(created_at, 12, 2) AS INTEGER), sum(refund_total)
        FROM returns WHERE true GROUP BY 1, 2
        ON CONFLICT (day, hour) DO UPDATE SET refunds = refunds + excluded.refunds;

        INSERT INTO sales_daily_sku (day, sku, qty, weight_g, net, lines)
        SELECT substr(s.created_at, 1, 10), l.sku, sum(l.qty), sum(coalesce(l.weight_g, 0)), sum(l.net), count(*)
        FROM sale_lines l JOIN sales s ON s.sale_id = l.sale_id GROUP BY 1, 2;

        INSERT INTO sales_daily_sku (day, sku, returned_qty, returned_weight_g, refunded)
        SELECT substr(r.created_at, 1, 10), l.sku, sum(rl.qty), sum(coalesce(rl.weight_g, 0)), sum(rl.refund)
        FROM return_lines rl JOIN returns r ON r.return_id = rl.return_id
        JOIN sale_lines l ON l.sale_id = r.sale_id AND l.line_no = rl.line_no
        WHERE true GROUP BY 1, 2
        ON CONFLICT (day, sku) DO UPDATE SET returned_qty = returned_qty + excluded.returned_qty,
            returned_weight_g = returned_weight_g + excluded.returned_weight_g,
            refunded = refunded + excluded.refunded;

        INSERT INTO promotion_daily (day, rule_id, uses, amount)
        SELECT substr(s.created_at, 1, 10), p.rule_id, count(*), sum(p.amount)
        FROM sale_promotions p JOIN sales s ON s.sale_id = p.sale_id GROUP BY 1, 2
        """,
    )
    # Trigger bodies hold semicolons, so each is one statement of its own (not through _run).
    # The rows they read (the sale of a line, the return and the sold line of a returned line) are
    # written before the rows that fire them: edge/sales/checkout.py and returns.py insert the
    # sales/returns row first.
    for trigger in (
        """CREATE TRIGGER sales_rollup AFTER INSERT ON sales BEGIN
            INSERT INTO sales_hourly (day, hour, tickets, member_tickets, total)
            VALUES (substr(NEW.created_at, 1, 10), CAST(substr(NEW.created_at, 12, 2) AS INTEGER), 1,
                    NEW.member_id IS NOT NULL, NEW.total)
            ON CONFLICT (day, hour) DO UPDATE SET tickets = tickets + 1,
                member_tickets = member_tickets + excluded.member_tickets, total = total + excluded.total;
        END""",
        """CREATE TRIGGER sale_lines_rollup AFTER INSERT ON sale_lines BEGIN
            INSERT INTO sales_daily_sku (day, sku, qty, weight_g, net, lines)
            SELECT substr(s.created_at, 1, 10), NEW.sku, NEW.qty, coalesce(NEW.weight_g, 0), NEW.net, 1
            FROM sales s WHERE s.sale_id = NEW.sale_id
            ON CONFLICT (day, sku) DO UPDATE SET qty = qty + excluded.qty, weight_g = weight_g + excluded.weight_g,
                net = net + excluded.net, lines = lines + 1;
        END""",
        """CREATE TRIGGER returns_rollup AFTER INSERT ON returns BEGIN
            INSERT INTO sales_hourly (day, hour, refunds)
            VALUES (substr(NEW.created_at, 1, 10), CAST(substr(NEW.created_at, 12, 2) AS INTEGER), NEW.refund_total)
            ON CONFLICT (day, hour) DO UPDATE SET refunds = refunds + excluded.refunds;
        END""",
        """CREATE TRIGGER return_lines_rollup AFTER INSERT ON return_lines BEGIN
            INSERT INTO sales_daily_sku (day, sku, returned_qty, returned_weight_g, refunded)
            SELECT substr(r.created_at, 1, 10), l.sku, NEW.qty, coalesce(NEW.weight_g, 0), NEW.refund
            FROM returns r JOIN sale_lines l ON l.sale_id = r.sale_id AND l.line_no = NEW.line_no
            WHERE r.return_id = NEW.return_id
            ON CONFLICT (day, sku) DO UPDATE SET returned_qty = returned_qty + excluded.returned_qty,
                returned_weight_g = returned_weight_g + excluded.returned_weight_g,
                refunded = refunded + excluded.refunded;
        END""",
        """CREATE TRIGGER sale_promotions_rollup AFTER INSERT ON sale_promotions BEGIN
            INSERT INTO promotion_daily (day, rule_id, uses, amount)
            SELECT substr(s.created_at, 1, 10), NEW.rule_id, 1, NEW.amount
            FROM sales s WHERE s.sale_id = NEW.sale_id
            ON CONFLICT (day, rule_id) DO UPDATE SET uses = uses + 1, amount = amount + excluded.amount;
        END""",
    ):
        db.execute(trigger)


@migrations()
def m091_stocktakes(db: sqlite_utils.Database) -> None:
    """Stock-takes (盘点, edge/stock/stocktake.py): a count of every item or of one category tree.
    On open, each sku in scope gets a line with its on-hand `snapshot` and the stock-take keeps
    `snapshot_mark`, the last movement id the snapshot includes; a count keeps `count_mark`, the last
    movement id when it was entered, so movements in between (sales during the count) are expected,
    not variances. `expected`/`posted` are written once, at approval."""
    _run(
        db,
        """
        CREATE TABLE stocktakes (
            stocktake_id TEXT PRIMARY KEY,
            category_id TEXT,
            state TEXT NOT NULL CHECK (state IN ('open', 'submitted', 'approved', 'cancelled')),
            note TEXT NOT NULL DEFAULT '',
            snapshot_mark INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            opened_by TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            submitted_by TEXT,
            submitted_at TEXT,
            closed_by TEXT,
            closed_at TEXT,
            zero_uncounted INTEGER,
            result BLOB
        );
        CREATE INDEX stocktakes_state ON stocktakes(state, opened_at);

        CREATE TABLE stocktake_lines (
            stocktake_id TEXT NOT NULL REFERENCES stocktakes(stocktake_id),
            sku TEXT NOT NULL REFERENCES items(sku),
            snapshot INTEGER NOT NULL,
            counted INTEGER CHECK (counted >= 0),
            count_mark INTEGER,
            counted_by TEXT,
            counted_at TEXT,
            expected INTEGER,
            posted INTEGER,
            PRIMARY KEY (stocktake_id, sku)
        );
        CREATE INDEX stocktake_lines_sku ON stocktake_lines(sku)
        """,
    )


@migrations()
def m092_end_of_day(db: sqlite_utils.Database) -> None:
    """End of day (edge/eod): opening floats per till and day, cash counts (latest per till counts; each
    keeps the expected cash and variance at the moment it was made), and Z reports, one per business
    day, numbered in sequence, frozen as JSON. Indexes keep a day's reports on index ranges: returns
    and top-ups by time, tender references for the duplicate-reference check."""
    _run(
        db,
        """
        CREATE TABLE till_floats (
            day TEXT NOT NULL,
            till_id TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount >= 0),
            user_id TEXT NOT NULL,
            set_at TEXT NOT NULL,
            PRIMARY KEY (day, till_id)
        );

        CREATE TABLE cash_counts (
            seq INTEGER PRIMARY KEY,
            count_id TEXT NOT NULL UNIQUE,
            day TEXT NOT NULL,
            till_id TEXT NOT NULL,
            counted INTEGER NOT NULL CHECK (counted >= 0),
            expected INTEGER NOT NULL,
            variance INTEGER NOT NULL,
            denominations TEXT,
            user_id TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX cash_counts_day ON cash_counts(day, till_id, seq);

        CREATE TABLE z_reports (
            z_no INTEGER PRIMARY KEY,
            day TEXT NOT NULL UNIQUE,
            closed_at TEXT NOT NULL,
            user_id TEXT NOT NULL,
            tickets INTEGER NOT NULL,
            net INTEGER NOT NULL,
            refunded INTEGER NOT NULL,
            cash_expected INTEGER NOT NULL,
            cash_counted INTEGER NOT NULL,
            cash_variance INTEGER NOT NULL,
            anomalies INTEGER NOT NULL,
            report BLOB NOT NULL,
            journal_seq INTEGER NOT NULL
        );

        CREATE INDEX IF NOT EXISTS returns_created ON returns(created_at);
        CREATE INDEX IF NOT EXISTS topups_created ON topups(created_at);
        CREATE INDEX IF NOT EXISTS sale_tenders_reference ON sale_tenders(reference) WHERE reference IS NOT NULL
        """,
    )


@migrations()
def m095_member_sales_index(db: sqlite_utils.Database) -> None:
    """A member's recent sales on the tablet's member page (edge/members/directory.py): an index range,
    not a walk back through every sale of the store."""
    _run(db, "CREATE INDEX IF NOT EXISTS sales_member ON sales(member_id, created_at) WHERE member_id IS NOT NULL")


@migrations()
def m093_user_tokens(db: sqlite_utils.Database) -> None:
    """Token revocation (edge/auth/users.py, edge/hub.py): a login token of a user issued before
    `tokens_after` (unix seconds) is refused; set when the user is deactivated, changes role or has his
    secret reset. NULL: every unexpired token of the user holds."""
    _run(db, "ALTER TABLE users ADD COLUMN tokens_after INTEGER")


@migrations()
def m096_drop_unused_rollup_index(db: sqlite_utils.Database) -> None:
    """Every rollup read selects days (the primary key's first column); the (sku, day) index m090 made
    was never read, yet every sale line paid to keep it."""
    _run(db, "DROP INDEX IF EXISTS sales_daily_sku_sku")


@migrations()
def m100_chain_members(db: sqlite_utils.Database) -> None:
    """Members across the chain (hq_sync/directory.py, edge/members/chainwide.py): ids HQ merged into another
    member (`member_aliases`: every lookup, sale and feed entry naming the old id resolves to the member),
    each member's chain-wide balance and points as last known from HQ (`member_chain`: a snapshot
    `as_of`, holding this store's own deltas through outbox seq `upto_seq`), and what each outbox row
    did to a member's money (`member_effects`, written with the row), so a lookup adds this store's
    deltas HQ's snapshot does not hold yet with one index range."""
    _run(
        db,
        """
        CREATE TABLE member_aliases (
            alias TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            merged_at TEXT NOT NULL
        );
        CREATE INDEX member_aliases_member ON member_aliases(member_id);

        CREATE TABLE member_chain (
            member_id TEXT PRIMARY KEY,
            balance INTEGER NOT NULL CHECK (balance >= 0),
            points INTEGER NOT NULL CHECK (points >= 0),
            as_of TEXT NOT NULL,
            upto_seq INTEGER NOT NULL
        );

        CREATE TABLE member_effects (
            seq INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL,
            value INTEGER NOT NULL,
            points INTEGER NOT NULL
        );
        CREATE INDEX member_effects_member ON member_effects(member_id, seq)
        """,
    )


@migrations()
def m130_member_rules(db: sqlite_utils.Database) -> None:
    """Tiers as rules and automatic tags (edge/members/tiering.py, tagging.py, docs/members.md).
    A tier's rule: `threshold` of `metric` (spend in fen, points earned, visits) over the rolling
    window, `tier_rank` orders tiers (higher is better); existing tiers become points rules at their
    `min_points`, ranked by it. A member's `tier_review_on` is the day a downgrade may happen;
    `auto_tags` (JSON list) are the tags the daily pass computes, kept apart from the manual `tags`.
    `member_tier_changes` records every tier change (from, to, when, why); `tag_rules` holds the
    automatic tag definitions (none stored: the defaults of tagging.DEFAULT_RULES apply)."""
    _run(
        db,
        """
        ALTER TABLE tiers ADD COLUMN tier_rank INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE tiers ADD COLUMN metric TEXT NOT NULL DEFAULT 'points';
        ALTER TABLE tiers ADD COLUMN threshold INTEGER NOT NULL DEFAULT 0;
        UPDATE tiers SET threshold = min_points,
            tier_rank = (SELECT count(*) FROM tiers t WHERE t.min_points < tiers.min_points
                         OR (t.min_points = tiers.min_points AND t.tier < tiers.tier));

        ALTER TABLE members ADD COLUMN auto_tags TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE members ADD COLUMN tier_review_on TEXT;

        CREATE TABLE member_tier_changes (
            change_id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL,
            from_tier TEXT NOT NULL,
            to_tier TEXT NOT NULL,
            at TEXT NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE INDEX member_tier_changes_member ON member_tier_changes(member_id, change_id);

        CREATE TABLE tag_rules (
            name TEXT PRIMARY KEY,
            position INTEGER NOT NULL,
            rule TEXT NOT NULL
        )
        """,
    )


@migrations()
def m140_engage(db: sqlite_utils.Database) -> None:
    """Referrals and campaigns (edge/engage/, docs/members.md). `referral_codes`: each member's code
    (derived from the member id; a variant where taken). `referrals`: B → A once per member, with its
    state; `referral_rewards`: what B's first purchase gave each level, once per (member, level), and
    what a return took back. `notifications`: the campaign outbox, one row per (member, campaign,
    period, channel). `member_inbox`: inbox messages a paired hub fetched from HQ (a cache)."""
    _run(
        db,
        """
        CREATE TABLE referral_codes (
            code TEXT PRIMARY KEY,
            member_id TEXT NOT NULL UNIQUE
        );

        CREATE TABLE referrals (
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
        CREATE INDEX referrals_referrer ON referrals(referrer_id);

        CREATE TABLE referral_rewards (
            member_id TEXT NOT NULL,
            level INTEGER NOT NULL CHECK (level >= 1),
            beneficiary_id TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('points', 'coupon')),
            points INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),
            coupon_code TEXT,
            status TEXT NOT NULL CHECK (status IN ('granted', 'reversed')),
            taken_back INTEGER NOT NULL DEFAULT 0 CHECK (taken_back >= 0),
            shortfall INTEGER NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
            at TEXT NOT NULL,
            reversed_at TEXT,
            PRIMARY KEY (member_id, level)
        );
        CREATE INDEX referral_rewards_beneficiary ON referral_rewards(beneficiary_id);
        CREATE INDEX referral_rewards_sale ON referral_rewards(sale_id);

        CREATE TABLE notifications (
            id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            campaign TEXT NOT NULL,
            period TEXT NOT NULL,
            channel TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'sent', 'failed', 'not_configured')),
            sent_at TEXT,
            error TEXT NOT NULL DEFAULT '',
            UNIQUE (member_id, campaign, period, channel)
        );
        CREATE INDEX notifications_queued ON notifications(status) WHERE status = 'queued';
        CREATE INDEX notifications_member ON notifications(member_id, created_at);

        CREATE TABLE member_inbox (
            id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            campaign TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fetched_at TEXT NOT NULL
        );
        CREATE INDEX member_inbox_member ON member_inbox(member_id, created_at)
        """,
    )


@migrations()
def m120_member_privacy(db: sqlite_utils.Database) -> None:
    """Members' personal data sealed at rest (edge/members/pii.py, docs/privacy.md): phone, name,
    birthday and card number move into one AES-GCM blob `pii`; lookups go through keyed hashes
    (`phone_hash`, `card_hash`, unique) and the tablet's search through `phone_last4`. The plaintext
    columns stay (SQLite cannot drop a UNIQUE column) but are emptied, and triggers refuse any write
    of plaintext into them. Outbox rows that carry a member's profile are sealed too. Reads of
    unmasked personal data are audited in `pii_audit`. Start-up VACUUMs and truncates the WAL once
    (settings `pii_vacuum_due`) so no freed page keeps the old plaintext."""
    conn = db.conn
    k = pii.keys(conn)
    _run(
        db,
        """
        ALTER TABLE members ADD COLUMN phone_hash TEXT;
        ALTER TABLE members ADD COLUMN card_hash TEXT;
        ALTER TABLE members ADD COLUMN phone_last4 TEXT;
        ALTER TABLE members ADD COLUMN pii BLOB;
        ALTER TABLE members ADD COLUMN erased_at TEXT
        """,
    )
    for member_id, phone, card_no, name, birthday in conn.execute(
            "SELECT member_id, phone, card_no, name, birthday FROM members").fetchall():
        personal = pii.Personal(phone=phone, name=name or "", birthday=birthday, card_no=card_no)
        phone_hash, card_hash, tail, blob = k.columns(member_id, personal)
        conn.execute("""UPDATE members SET phone = NULL, card_no = NULL, name = '', birthday = NULL, phone_hash = ?,
                        card_hash = ?, phone_last4 = ?, pii = ? WHERE member_id = ?""",
                     (phone_hash, card_hash, tail, blob, member_id))
    for seq, kind, payload in conn.execute(
            "SELECT seq, kind, payload FROM outbox WHERE kind IN ('member')").fetchall():
        conn.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (pii.seal_payload(conn, kind, payload), seq))
    _run(
        db,
        """
        CREATE UNIQUE INDEX members_phone_hash ON members(phone_hash);
        CREATE UNIQUE INDEX members_card_hash ON members(card_hash);
        CREATE INDEX members_phone_last4 ON members(phone_last4) WHERE phone_last4 IS NOT NULL;

        CREATE TABLE pii_audit (
            audit_id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            user_id TEXT,
            till_id TEXT,
            member_id TEXT NOT NULL,
            fields TEXT NOT NULL,
            action TEXT NOT NULL,
            via TEXT NOT NULL
        );
        CREATE INDEX pii_audit_member ON pii_audit(member_id, audit_id);

        INSERT INTO settings (key, value) VALUES ('pii_vacuum_due', '1')
            ON CONFLICT (key) DO UPDATE SET value = '1'
        """,
    )
    conn.execute("INSERT INTO settings (key, value) VALUES ('pii_lookup_fp', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (k.fingerprint(),))
    plain = "NEW.phone IS NOT NULL OR NEW.card_no IS NOT NULL OR NEW.name != '' OR NEW.birthday IS NOT NULL"
    refuse = "SELECT RAISE(ABORT, 'personal data goes through edge.members.pii, never plain columns')"
    for name, event in (("insert", "INSERT"), ("update", "UPDATE OF phone, card_no, name, birthday")):
        db.execute(f"CREATE TRIGGER members_no_plain_{name} BEFORE {event} ON members WHEN {plain} "
                   f"BEGIN {refuse}; END")


@migrations()
def m155_statements(db: sqlite_utils.Database) -> None:
    """Payment providers' statements (edge/payments, docs/payments.md): each imported bill once per
    provider and content hash, its rows once per row identity (a re-downloaded bill adds nothing), what
    each row matched, and the anomalies once per key with a manager's resolution (journaled). A refund
    names the tender it goes back to and the reference the provider's bill will show (refund routing)."""
    _run(
        db,
        """
        CREATE TABLE statement_imports (
            import_id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            method TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            file_name TEXT NOT NULL,
            account TEXT NOT NULL,
            period_start TEXT,
            period_end TEXT,
            rows INTEGER NOT NULL,
            matched INTEGER NOT NULL,
            anomalies INTEGER NOT NULL,
            paid INTEGER NOT NULL,
            refunded INTEGER NOT NULL,
            fees INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            imported_at TEXT NOT NULL,
            journal_seq INTEGER NOT NULL,
            summary BLOB NOT NULL,
            UNIQUE (provider, content_hash)
        );

        CREATE TABLE statement_rows (
            row_key TEXT PRIMARY KEY,
            import_id TEXT NOT NULL REFERENCES statement_imports(import_id),
            row_no INTEGER NOT NULL,
            kind TEXT NOT NULL,
            transaction_id TEXT NOT NULL,
            merchant_order_no TEXT NOT NULL,
            refund_id TEXT NOT NULL,
            merchant_refund_no TEXT NOT NULL,
            amount INTEGER NOT NULL,
            fee INTEGER NOT NULL,
            at TEXT NOT NULL,
            store TEXT NOT NULL,
            status TEXT NOT NULL
        );
        CREATE INDEX statement_rows_import ON statement_rows(import_id, row_no);

        CREATE TABLE statement_matches (
            row_key TEXT PRIMARY KEY REFERENCES statement_rows(row_key),
            kind TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            tender_no INTEGER,
            return_id TEXT,
            refund_no INTEGER,
            matched_by TEXT NOT NULL,
            clean INTEGER NOT NULL
        );
        CREATE INDEX statement_matches_sale ON statement_matches(sale_id);

        CREATE TABLE statement_anomalies (
            anomaly_id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            import_id TEXT NOT NULL REFERENCES statement_imports(import_id),
            provider TEXT NOT NULL,
            kind TEXT NOT NULL,
            reference TEXT,
            sale_id TEXT,
            tender_no INTEGER,
            return_id TEXT,
            refund_no INTEGER,
            expected INTEGER,
            actual INTEGER,
            row_key TEXT,
            found_at TEXT NOT NULL,
            resolved_at TEXT,
            resolved_by TEXT,
            note TEXT,
            journal_seq INTEGER
        );
        CREATE INDEX statement_anomalies_open ON statement_anomalies(resolved_at, anomaly_id);

        ALTER TABLE return_refunds ADD COLUMN tender_no INTEGER;
        ALTER TABLE return_refunds ADD COLUMN reference TEXT;
        CREATE INDEX return_refunds_reference ON return_refunds(reference) WHERE reference IS NOT NULL
        """,
    )


@migrations()
def m150_shifts(db: sqlite_utils.Database) -> None:
    """Cashier shifts (edge/eod/shifts.py, docs/eod.md): one open shift per till (a partial unique
    index), each bounded by its open and close journal records (`open_seq`, `close_seq`): a sale, return
    or top-up of the till whose journal record lies between them belongs to the shift, so attribution is
    exact under the one writer and costs the shift's journal range. A closed shift keeps its frozen
    report. `cash_moves`: pay-outs (支出) and safe drops (投库) of a shift, with reasons, idempotent by
    their client ids."""
    _run(
        db,
        """
        CREATE TABLE shifts (
            shift_id TEXT PRIMARY KEY,
            till_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            opening_float INTEGER NOT NULL CHECK (opening_float >= 0),
            opened_at TEXT NOT NULL,
            open_seq INTEGER NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            closed_at TEXT,
            closed_by TEXT,
            close_seq INTEGER,
            counted INTEGER,
            expected INTEGER,
            variance INTEGER,
            close_hash TEXT,
            report BLOB
        );
        CREATE UNIQUE INDEX shifts_one_open ON shifts(till_id) WHERE closed_at IS NULL;
        CREATE INDEX shifts_till ON shifts(till_id, open_seq);
        CREATE INDEX shifts_opened ON shifts(opened_at);

        CREATE TABLE cash_moves (
            move_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('payout', 'drop')),
            shift_id TEXT NOT NULL REFERENCES shifts(shift_id),
            till_id TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            reason TEXT NOT NULL,
            user_id TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            response BLOB NOT NULL,
            journal_seq INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX cash_moves_shift ON cash_moves(shift_id);
        CREATE INDEX cash_moves_created ON cash_moves(created_at)
        """,
    )


@migrations()
def m151_journal_kind_index(db: sqlite_utils.Database) -> None:
    """A shift's report (edge/eod/shifts.py) reads its till's sales, returns and top-ups through the journal
    records between its open and close: this covering index finds them by kind and sequence without
    reading the records' bodies."""
    _run(db, "CREATE INDEX IF NOT EXISTS journal_kind_seq ON journal(kind, seq, ref)")


@migrations()
def m180_catalog_version(db: sqlite_utils.Database) -> None:
    """A counter every write to items or barcodes moves (settings 'catalog_version'), so the hub can
    keep scanned codes resolved in memory and know at once when they went stale (edge/catalog/
    repository.py ScanCache; docs/performance.md)."""
    bump = ("INSERT INTO settings (key, value) VALUES ('catalog_version', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)")
    for table in ("items", "barcodes"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(f"CREATE TRIGGER {table}_catalog_version_{event.lower()} AFTER {event} ON {table} "
                       f"BEGIN {bump}; END")


@migrations()
def m190_sale_lines_lean(db: sqlite_utils.Database) -> None:
    """Less written per sale line (docs/performance.md): the `sale_lines_rollup` trigger gives way to
    the writers of sale lines adding their sums to `sales_daily_sku` once per item and sale
    (edge/reports/rollups.py), and the `sale_lines(sku)` index, which no query reads (reports read the
    rollups), is dropped."""
    db.execute("DROP TRIGGER IF EXISTS sale_lines_rollup")
    db.execute("DROP INDEX IF EXISTS sale_lines_sku")
