"""HQ's schema is ready for distributed PostgreSQL (docs/hq-scale.md), checked against the real schema:

- every table is classified (storage/distribution.py) and the classification names no table the schema lacks;
- the rule Citus enforces: each distributed table's primary and unique keys contain its distribution column
  (and a partitioned table's its partition column), read from PostgreSQL's catalog and from SQLite's;
- sales, lines, tenders and promotion amounts are partitioned by month on PostgreSQL, the months ahead exist,
  a sale lands in its month's partition (a late one in the default, then moved to its month);
- a batch sent twice to a real HQ process stores each sale once on the partitioned tables;
- an HQ database made with the old keys is converted at start, rows and ids intact;
- the chain reports read from the rollups give the answers the sums over the sales give.
"""

from __future__ import annotations

import datetime
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sync_support

from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta, delta_encoder
from hq_sync.server.service.access import Principal, system_principal
from hq_sync.server.service.reports import report
from hq_sync.server.storage import partitions
from hq_sync.server.storage.db import HqDb, open_db
from hq_sync.server.storage.distribution import PLACEMENT, colocation_groups, distributed, partitioned
from hq_sync.server.storage.history import generate_chain
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, OutRow, PairRequest, b64, batch_encoder, compress, new_key, sign_request

pg_cluster = sync_support.pg_cluster
hq_db_url = sync_support.hq_db_url


def _fresh(url: str) -> HqDb:
    db = open_db(url)
    create_schema(db)
    return db


# -- the catalog readers: every unique key of a table, as PostgreSQL and SQLite hold it -----------------------------

def pg_unique_keys(conn: Any, table: str) -> list[tuple[str, ...]]:
    """The primary key first, then every other unique index (a UNIQUE constraint's or not) of `table`, from
    pg_index; an empty list if PostgreSQL holds no primary key constraint for it (pg_constraint)."""
    if not conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
                        (table,)).fetchall():
        return []
    rows = conn.execute("""SELECT x.indisprimary, array_agg(a.attname ORDER BY array_position(x.indkey::int2[],
                           a.attnum)) FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid
                           AND a.attnum = ANY(x.indkey) WHERE x.indrelid = to_regclass(%s) AND x.indisunique
                           GROUP BY x.indexrelid, x.indisprimary ORDER BY x.indisprimary DESC, x.indexrelid""",
                        (table,)).fetchall()
    return [tuple(r[1]) for r in rows]


def sqlite_unique_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, ...]]:
    """Primary key (a rowid one included) and every unique index of `table`, from SQLite's pragmas."""
    keys = []
    pk = [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5]) if r[5] > 0]
    if pk:
        keys.append(tuple(pk))
    for _, name, unique, _origin, _ in conn.execute(f"PRAGMA index_list({table})"):
        if unique:
            keys.append(tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})")))
    return keys


def violations(keys_of: dict[str, list[tuple[str, ...]]], rowid_ok: dict[str, str] | None = None) -> list[str]:
    """Where a distributed table breaks Citus's rule (or a partitioned one PostgreSQL's)."""
    found = []
    for table, column in distributed().items():
        keys = keys_of[table]
        if not keys:
            found.append(f"{table}: no primary key")
        for key in keys:
            if rowid_ok and len(key) == 1 and rowid_ok.get(table) == key[0]:
                continue
            if column not in key:
                found.append(f"{table}: key {key} lacks its distribution column {column}")
            part = PLACEMENT[table].partition
            if part is not None and part not in key:
                found.append(f"{table}: key {key} lacks its partition column {part}")
    return found


# -- classification ----------------------------------------------------------------------------------------------

def test_every_table_is_classified_and_every_classified_table_exists(hq_db_url: str) -> None:
    db = _fresh(hq_db_url)
    try:
        with db.read() as tx:
            if tx.dialect == "postgresql":
                tables = {str(r[0]) for r in tx.all("""SELECT relname FROM pg_class WHERE relnamespace =
                    current_schema()::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition""")}
            else:
                tables = {str(r[0]) for r in tx.all("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                    "AND name NOT LIKE 'sqlite_%'")}
    finally:
        db.close()
    assert sorted(tables - set(PLACEMENT)) == []  # a new table must be classified in storage/distribution.py
    assert sorted(set(PLACEMENT) - tables) == []
    assert colocation_groups().keys() == {"store_id", "member_id", "code"}
    assert set(partitioned()) == {"hq_sales", "hq_sale_lines", "hq_sale_tenders", "hq_sale_line_rules"}


# -- the rule Citus enforces --------------------------------------------------------------------------------------

def test_on_postgresql_each_distributed_tables_keys_contain_its_distribution_and_partition_columns(
        pg_cluster: sync_support.PgCluster) -> None:
    import psycopg

    url = pg_cluster.url()
    _fresh(url).close()
    with psycopg.connect(url) as conn:
        columns = {(str(t), str(c)) for t, c in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()")}
        assert [(t, c) for t, c in distributed().items() if (t, c) not in columns] == []
        keys = {table: pg_unique_keys(conn, table) for table in distributed()}
        assert violations(keys) == []
        assert keys["hq_sales"][0] == ("store_id", "sale_id", "day")
        assert ("member_id", "entry_id") in keys["hq_member_ledger"]
        assert ("member_id", "request_id") in keys["hq_grants"]
        for table, column in partitioned().items():
            [(kind, definition)] = conn.execute(
                "SELECT c.relkind, pg_get_partkeydef(c.oid) FROM pg_class c WHERE c.oid = to_regclass(%s)",
                (table,)).fetchall()
            assert (kind, definition) == ("p", f"RANGE ({column})")
        # the check itself catches a table that breaks the rule (the same reader, a table made to break it)
        conn.execute("CREATE TABLE hq_sales_bad (sale_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, day TEXT)")
        assert violations({**keys, "hq_sales": pg_unique_keys(conn, "hq_sales_bad")}) == [
            "hq_sales: key ('sale_id',) lacks its distribution column store_id",
            "hq_sales: key ('sale_id',) lacks its partition column day"]


def test_on_sqlite_the_schema_keeps_the_same_keys_and_its_rowid_ids_are_keyed_by_member_on_postgresql(
        tmp_path: Path) -> None:
    path = tmp_path / "hq.sqlite3"
    _fresh(str(path)).close()
    conn = sqlite3.connect(path)
    try:
        keys = {table: sqlite_unique_keys(conn, table) for table in distributed()}
        ddl = {str(n): str(s) for n, s in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    # SQLite's AUTOINCREMENT id must be the rowid, a key by itself; the schema gives PostgreSQL (the one that
    # can be distributed) the key leading with the member in a /*PG: ...*/ clause, which SQLite keeps as text.
    rowid = {}
    for table in distributed():
        match = re.search(r"(\w+) INTEGER PRIMARY KEY AUTOINCREMENT /\*PG: PRIMARY KEY \((\w+), (\w+)\)\*/", ddl[table])
        if match:
            assert (match[2], match[3]) == (distributed()[table], match[1])
            rowid[table] = match[1]
    assert sorted(rowid) == ["hq_member_ledger", "hq_member_tier_changes", "hq_pii_audit", "hq_pii_views"]
    assert violations(keys, rowid) == []
    assert violations(keys) == [f"{t}: key ('{c}',) lacks its distribution column member_id"
                                for t, c in rowid.items()]  # what the rowid exception stands for
    assert keys["hq_sale_lines"][0] == ("store_id", "sale_id", "line_no", "day")


# -- partitions ---------------------------------------------------------------------------------------------------

AT_NOW = datetime.datetime.now(datetime.UTC).astimezone(datetime.timezone(datetime.timedelta(hours=8)))


def _sale(seq: int, at: str, sale_id: str | None = None, member_id: str | None = None,
          points_earned: int = 0) -> OutRow:
    delta = SaleDelta(sale_id=sale_id or str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U-cashier",
                      at=at, lines=[DeltaLine(1, "SKU00027", 2, 500, 1000, 100, 900, 83, rules=[("P-10", 100)]),
                                    DeltaLine(2, "SKU00028", 1, 300, 300, 0, 300, 27)],
                      tenders=[DeltaTender("cash", 1000), DeltaTender("wechat", 200)], subtotal=1300, discount=100,
                      total=1200, tax=110, change=0, journal_seq=seq, member_id=member_id,
                      points_earned=points_earned)
    return OutRow(seq, "sale", delta.sale_id, at, msgspec.Raw(delta_encoder.encode(delta)))


class _Store:
    """A paired store speaking the real protocol to a real HQ process: signed, compressed batches."""

    def __init__(self, hq: sync_support.HqServer, store_id: str) -> None:
        self.hq, self.store_id = hq, store_id
        with hq.admin() as admin:
            code = admin.post(f"/hq/v1/stores/{store_id}/pair-code").json()["code"]
        self.key, public = new_key()
        r = httpx.post(hq.url + "/hq/v1/sync/pair", json=msgspec.to_builtins(
            PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, code=code)), timeout=10)
        assert r.status_code == 200, r.text

    def send(self, rows: list[OutRow]) -> dict[str, Any]:
        body, encoding = compress(batch_encoder.encode(Batch(self.store_id, max(r.seq for r in rows), rows)))
        headers = {**sign_request(self.key, self.store_id, "POST", "/hq/v1/sync/batches", int(time.time()), body),
                   "Content-Encoding": encoding}
        r = httpx.post(self.hq.url + "/hq/v1/sync/batches", content=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def pg_hq(pg_cluster: sync_support.PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        sync_support.HqServer]:
    hq = sync_support.HqServer(pg_cluster.url(), tmp_path_factory.mktemp("pg-hq"))
    hq.start()
    yield hq
    hq.stop()


def _where(hq: sync_support.HqServer, table: str, sale_id: str) -> list[tuple[str, int]]:
    """The partitions holding the sale's rows in `table`, with how many rows each."""
    return [(str(p), int(n)) for p, n in hq.query(
        f"SELECT tableoid::regclass::text, count(*) FROM {table} WHERE sale_id = ? GROUP BY 1", (sale_id,))]


def _month(day: datetime.date) -> str:
    return f"{day.year:04d}{day.month:02d}"


def test_partitions_exist_ahead_and_a_sale_lands_in_its_month(pg_hq: sync_support.HqServer) -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    ahead = [today.replace(day=1)]
    for _ in range(partitions.AHEAD_MONTHS):
        ahead.append((ahead[-1] + datetime.timedelta(days=32)).replace(day=1))
    for table in partitioned():
        held = {str(r[0]) for r in pg_hq.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(?)", (table,))}
        assert {f"{table}_default", *(f"{table}_p{_month(m)}" for m in ahead)} <= held
    store = _Store(pg_hq, "part-001")
    late_day = (today.replace(day=1) - datetime.timedelta(days=400)).replace(day=15)
    now_sale = _sale(1, AT_NOW.isoformat(timespec="milliseconds"))
    late_sale = _sale(2, f"{late_day.isoformat()}T11:00:00.000+08:00")
    assert store.send([now_sale, late_sale])["applied"] == 2
    here = AT_NOW.date()
    assert _where(pg_hq, "hq_sales", now_sale.ref) == [(f"hq_sales_p{_month(here)}", 1)]
    assert _where(pg_hq, "hq_sale_lines", now_sale.ref) == [(f"hq_sale_lines_p{_month(here)}", 2)]
    assert _where(pg_hq, "hq_sale_tenders", now_sale.ref) == [(f"hq_sale_tenders_p{_month(here)}", 2)]
    assert _where(pg_hq, "hq_sale_line_rules", now_sale.ref) == [(f"hq_sale_line_rules_p{_month(here)}", 1)]
    # A sale of a month no partition covers waits in the default partition, until the partition timer's
    # next turn (run here directly) gives its month a partition and moves it there.
    assert _where(pg_hq, "hq_sales", late_sale.ref) == [("hq_sales_default", 1)]
    db = open_db(pg_hq.db_url)
    try:
        made = partitions.run_once(db)
    finally:
        db.close()
    assert f"hq_sales_p{_month(late_day)}" in made
    for table, rows in (("hq_sales", 1), ("hq_sale_lines", 2), ("hq_sale_tenders", 2), ("hq_sale_line_rules", 1)):
        assert _where(pg_hq, table, late_sale.ref) == [(f"{table}_p{_month(late_day)}", rows)]
    assert pg_hq.query("SELECT count(*) FROM hq_sales_default") == [(0,)]


def test_a_batch_sent_twice_stores_each_sale_once_on_the_partitioned_tables(pg_hq: sync_support.HqServer) -> None:
    store = _Store(pg_hq, "twice-001")
    old = (datetime.datetime.now(datetime.UTC).date().replace(day=1) - datetime.timedelta(days=800)).replace(day=3)
    rows = [_sale(1, AT_NOW.isoformat(timespec="milliseconds")), _sale(2, f"{old.isoformat()}T09:00:00.000+08:00"),
            _sale(3, AT_NOW.isoformat(timespec="milliseconds"))]
    first = store.send(rows)
    again = store.send(rows)
    assert (first["acked"], first["applied"], first["duplicates"]) == (3, 3, 0)
    assert (again["acked"], again["applied"], again["duplicates"]) == (3, 0, 3)
    # the same sale under a new outbox seq (a hub restored from an old backup) is held already: quarantined
    resent = store.send([_sale(4, AT_NOW.isoformat(timespec="milliseconds"), sale_id=rows[0].ref)])
    assert (resent["applied"], [q[1] for q in resent["quarantined"]]) == (
        0, [f"sale {rows[0].ref} is already held at HQ"])
    counts = {t: pg_hq.query(f"SELECT count(*), count(DISTINCT sale_id) FROM {t} WHERE store_id = ?", ("twice-001",))
              for t in partitioned()}
    assert counts == {"hq_sales": [(3, 3)], "hq_sale_lines": [(6, 3)], "hq_sale_tenders": [(6, 3)],
                      "hq_sale_line_rules": [(3, 3)]}
    assert pg_hq.query("SELECT sales, acked_seq FROM hq_stores WHERE store_id = 'twice-001'") == [(3, 4)]
    assert pg_hq.query("SELECT count(*), sum(tickets) FROM hq_store_days WHERE store_id = 'twice-001'")[0][1] == 3
    # ... and the database itself refuses a second copy of a sale within its partition key
    import psycopg

    with psycopg.connect(pg_hq.db_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("""INSERT INTO hq_sales (sale_id, store_id, seq, receipt_no, till_id, at, day, subtotal, discount,
                        total, tax, value_spent, points_redeemed, points_earned)
                        SELECT sale_id, store_id, 99, receipt_no, till_id, at, day, subtotal, discount, total, tax,
                        value_spent, points_redeemed, points_earned FROM hq_sales WHERE sale_id = %s""",
                     (rows[1].ref,))


# -- an HQ database with the old keys, converted at start ---------------------------------------------------------

_OLD = """
CREATE TABLE hq_sales (sale_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, seq BIGINT NOT NULL, receipt_no TEXT NOT NULL,
    till_id TEXT NOT NULL, at TEXT NOT NULL, day TEXT NOT NULL, member_id TEXT, subtotal BIGINT NOT NULL,
    discount BIGINT NOT NULL, total BIGINT NOT NULL, tax BIGINT NOT NULL, value_spent BIGINT NOT NULL,
    points_redeemed BIGINT NOT NULL, points_earned BIGINT NOT NULL);
CREATE INDEX hq_sales_store_day ON hq_sales (store_id, day);
CREATE TABLE hq_sale_lines (sale_id TEXT NOT NULL, line_no BIGINT NOT NULL, store_id TEXT NOT NULL, sku TEXT NOT NULL,
    qty BIGINT NOT NULL, weight_g BIGINT, net BIGINT NOT NULL, discount BIGINT NOT NULL, tax BIGINT NOT NULL,
    PRIMARY KEY (sale_id, line_no));
CREATE TABLE hq_sale_tenders (sale_id TEXT NOT NULL, tender_no BIGINT NOT NULL, method TEXT NOT NULL,
    amount BIGINT NOT NULL, PRIMARY KEY (sale_id, tender_no));
CREATE TABLE hq_member_ledger (entry_id {id}, member_id TEXT NOT NULL, ledger TEXT NOT NULL, delta BIGINT NOT NULL,
    kind TEXT NOT NULL, store_id TEXT, ref TEXT, at TEXT NOT NULL);
CREATE TABLE hq_grants (grant_id TEXT PRIMARY KEY, request_id TEXT UNIQUE, member_id TEXT NOT NULL,
    store_id TEXT NOT NULL, ledger TEXT NOT NULL, amount BIGINT NOT NULL CHECK (amount > 0), at TEXT NOT NULL)
"""


def test_an_hq_database_with_the_old_keys_is_converted_at_start(hq_db_url: str) -> None:
    db = open_db(hq_db_url)
    ident = ("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if db.dialect == "postgresql"
             else "INTEGER PRIMARY KEY AUTOINCREMENT")
    try:
        with db.write() as tx:
            for statement in _OLD.replace("{id}", ident).split(";"):
                tx.run(statement)
            tx.many("INSERT INTO hq_sales VALUES (?, ?, ?, ?, 'T1', ?, ?, NULL, ?, 0, ?, 0, 0, 0, 0)",
                    [(f"S{n}", f"st-{n % 2}", n, f"R{n}", f"{day}T10:00:00+08:00", day, 100 * n, 100 * n)
                     for n, day in enumerate(["2025-01-05", "2025-01-06", "2026-11-30", "2026-12-01"], start=1)])
            tx.many("INSERT INTO hq_sale_lines VALUES (?, ?, ?, 'SKU00001', 1, NULL, ?, 0, 0)",
                    [(f"S{n}", k, f"st-{n % 2}", 50 * n) for n in range(1, 5) for k in (1, 2)])
            tx.many("INSERT INTO hq_sale_tenders VALUES (?, 1, 'cash', ?)", [(f"S{n}", 100 * n) for n in range(1, 5)])
            tx.many("INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, at) VALUES (?, 'value', ?, 'topup', "
                    "'2025-01-05')", [("M1", 500), ("M2", 700), ("M1", -200)])
            tx.run("INSERT INTO hq_grants VALUES ('G-1', 'st-1:q1', 'M1', 'st-1', 'value', 100, '2025-01-05')")
        create_schema(db)
        create_schema(db)  # and again: nothing more to convert
        with db.write() as tx:
            assert tx.all("SELECT sale_id, store_id, day, total FROM hq_sales ORDER BY sale_id") == [
                ("S1", "st-1", "2025-01-05", 100), ("S2", "st-0", "2025-01-06", 200),
                ("S3", "st-1", "2026-11-30", 300), ("S4", "st-0", "2026-12-01", 400)]
            assert tx.all("SELECT sale_id, line_no, store_id, day, net FROM hq_sale_lines WHERE sale_id = 'S3'") == [
                ("S3", 1, "st-1", "2026-11-30", 150), ("S3", 2, "st-1", "2026-11-30", 150)]
            assert tx.all("SELECT sale_id, store_id, day, amount FROM hq_sale_tenders ORDER BY sale_id")[1] == (
                "S2", "st-0", "2025-01-06", 200)
            tx.run("INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, at) VALUES ('M2', 'value', 1, 'x', "
                   "'now')")
            assert tx.all("SELECT entry_id, member_id, delta FROM hq_member_ledger ORDER BY entry_id") == [
                (1, "M1", 500), (2, "M2", 700), (3, "M1", -200), (4, "M2", 1)]  # ids kept, and carried on
            assert tx.all("SELECT grant_id, request_id FROM hq_grants") == [("G-1", "st-1:q1")]
            assert tx.all("SELECT store_id, day, tickets, net FROM hq_store_days ORDER BY day") == [
                ("st-1", "2025-01-05", 1, 100), ("st-0", "2025-01-06", 1, 200), ("st-1", "2026-11-30", 1, 300),
                ("st-0", "2026-12-01", 1, 400)]  # the rollups built from the converted sales
            if tx.dialect == "postgresql":
                assert {str(r[0]) for r in tx.all("SELECT tableoid::regclass::text FROM hq_sales")} == {
                    "hq_sales_p202501", "hq_sales_p202611", "hq_sales_p202612"}
                assert tx.all("SELECT count(*) FROM hq_sale_lines_default") == [(0,)]
                names = {str(r[0]) for r in tx.all("SELECT relname FROM pg_class WHERE strpos(relname, '__rekey') > 0")}
                assert names == set()
            else:
                assert tx.all("SELECT name FROM sqlite_master WHERE instr(name, '__rekey') > 0") == []
    finally:
        db.close()


# -- chain reports from rollups -----------------------------------------------------------------------------------

def _from_the_sales(db: HqDb, principal: Principal, by: str) -> list[dict[str, Any]]:
    """The reports as HQ computed them before the rollups: sums over every sale and line (the reference)."""
    from hq_sync.server.service.access import scope_sql

    in_scope, args = scope_sql(principal, "s.store_id")
    with db.read() as tx:
        if by == "stores":
            rows = tx.all(f"""SELECT s.store_id, s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                              FROM hq_stores s LEFT JOIN hq_sales x ON x.store_id = s.store_id WHERE {in_scope}
                              GROUP BY s.store_id, s.region ORDER BY 4 DESC, s.store_id""", args)
            return [{"rank": n, "store_id": r[0], "region": r[1], "sales": int(r[2]), "total": int(r[3])}
                    for n, r in enumerate(rows, start=1)]
        if by == "categories":
            lines_in_scope, line_args = scope_sql(principal, "l.store_id")
            rows = tx.all(f"""SELECT coalesce(i.category_id, '-'), count(*), coalesce(sum(l.net), 0)
                              FROM hq_sale_lines l LEFT JOIN hq_items i ON i.sku = l.sku WHERE {lines_in_scope}
                              GROUP BY coalesce(i.category_id, '-') ORDER BY 3 DESC, 1""", line_args)
            return [{"category": r[0], "lines": int(r[1]), "net": int(r[2])} for r in rows]
        rows = tx.all(f"""SELECT s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                          FROM hq_sales x JOIN hq_stores s ON s.store_id = x.store_id WHERE {in_scope}
                          GROUP BY s.region ORDER BY 3 DESC, 1""", args)
        return [{"region": r[0], "sales": int(r[1]), "total": int(r[2])} for r in rows]


def test_chain_reports_read_from_rollups_answer_what_the_sums_over_the_sales_answer(hq_db_url: str) -> None:
    db = open_db(hq_db_url)
    try:
        stats = generate_chain(db, stores=6, days=45, tickets_per_day=12, members=300, seed=7)
        assert stats.tickets > 2000
        with db.read() as tx:
            region = str(tx.all("SELECT region FROM hq_stores WHERE region <> '' ORDER BY store_id")[0][0])
        regional = Principal(username="region-x", role="region_manager", regions=(region,))
        for principal in (system_principal(), regional):
            for by in ("stores", "categories", "regions"):
                new, old = report(db, principal, by), _from_the_sales(db, principal, by)
                assert new == old, (principal.username, by)
                assert len(new) > (1 if by != "regions" or not principal.scoped else 0)
    finally:
        db.close()


# -- rows change key by insert and delete, never by an UPDATE of the distribution column --------------------------

def test_a_store_paired_again_keeps_its_old_stream_under_an_archive_key_and_starts_afresh(hq_db_url: str) -> None:
    from hq_sync.server.api.resources import Hq
    from hq_sync.server.service.ingest import ingest
    from hq_sync.server.service.stores import pair

    hq = Hq(hq_db_url, demo=True)
    try:
        def pair_with(head: int) -> None:
            _, public = new_key()
            pair(hq.db, PairRequest(store_id="demo-001", public_key=b64(public), outbox_head=head, demo=True),
                 hq.private_key, hq.public_key, True, "2026-05-01T10:00:00.000+08:00")

        pair_with(0)
        sales = [_sale(1, "2026-05-01T10:00:00.000+08:00"), _sale(2, "2026-05-01T10:05:00.000+08:00")]
        assert ingest(hq.db, Batch("demo-001", 2, sales), "2026-05-01T10:06:00.000+08:00").applied == 2
        pair_with(0)  # a new key: the hub was replaced; its new stream starts at 1 again
        fresh = _sale(1, "2026-05-02T09:00:00.000+08:00")
        assert ingest(hq.db, Batch("demo-001", 1, [fresh]), "2026-05-02T09:01:00.000+08:00").applied == 1
        with hq.db.read() as tx:
            streams = tx.all("SELECT store_id, seq, ref FROM hq_deltas WHERE substr(store_id, 1, 8) = 'demo-001' "
                             "ORDER BY store_id, seq")
            held = tx.one("SELECT count(*) FROM hq_sales WHERE store_id = 'demo-001'")
    finally:
        hq.close()
    assert streams == [("demo-001", 1, fresh.ref), ("demo-001#2026-05-01T10:00:00.000+08:00", 1, sales[0].ref),
                       ("demo-001#2026-05-01T10:00:00.000+08:00", 2, sales[1].ref)]
    assert held == (3,)


# -- the hot path's keys: what one batch's transaction wrote (its rows carry its xid as xmin) -------------------------

def _written(hq: sync_support.HqServer, xid: str) -> dict[str, set[Any]]:
    """Table → the distribution keys of the rows the transaction `xid` inserted or updated (None for a
    reference or local table)."""
    out: dict[str, set[Any]] = {}
    for table, placement in PLACEMENT.items():
        rows = hq.query(f"SELECT DISTINCT {placement.column or 'NULL'} FROM {table} WHERE xmin::text = ?", (xid,))
        if rows:
            out[table] = {r[0] for r in rows}
    return out


def test_a_batch_writes_its_stores_rows_and_a_members_effects_only_under_that_members_key(
        pg_hq: sync_support.HqServer) -> None:
    store = _Store(pg_hq, "keys-001")
    at = AT_NOW.isoformat(timespec="milliseconds")
    assert store.send([_sale(1, at), _sale(2, at)])["applied"] == 2
    [(xid,)] = pg_hq.query("SELECT xmin::text FROM hq_stores WHERE store_id = 'keys-001'")
    anonymous = _written(pg_hq, xid)
    assert {t: PLACEMENT[t].column for t in anonymous} == dict.fromkeys(anonymous, "store_id")
    assert set(anonymous) >= {"hq_stores", "hq_deltas", "hq_sales", "hq_sale_lines", "hq_sale_tenders",
                              "hq_store_days", "hq_sku_days"}
    assert set().union(*anonymous.values()) == {"keys-001"}

    [(member,)] = pg_hq.query("SELECT member_id FROM hq_members ORDER BY member_id LIMIT 1")
    assert store.send([_sale(3, at, member_id=member, points_earned=12)])["applied"] == 1
    [(xid,)] = pg_hq.query("SELECT xmin::text FROM hq_stores WHERE store_id = 'keys-001'")
    with_member = _written(pg_hq, xid)
    by_column: dict[str | None, set[str]] = {}
    for table in with_member:
        by_column.setdefault(PLACEMENT[table].column, set()).add(table)
    # the ledger is append-only; hq_members and hq_escrow rows it also moved may carry a later xid by now
    # (the escrow policy's grant to the store the member shopped at, in its own transaction)
    assert "hq_member_ledger" in by_column["member_id"]
    assert set(by_column) <= {"store_id", "member_id", None}
    # the member's figures going down to the store: the feed, its queue and its sequence counter (all local)
    assert by_column.get(None, set()) <= {"hq_feed", "hq_feed_pending", "hq_counters"}
    assert set().union(*(with_member[t] for t in by_column["member_id"])) == {member}
    assert set().union(*(with_member[t] for t in by_column["store_id"])) == {"keys-001"}
