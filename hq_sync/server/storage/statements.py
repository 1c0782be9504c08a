"""HQ's tables for the chain merchant bill (docs/payments-hq.md), the same on SQLite and PostgreSQL.

- `hq_pay_tenders`: every provider-paid tender (`wechat`, `alipay`, `unionpay`, `card`) of the stores'
  synced sales, and every refund of a synced return paid back to such a method, with its `reference`;
  kept by ingest in the batch's transaction. Cash, stored value and points never reach a provider's bill
  and are not kept here.
- `hq_statements`: one imported bill (its bytes' digest is unique: the same file imported again is the
  same statement); `hq_statement_rows` its rows, each attributed to a store (or to none, `store_id` '')
  and keyed by the parser's row key (the same payment in another bill has the same key).
- `hq_statement_stores`: the per-store split (rows, amounts, fees, matched, anomalies) of a bill.
- `hq_statement_anomalies`: what did not match, per store ('' for the chain: a row no store claims),
  with the matcher's key naming the problem across bills; resolved once with a note (also in `hq_audit`),
  and a later bill's same problem (store and key) starts resolved.
- `hq_statement_store_codes`: the provider's store field (Alipay 门店编号, a WeChat device or
  sub-merchant) → a store, for payments whose reference no store holds.
"""

from __future__ import annotations

from hq_sync.server.storage.db import Tx

PROVIDER_METHODS = ("wechat", "alipay", "unionpay", "card")

STATEMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS hq_pay_tenders (
    store_id TEXT NOT NULL,
    doc_kind TEXT NOT NULL CHECK (doc_kind IN ('sale', 'refund')),
    doc_id TEXT NOT NULL,
    tender_no BIGINT NOT NULL,
    sale_id TEXT NOT NULL,
    method TEXT NOT NULL,
    amount BIGINT NOT NULL,
    reference TEXT,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    PRIMARY KEY (store_id, doc_kind, doc_id, tender_no)
);
CREATE INDEX IF NOT EXISTS hq_pay_tenders_day ON hq_pay_tenders (store_id, day);
CREATE INDEX IF NOT EXISTS hq_pay_tenders_reference ON hq_pay_tenders (reference);
CREATE TABLE IF NOT EXISTS hq_statements (
    statement_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    method TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    file_name TEXT NOT NULL DEFAULT '',
    rows_in_file BIGINT NOT NULL,
    rows_new BIGINT NOT NULL,
    first_day TEXT,
    last_day TEXT,
    period_start TEXT,
    period_end TEXT,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_statement_rows (
    statement_id TEXT NOT NULL,
    row_no BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    row_key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'refund', 'revoked')),
    transaction_id TEXT NOT NULL DEFAULT '',
    merchant_order TEXT NOT NULL DEFAULT '',
    refund_id TEXT NOT NULL DEFAULT '',
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL DEFAULT 0,
    at TEXT NOT NULL,
    store_field TEXT NOT NULL DEFAULT '',
    attributed_by TEXT NOT NULL CHECK (attributed_by IN ('reference', 'store_field', 'none')),
    matched BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (statement_id, row_no)
);
CREATE INDEX IF NOT EXISTS hq_statement_rows_key ON hq_statement_rows (provider, row_key);
CREATE INDEX IF NOT EXISTS hq_statement_rows_store ON hq_statement_rows (statement_id, store_id);
CREATE TABLE IF NOT EXISTS hq_statement_stores (
    statement_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    rows_held BIGINT NOT NULL,
    paid BIGINT NOT NULL,
    refunded BIGINT NOT NULL,
    fees BIGINT NOT NULL,
    matched BIGINT NOT NULL,
    anomalies BIGINT NOT NULL,
    PRIMARY KEY (statement_id, store_id)
);
CREATE TABLE IF NOT EXISTS hq_statement_anomalies (
    statement_id TEXT NOT NULL,
    anomaly_no BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    anomaly_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT,
    sale_id TEXT,
    expected BIGINT,
    actual BIGINT,
    row_no BIGINT,
    resolved_at TEXT,
    resolved_by TEXT,
    note TEXT,
    PRIMARY KEY (statement_id, anomaly_no)
);
CREATE INDEX IF NOT EXISTS hq_statement_anomalies_key ON hq_statement_anomalies (store_id, anomaly_key);
CREATE TABLE IF NOT EXISTS hq_statement_store_codes (
    provider TEXT NOT NULL,
    code TEXT NOT NULL,
    store_id TEXT NOT NULL,
    set_by TEXT NOT NULL DEFAULT '',
    set_at TEXT NOT NULL,
    PRIMARY KEY (provider, code)
)
"""


def create_statement_tables(tx: Tx, ddl: str) -> None:
    """Create the tables (idempotent) and, once, fill `hq_pay_tenders` from the sale tenders an HQ held
    before it kept them (those carry no reference: they match by amount and time only)."""
    for statement in ddl.split(";"):
        if statement.strip():
            tx.run(statement)
    if tx.one("SELECT 1 FROM hq_meta WHERE key = 'pay_tenders'") is not None:
        return
    marks = ", ".join("?" * len(PROVIDER_METHODS))
    tx.run(f"""INSERT INTO hq_pay_tenders (store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference,
                                          at, day)
               SELECT s.store_id, 'sale', t.sale_id, t.tender_no, t.sale_id, t.method, t.amount, NULL, s.at, s.day
               FROM hq_sale_tenders t JOIN hq_sales s ON s.sale_id = t.sale_id WHERE t.method IN ({marks})
               ON CONFLICT DO NOTHING""", PROVIDER_METHODS)
    tx.run("INSERT INTO hq_meta (key, value) VALUES ('pay_tenders', '1')")
