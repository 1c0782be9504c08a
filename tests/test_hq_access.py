"""HQ roles, region scope and the audit log in the service layer, on both back ends (a SQLite file and
a real PostgreSQL): what a region manager reaches, that refused writes leave nothing, that the audit row
shares the write's transaction, quarantine retry/resolve, the chain dashboard's freshness, and that an
HQ database made before these tables gains them at start."""

from __future__ import annotations

import datetime
import inspect
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sync_support

from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta, delta_encoder
from hq_sync.server.api import admin
from hq_sync.server.api import users as user_api
from hq_sync.server.api.resources import Hq
from hq_sync.server.console.router import PAGES
from hq_sync.server.service import audit, auth, catalog, dashboard, ingest, members, reports, stores, transfers, users
from hq_sync.server.service.access import Principal, permission_table, system_principal, target_stores
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.schema import create_schema
from hq_sync.wire import Batch, OutRow, PairRequest, b64, new_key

hq_db_url = sync_support.hq_db_url
pg_cluster = sync_support.pg_cluster
AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = system_principal("test-admin")
EAST = Principal("region-east", "region_manager", ("华东 East",))
AUDITOR = Principal("auditor", "auditor")


@pytest.fixture
def hq(hq_db_url: str) -> Iterator[Hq]:
    server = Hq(hq_db_url, demo=True)
    yield server
    server.close()


def _pair(hq: Hq, store_id: str) -> None:
    _, public = new_key()
    stores.pair(hq.db, PairRequest(store_id=store_id, public_key=b64(public), outbox_head=0, demo=True),
                hq.private_key, hq.public_key, True, AT)


def _sale(seq: int, at: str = AT, member_id: str | None = None, value_spent: int = 0, total: int = 1000) -> OutRow:
    delta = SaleDelta(sale_id=str(uuid.uuid4()), receipt_no=f"R{seq}", till_id="T1", user_id="U", at=at,
                      lines=[DeltaLine(1, "SKU00027", 2, total // 2, total, 0, total, 83)],
                      tenders=[DeltaTender("stored_value" if value_spent else "cash", total)], subtotal=total,
                      discount=0, total=total, tax=83, change=0, journal_seq=seq, member_id=member_id,
                      value_spent=value_spent)
    return OutRow(seq, "sale", delta.sale_id, at, msgspec.Raw(delta_encoder.encode(delta)))


def _count(hq: Hq, sql: str) -> int:
    with hq.db.read() as tx:
        row = tx.one(sql)
    assert row is not None
    return int(row[0])


def _written(hq: Hq) -> tuple[int, ...]:
    return tuple(_count(hq, f"SELECT count(*) FROM {t}") for t in ("hq_audit", "hq_feed", "hq_prices",
                                                                     "hq_promotions", "hq_pair_codes", "hq_escrow"))


def test_a_region_manager_reaches_the_stores_of_his_regions_only(hq: Hq) -> None:
    assert [s["store_id"] for s in stores.list_stores(hq.db, EAST)] == ["demo-001"]
    assert [s["store_id"] for s in stores.list_stores(hq.db, AUDITOR)] == ["demo-001", "demo-002"]
    assert [r["store_id"] for r in reports.report(hq.db, EAST, "stores")] == ["demo-001"]
    assert [s.store_id for s in dashboard.chain_dashboard(hq.db, EAST).stores] == ["demo-001"]
    assert [r.region for r in dashboard.chain_dashboard(hq.db, EAST).regions] == ["华东 East"]
    with hq.db.read() as tx:
        assert target_stores(tx, EAST, None) == ["demo-001"]  # nothing named: his stores, not the chain
        assert target_stores(tx, ADMIN, None) is None
        assert target_stores(tx, ADMIN, None, ["华北 North"]) == ["demo-002"]
    before = _written(hq)
    refused = [
        lambda: catalog.set_prices(hq.db, EAST, hq.private_key, [("SKU00001", 1)], ["demo-002"], None, AT),
        lambda: catalog.set_prices(hq.db, EAST, hq.private_key, [("SKU00001", 1)], ["demo-001", "demo-002"], None,
                                   AT),
        lambda: catalog.set_prices(hq.db, EAST, hq.private_key, [("SKU00001", 1)], None, None, AT, ["华北 North"]),
        lambda: catalog.set_prices(hq.db, EAST, hq.private_key, [("SKU00001", 1)], ["no-such-store"], None, AT),
        lambda: catalog.put_promotion(hq.db, EAST, hq.private_key, b'{"rule_id": "x", "name": "x", "name_en": "x", '
                                      b'"benefit": {"kind": "percent_off", "discount_bp": 500}}', AT),
        lambda: catalog.put_promotion(hq.db, EAST, hq.private_key, b'{"rule_id": "demo-home-200-30", "name": "x", '
                                      b'"name_en": "x", "benefit": {"kind": "percent_off", "discount_bp": 500}, '
                                      b'"eligibility": {"stores": ["demo-001"]}}', AT),  # HQ's chain-wide rule
        lambda: stores.update_profile(hq.db, EAST, "demo-002", stores.StoreProfile(name="x"), AT),
        lambda: stores.update_profile(hq.db, EAST, "demo-001", stores.StoreProfile(region="华北 North"), AT),
        lambda: stores.make_pair_code(hq.db, EAST, "demo-002"),
        lambda: stores.make_pair_code(hq.db, EAST, "store-new"),
        lambda: stores.quarantine(hq.db, EAST, "demo-002"),
        lambda: transfers.store_stock(hq.db, EAST, "demo-002", "SKU00001"),
        lambda: members.grant(hq.db, EAST, hq.private_key, "M000001", "demo-002", "value", 100, AT),
    ]
    for attempt in refused:
        with pytest.raises(HqError) as exc:
            attempt()
        assert (exc.value.status, exc.value.code) == (403, "out_of_scope")
    for attempt in [lambda: members.reclaim(hq.db, EAST, hq.private_key, "M000001", "value", None, AT),
                    lambda: users.list_users(hq.db, EAST),
                    lambda: audit.audit_page(hq.db, EAST),
                    lambda: catalog.set_prices(hq.db, AUDITOR, hq.private_key, [("SKU00001", 1)], None, None, AT)]:
        with pytest.raises(HqError) as exc:
            attempt()
        assert (exc.value.status, exc.value.code) == (403, "forbidden")
    assert _written(hq) == before


def test_every_write_is_audited_with_who_what_before_and_after(hq: Hq) -> None:
    catalog.set_prices(hq.db, EAST, hq.private_key, [("SKU00001", 1234)], None, None, AT)
    catalog.set_prices(hq.db, ADMIN, hq.private_key, [("SKU00002", 99)], None, "2026-06-01T00:00:00+08:00", AT)
    stores.update_profile(hq.db, EAST, "demo-001", stores.StoreProfile(address="上海市 1 号"), AT)
    page = audit.audit_page(hq.db, AUDITOR)
    assert [(e.actor, e.role, e.action, e.target) for e in page.entries] == [
        ("region-east", "region_manager", "store.profile", "store:demo-001"),
        ("test-admin", "hq_admin", "price.set", "sku:SKU00002"),
        ("region-east", "region_manager", "price.set", "sku:SKU00001")]
    price = page.entries[2]
    assert price.before == {"SKU00001": {"*": 1598}}  # the catalog price; no store price was set before
    assert price.after["stores"] == ["demo-001"] and price.after["prices"] == [["SKU00001", 1234]]
    assert page.entries[0].before["address"] == "" and page.entries[0].after["address"] == "上海市 1 号"
    assert [e.action for e in audit.audit_page(hq.db, AUDITOR, actor="region-east").entries] == [
        "store.profile", "price.set"]
    assert audit.audit_page(hq.db, AUDITOR, action="price.").total == 2
    assert audit.audit_page(hq.db, AUDITOR, target="store:").total == 1
    assert audit.audit_page(hq.db, AUDITOR, limit=1, offset=1).entries[0].target == "sku:SKU00002"


def test_the_audit_row_shares_its_writes_transaction(hq: Hq) -> None:
    before = _count(hq, "SELECT count(*) FROM hq_audit")
    with pytest.raises(RuntimeError), hq.db.write() as tx:
        tx.run("UPDATE hq_stores SET address = 'gone' WHERE store_id = 'demo-001'")
        audit.audit(tx, ADMIN, "store.profile", "store:demo-001", {"address": ""}, {"address": "gone"})
        raise RuntimeError("the write fails after its audit row")
    assert _count(hq, "SELECT count(*) FROM hq_audit") == before
    assert _count(hq, "SELECT count(*) FROM hq_stores WHERE address = 'gone'") == 0


def test_a_quarantined_delta_is_retried_from_its_bytes_or_resolved_by_hand(hq: Hq) -> None:
    _pair(hq, "demo-001")
    junk = OutRow(2, "sale", "junk", AT, msgspec.Raw(b"\x93\x01\x02"))
    ack = ingest.ingest(hq.db, Batch("demo-001", 3, [_sale(1), junk,
                                                      _sale(3, member_id="M000001", value_spent=500, total=500)]), AT)
    assert [seq for seq, _ in ack.quarantined] == [2, 3]  # 3: a spend beyond the escrow HQ gave the store
    assert stores.store_view(hq.db, EAST, "demo-001")["quarantined"] == 2
    assert ingest.retry_quarantined(hq.db, EAST, "demo-001", 3, AT) is False  # still no escrow: stays
    members.grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-001", "value", 500, AT)
    assert ingest.retry_quarantined(hq.db, EAST, "demo-001", 3, AT) is True
    assert _count(hq, "SELECT count(*) FROM hq_sales WHERE store_id = 'demo-001'") == 2
    assert members.member_view(hq.db, ADMIN, "M000001")["balance"] == 20000 - 500
    with pytest.raises(HqError) as gone:
        ingest.retry_quarantined(hq.db, EAST, "demo-001", 3, AT)
    assert gone.value.code == "not_quarantined"
    stores.resolve_quarantined(hq.db, EAST, "demo-001", 2, "bytes lost in the store's crash; booked by hand", AT)
    with pytest.raises(HqError) as twice:
        stores.resolve_quarantined(hq.db, EAST, "demo-001", 2, "again", AT)
    assert twice.value.code == "already_resolved"
    shown = stores.quarantine(hq.db, EAST, "demo-001")
    assert [(q["seq"], q["resolved"]["by"]) for q in shown] == [(2, "region-east")]
    assert stores.store_view(hq.db, EAST, "demo-001")["quarantined"] == 0
    assert stores.store_view(hq.db, EAST, "demo-001")["acked_seq"] == 3
    assert [e.action for e in audit.audit_page(hq.db, AUDITOR, target="store:demo-001").entries] == [
        "store.quarantine_resolve", "store.quarantine_retry", "store.quarantine_retry"]


def test_the_dashboard_counts_each_stores_day_and_says_how_fresh_it_is(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    now = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)  # 20:00 in Shanghai
    today, last_week = "2026-05-01T19:30:00.000+08:00", "2026-04-24T09:15:00.000+08:00"
    ingest.ingest(hq.db, Batch("demo-001", 3, [_sale(1, today, "M000001"), _sale(2, today, total=3000),
                                               _sale(3, last_week, total=5000)]), now.isoformat())
    ingest.ingest(hq.db, Batch("demo-002", 1, [_sale(1, today, total=800)]),
                  (now - datetime.timedelta(hours=3)).isoformat())  # its last batch came three hours ago
    d = dashboard.chain_dashboard(hq.db, ADMIN, now)
    first, second = d.stores
    assert (first.store_id, first.sales, first.tickets, first.member_tickets, first.last_week_sales) == (
        "demo-001", 4000, 2, 1, 5000)
    assert (first.basket, first.member_share_bp, first.online) == (2000, 5000, True)
    assert (second.store_id, second.sales, second.online) == ("demo-002", 800, False)
    assert second.last_seen is not None and second.last_seen.startswith("2026-05-01T09:00")
    assert (d.sales, d.tickets, d.hourly[19], d.hourly_last_week[9]) == (4800, 3, 4800, 5000)
    assert [(r.region, r.sales, r.offline) for r in d.regions] == [("华东 East", 4000, 0), ("华北 North", 800, 1)]
    scoped = dashboard.chain_dashboard(hq.db, EAST, now)
    assert (scoped.sales, [s.store_id for s in scoped.stores]) == (4000, ["demo-001"])
    moved = dashboard.live_signature(hq.db, EAST)
    ingest.ingest(hq.db, Batch("demo-001", 4, [_sale(4, today)]), now.isoformat())
    assert dashboard.live_signature(hq.db, EAST) != moved


def test_users_are_checked_and_the_last_admin_stays(hq: Hq) -> None:
    made = users.create_user(hq.db, ADMIN, users.UserIn("ops-2", "long-enough", "hq_operator"), AT)
    assert (made.role, made.regions, made.active) == ("hq_operator", [], True)
    for req, code in [(users.UserIn("Bad Name", "long-enough", "finance"), "bad_username"),
                      (users.UserIn("ops-2", "long-enough", "finance"), "user_exists"),
                      (users.UserIn("r1", "long-enough", "region_manager"), "regions_required"),
                      (users.UserIn("r1", "long-enough", "region_manager", ["火星 Mars"]), "unknown_region"),
                      (users.UserIn("r1", "long-enough", "finance", ["华东 East"]), "regions_not_allowed"),
                      (users.UserIn("r1", "long-enough", "superuser"), "bad_role")]:
        with pytest.raises(HqError) as exc:
            users.create_user(hq.db, ADMIN, req, AT)
        assert exc.value.code == code
    with pytest.raises(HqError) as last:
        users.set_role(hq.db, ADMIN, "hq", users.RoleIn("finance"), AT)
    assert last.value.code == "last_admin"
    users.set_role(hq.db, ADMIN, "ops-2", users.RoleIn("hq_admin"), AT)
    assert users.set_role(hq.db, ADMIN, "hq", users.RoleIn("finance"), AT).role == "finance"


def test_an_hq_database_from_before_gains_the_new_tables_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE hq_users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL);
        CREATE TABLE hq_stores (store_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', region TEXT NOT NULL
            DEFAULT '', public_key BLOB, base_seq BIGINT NOT NULL DEFAULT 0, acked_seq BIGINT NOT NULL DEFAULT 0,
            head_seq BIGINT NOT NULL DEFAULT 0, sales BIGINT NOT NULL DEFAULT 0, last_seen TEXT, paired_at TEXT,
            demo BIGINT NOT NULL DEFAULT 0);
        INSERT INTO hq_users VALUES ('old-admin', 'x', 'hq_admin');
        INSERT INTO hq_stores (store_id, name, region) VALUES ('s1', 'One', '西南 Southwest');
    """)
    conn.close()
    db = open_db(str(path))
    try:
        create_schema(db)
        create_schema(db)  # and again: idempotent
        with db.read() as tx:
            assert tx.one("SELECT active, display_name FROM hq_users WHERE username = 'old-admin'") == (1, "")
            assert tx.one("SELECT timezone, address FROM hq_stores") == ("Asia/Shanghai", "")
            assert tx.all("SELECT region FROM hq_regions") == [("西南 Southwest",)]
            assert tx.one("SELECT count(*) FROM hq_audit") == (0,)
    finally:
        db.close()


def test_every_admin_endpoint_and_console_route_names_a_known_permission() -> None:
    known = permission_table()
    public = {"healthz", "login", "me", "logout"}  # me and logout need a token, and no permission
    for route in [*admin.ROUTES, *user_api.ROUTES]:
        source = inspect.getsource(route.fn)
        named = re.findall(r'acting\(request, "([a-z_.]+)"\)', source)
        if route.fn.__name__ in public:
            continue
        assert len(named) == 1 and named[0] in known, route.fn.__name__
    for module in PAGES:
        for route in module.ROUTES:
            opt = route.opt
            assert opt.get("hq_public") or opt.get("hq_permission") in known, route


def test_five_wrong_passwords_lock_the_name_for_a_while(hq: Hq) -> None:
    users.create_user(hq.db, ADMIN, users.UserIn("guessme", "right-password", "finance"), AT)
    for _ in range(auth.MAX_FAILURES):
        with pytest.raises(HqError) as wrong:
            auth.login(hq.db, "guessme", "wrong-password")
        assert wrong.value.code == "bad_credentials"
    with pytest.raises(HqError) as locked:
        auth.login(hq.db, "guessme", "right-password")  # even the right one, while locked
    assert (locked.value.status, locked.value.code) == (429, "locked_out")
    with hq.db.write() as tx:  # the lock has run out
        tx.run("UPDATE hq_login_failures SET locked_until = 0 WHERE username = 'guessme'")
    assert auth.login(hq.db, "guessme", "right-password")[1] == "finance"
    assert _count(hq, "SELECT count(*) FROM hq_login_failures") == 0


def test_a_store_that_only_polls_the_feed_counts_as_online(hq: Hq) -> None:
    _pair(hq, "demo-002")
    assert [s.online for s in dashboard.chain_dashboard(hq.db, ADMIN).stores if s.store_id == "demo-002"] == [False]
    hq.heard_from("demo-002")
    assert hq.flush_contacts() == 1 and hq.flush_contacts() == 0
    seen = [s for s in dashboard.chain_dashboard(hq.db, ADMIN).stores if s.store_id == "demo-002"][0]
    assert (seen.online, seen.last_seen is not None, seen.last_contact is not None) == (True, True, True)


def test_the_first_admin_of_a_real_hq_comes_from_the_shell(tmp_path: Path) -> None:
    db_path = str(tmp_path / "hq.sqlite3")
    env = sync_support.clean_env(BACKROOM_HQ_PASSWORD="first-admin-pw")
    added = sync_support.cli("hq", "user", "add", "boss", "--role", "hq_admin", "--db", db_path, env=env)
    assert added.returncode == 0, added.stderr
    assert msgspec.json.decode(added.stdout.strip().splitlines()[-1]) == {"username": "boss", "role": "hq_admin",
                                                                          "regions": []}
    again = sync_support.cli("hq", "user", "add", "boss", "--role", "hq_admin", "--db", db_path, env=env)
    assert again.returncode == 1 and "exists" in again.stderr
    short = sync_support.cli("hq", "user", "add", "b2", "--role", "hq_admin", "--db", db_path,
                             env=sync_support.clean_env(BACKROOM_HQ_PASSWORD="short"))
    assert short.returncode == 2
    db = open_db(db_path)
    try:
        assert auth.login(db, "boss", "first-admin-pw")[1] == "hq_admin"
        with db.read() as tx:
            assert tx.all("SELECT actor, action, target FROM hq_audit") == [("cli", "user.create", "user:boss")]
            assert tx.one("SELECT count(*) FROM hq_users") == (1,)
    finally:
        db.close()


RAW_HOURLY = """SELECT store_id, day, CAST(substr(at, 12, 2) AS BIGINT), count(*), sum(total),
                       sum(CASE WHEN member_id IS NULL THEN 0 ELSE 1 END)
                FROM hq_sales GROUP BY store_id, day, CAST(substr(at, 12, 2) AS BIGINT) ORDER BY 1, 2, 3"""
ROLLUP = "SELECT store_id, day, hour, tickets, total, member_tickets FROM hq_sales_hourly ORDER BY 1, 2, 3"


def _plain(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows with numbers as ints (PostgreSQL's sum() is a Decimal)."""
    return [tuple(v if isinstance(v, str) else int(v) for v in row) for row in rows]  # type: ignore[call-overload]


def test_the_hourly_rollup_matches_the_sales_and_is_built_for_an_older_hq(hq: Hq) -> None:
    _pair(hq, "demo-001")
    _pair(hq, "demo-002")
    rows = [_sale(n, f"2026-05-01T{8 + n % 5:02d}:15:00.000+08:00", "M000001" if n % 2 else None, total=100 * n)
            for n in range(1, 21)]
    ingest.ingest(hq.db, Batch("demo-001", 20, rows[:12]), AT)
    ingest.ingest(hq.db, Batch("demo-001", 20, rows[8:]), AT)  # overlapping resend: counted once
    ingest.ingest(hq.db, Batch("demo-002", 3, [_sale(n, "2026-05-02T23:59:00.000+08:00") for n in (1, 2, 3)]), AT)
    junk = OutRow(4, "sale", "junk", AT, msgspec.Raw(b"\x93"))
    ingest.ingest(hq.db, Batch("demo-002", 5, [junk, _sale(5, "2026-05-02T10:00:00.000+08:00",
                                                           member_id="M000001", value_spent=300, total=300)]), AT)
    members.grant(hq.db, ADMIN, hq.private_key, "M000001", "demo-002", "value", 300, AT)
    assert ingest.retry_quarantined(hq.db, ADMIN, "demo-002", 5, AT) is True  # a retried sale joins the rollup
    with hq.db.read() as tx:
        raw, rollup = _plain(tx.all(RAW_HOURLY)), _plain(tx.all(ROLLUP))
    assert rollup == raw
    assert sum(r[3] for r in rollup) == 24
    with hq.db.write() as tx:  # an HQ from before the rollup: its sales, no rollup rows
        tx.run("DELETE FROM hq_sales_hourly")
    create_schema(hq.db)
    with hq.db.read() as tx:
        assert _plain(tx.all(ROLLUP)) == rollup
