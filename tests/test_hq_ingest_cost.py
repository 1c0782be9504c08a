"""What a batch costs HQ (docs/hq-ingest.md), on both back ends.

- `Tx.insert_rows`, the one-statement multi-row insert/upsert the rollups use (on PostgreSQL the rows
  travel as one JSON document): every value comes back exactly as sent (quotes, backslashes, newlines,
  Chinese text, NULLs, integers near 2^63, bytes), and an upsert adds to the rows it meets.
- The indexes no query reads any more are dropped from an existing database at start, and their
  replacements made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from sync_support import hq_db_url, pg_cluster  # noqa: F401 -- fixtures

from hq_sync.server.service.ingest import _taken_sale_ids_queries
from hq_sync.server.storage.db import HqDb, open_db
from hq_sync.server.storage.schema import DROPPED_INDEXES, create_schema

TEXTS = ["plain", "it's \"quoted\"", "back\\slash \\\\ and \\n", "line\nbreak\ttab", "门店 · 收银", "🙂 {\"a\": [1]}",
         "", " spaced ", "NULL", "{}", "a,b"]


def test_insert_rows_carries_every_value_exactly_and_upserts_add_up(hq_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    db = open_db(hq_db_url)
    try:
        with db.write() as tx:
            tx.run(db.type_words("CREATE TABLE t_rows (k TEXT PRIMARY KEY, n BIGINT, m BIGINT NOT NULL, note TEXT)"))
            tx.run(db.type_words("CREATE TABLE t_blobs (k TEXT PRIMARY KEY, b BLOB)"))
        big = 2**63 - 1
        rows = [(f"k{i}:{text}", [0, -1, big, -big, None, 7][i % 6], i, text if i % 3 else None)
                for i, text in enumerate(TEXTS)]
        cols = "k text, n bigint, m bigint, note text"
        with db.write() as tx:
            tx.insert_rows("t_rows", cols, rows)
            tx.insert_rows("t_blobs", "k text, b bytea", [("a", b"\x00\xff\\x00'"), ("b", None), ("c", b"")])
        with db.read() as tx:
            assert sorted(tx.all("SELECT k, n, m, note FROM t_rows")) == sorted(rows)
            assert sorted((k, None if b is None else bytes(b)) for k, b in tx.all("SELECT k, b FROM t_blobs")) == [
                ("a", b"\x00\xff\\x00'"), ("b", None), ("c", b"")]
        again = [(k, None, m * 10, "x") for k, _, m, _ in rows[:4]] + [("new", 5, 1, None)]
        with db.write() as tx:
            tx.insert_rows("t_rows", cols, again, "ON CONFLICT (k) DO UPDATE SET m = t_rows.m + excluded.m")
            with tx.pipeline():  # the same in a pipeline, as ingest runs it
                tx.insert_rows("t_rows", cols, [("new", 5, 1, None)],
                               "ON CONFLICT (k) DO UPDATE SET m = t_rows.m + excluded.m")
        with db.read() as tx:
            got = dict((k, (n, m, note)) for k, n, m, note in tx.all("SELECT k, n, m, note FROM t_rows"))
        for k, n, m, note in rows[:4]:
            assert got[k] == (n, m * 11, note)  # added to; the other columns kept
        assert got["new"] == (5, 2, None)
        assert len(got) == len(TEXTS) + 1
    finally:
        db.close()


def test_indexes_no_query_reads_are_dropped_from_an_existing_database(hq_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    db = open_db(hq_db_url)
    try:
        create_schema(db)
        with db.write() as tx:  # as an HQ of the version before made them
            tx.run("CREATE INDEX hq_sales_store_day ON hq_sales (store_id, day)")
            tx.run("CREATE INDEX hq_sales_member ON hq_sales (member_id, at)")
            tx.run("CREATE INDEX hq_deltas_quarantine ON hq_deltas (store_id, status)")
        assert set(DROPPED_INDEXES) <= _indexes(db)
        create_schema(db)
        names = _indexes(db)
        assert not set(DROPPED_INDEXES) & names
        assert {"hq_sales_member_at", "hq_deltas_quarantined", "hq_sales_sale"} <= names
        create_schema(db)  # idempotent
        assert _indexes(db) == names
    finally:
        db.close()


def _indexes(db: HqDb) -> set[str]:
    with db.read() as tx:
        if tx.dialect == "postgresql":
            rows = tx.all("SELECT indexname FROM pg_indexes WHERE tablename IN ('hq_sales', 'hq_deltas')")
        else:
            rows = tx.all("SELECT name FROM sqlite_master WHERE type = 'index' "
                          "AND tbl_name IN ('hq_sales', 'hq_deltas')")
    return {str(r[0]) for r in rows}


@pytest.fixture(autouse=True)
def _own_key_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKROOM_HQ_KEY_FILE", str(tmp_path / "hq.pii.key"))


def test_the_duplicate_sale_check_reads_by_the_index_while_a_partition_is_unanalysed(
        pg_cluster: Any, tmp_path: Path) -> None:  # noqa: F811
    """A partition analysed while empty makes the planner expect a quarter of it to match a batch's 50 sale
    ids (it takes sale_id for a column of 200 values) and scan all of it. The check must read by the index
    whatever the statistics say: no row of the partition is read by a sequential scan."""
    db = open_db(pg_cluster.url())
    try:
        create_schema(db)
        with db.write() as tx:
            tx.run("ALTER TABLE hq_sales_default SET (autovacuum_enabled = false)")
            tx.run("ANALYZE hq_sales")  # while empty, as a new month's partition is
            tx.run("""INSERT INTO hq_sales (sale_id, store_id, seq, receipt_no, till_id, at, day, subtotal, discount,
                      total, tax, value_spent, points_redeemed, points_earned)
                      SELECT 'S-' || i, 'store-' || (i %% 100), i, 'R' || i, 'till-1', '2020-05-01T10:00:00',
                      '2020-05-01', 100, 0, 100, 0, 0, 0, 0 FROM generate_series(1, 30000) i""")
        ids = [f"new-{n}" for n in range(49)] + ["S-777"]
        with db.write() as tx:
            before = tx.one("SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'hq_sales_default'")
            assert [r for rows in tx.reads(_taken_sale_ids_queries(tx.dialect, ids)) for r in rows] == [("S-777",)]
            after = tx.one("SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'hq_sales_default'")
            assert before is not None and after is not None and after[0] == before[0]
            # and the transaction's planner settings are as they were
            assert tx.one("SHOW enable_seqscan") == ("on",)
    finally:
        db.close()


def test_reads_returns_each_statements_rows_in_order(hq_db_url: str) -> None:  # noqa: F811
    """`Tx.reads`, the one round trip in which ingest locks the store's row and reads what the batch needs: every
    statement's own rows, in the order given, [] for a statement with no result; a lock taken inside holds."""
    db = open_db(hq_db_url)
    try:
        with db.write() as tx:
            tx.run("CREATE TABLE t_reads (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            tx.many("INSERT INTO t_reads (k, n) VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
        lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
        with db.write() as tx:
            got = tx.reads([("SELECT n FROM t_reads WHERE k = ?" + lock, ("b",), None),
                            ("UPDATE t_reads SET n = n + 10 WHERE k = ?", ("a",), None),
                            ("SELECT k FROM t_reads WHERE n > ? ORDER BY k", (2,), False),
                            ("SELECT k FROM t_reads WHERE k = ?", ("zz",), None)])
            assert got == [[(2,)], [], [("a",), ("c",)], []]
            if db.dialect == "postgresql":  # the row lock is the transaction's: another session waits for it
                with psycopg.connect(hq_db_url, autocommit=True) as other:
                    other.execute("SET lock_timeout = '200ms'")
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        other.execute("SELECT 1 FROM t_reads WHERE k = 'b' FOR UPDATE")
            assert tx.all("SELECT n FROM t_reads WHERE k = 'a'") == [(11,)]  # the same cursor goes on after
    finally:
        db.close()


def test_a_filled_pool_warms_every_connection_and_keeps_nothing_of_it(pg_cluster: Any) -> None:  # noqa: F811
    """`PostgresDb.fill(warm=...)` (the authorisations' pool, before a worker serves): the warm-up runs once on
    each connection of the pool, in a transaction rolled back, and every connection is back in the pool, idle."""
    from hq_sync.server.service.members import warm_authorize
    from hq_sync.server.storage.db import PostgresDb

    url = pg_cluster.url()
    create_schema(open_db(url))
    pool = PostgresDb(url, 3, name="backroom-test-warm")
    try:
        backends: list[int] = []

        def warm(tx: Any) -> None:
            warm_authorize(tx)  # what the worker runs: it finds no member and must not fail
            tx.run("CREATE TABLE warm_mark (x int)")  # each connection in turn: each is rolled back
            row = tx.one("SELECT pg_backend_pid()")
            backends.append(int(row[0]))

        pool.fill(warm=warm)
        assert len(backends) == len(set(backends)) == 3
        with pool.read() as tx:
            states = tx.all("SELECT state FROM pg_stat_activity WHERE application_name = 'backroom-test-warm' "
                            "AND pid <> pg_backend_pid()")
            assert [str(s[0]) for s in states] == ["idle", "idle"]  # not left in a transaction
            seen = {int(tx.one("SELECT pg_backend_pid()")[0])}
            assert tx.one("SELECT to_regclass('warm_mark')")[0] is None  # rolled back
        for _ in range(6):
            with pool.read() as tx:
                seen.add(int(tx.one("SELECT pg_backend_pid()")[0]))
        assert seen <= set(backends)  # the warmed connections serve; no new one was opened
    finally:
        pool.close()
