"""Personal data across the chain with a real HQ (SQLite and PostgreSQL) and two real hubs: after
sign-ups, lookups, sales with members, exports and erasures, no demo phone number and no phone of a
member signed up during the test is anywhere in the bytes of either hub's data directory (database,
WAL, SHM, keys, backups, every file), the hubs' and HQ's logs, or HQ's database files; an erase at a
store reaches HQ and the other store, and an erase at HQ reaches both stores."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sync_support
from sync_support import HqServer, SyncHub, sell, wait_until

from edge.members import pii

pg_cluster = sync_support.pg_cluster  # fixtures shared by the sync tests
hq_db_url = sync_support.hq_db_url

REPO = Path(__file__).resolve().parent.parent
FAST = {"idle_s": "0.05", "long_poll_s": "2", "digest_interval_s": "1", "backoff_max_s": "0.5"}
DEMO_PHONES = [r["phone"] for r in csv.DictReader((REPO / "edge/seed/demo/members.csv").open(encoding="utf-8"))
               if r["phone"]]
NEW_PHONE = "13566661234"


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file())


def _digit_windows(data: bytes, widths: set[int]) -> set[bytes]:
    """Every run of `width` consecutive digits in the bytes, for each width: one pass over the data (a database
    cluster is tens of megabytes; searching it once per phone took minutes)."""
    windows: set[bytes] = set()
    shortest = min(widths)
    for run in re.finditer(rb"[0-9]{%d,}" % shortest, data):
        digits = run.group()
        for width in widths:
            windows.update(digits[i:i + width] for i in range(len(digits) - width + 1))
    return windows


def _phones_found(phones: list[str], *roots: Path) -> list[tuple[str, str]]:
    """(file, phone) for every phone whose digits are in a file's bytes."""
    found = []
    checked = 0
    for path in _files(*roots):
        try:
            data = path.read_bytes()
        except (FileNotFoundError, PermissionError):
            continue  # a WAL checkpointed away between listing and reading
        checked += 1
        windows = _digit_windows(data, {len(phone) for phone in phones})
        found += [(str(path), phone) for phone in phones if phone.encode() in windows]
    assert checked > 0, roots
    return found


def test_the_byte_search_sees_a_phone_wherever_it_is(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "x.bin").write_bytes(b"\x00\x01" + NEW_PHONE.encode() + b"\xff")
    assert _phones_found([NEW_PHONE, DEMO_PHONES[0]], tmp_path) == [(str(tmp_path / "deep" / "x.bin"), NEW_PHONE)]


def _manager(hub: SyncHub) -> httpx.Client:
    r = httpx.post(hub.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"},
                   timeout=10)
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)


def _synced(hq: HqServer, hub: SyncHub, store: str) -> bool:
    head = hub.query("SELECT coalesce(max(seq), 0) FROM outbox")[0][0]
    acked = hq.query("SELECT acked_seq FROM hq_stores WHERE store_id = ?", (store,))
    return bool(acked) and acked[0][0] == head


def _erased_at(hub: SyncHub, member_id: str) -> object:
    rows = hub.query("SELECT erased_at FROM members WHERE member_id = ?", (member_id,))
    return rows[0][0] if rows else None


def test_no_phone_is_left_in_the_bytes_of_either_hub_or_hq_and_erasures_reach_every_store(
        hq_db_url: str, tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path).start()
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()
    b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST).start()
    try:
        wait_until(lambda: a.paired() and b.paired(), 20, what="both demo stores paired")
        # Every store hashes with the chain's lookup key, which HQ handed over at pairing.
        hq_keys = pii.load(Path(hq_db_url).with_name("hq.pii.key")) if not hq_db_url.startswith("postgres") \
            else pii.load(tmp_path / f"hq-{hq.port}.pii.key")
        for hub in (a, b):
            assert pii.load(hub.data_dir / pii.KEY_FILE).lookup_key == hq_keys.lookup_key
            assert pii.load(hub.data_dir / pii.KEY_FILE).data_key != hq_keys.data_key

        # Real traffic: a sign-up at A, lookups at both stores, sales naming members at both.
        man_a, man_b, till_a, till_b = _manager(a), _manager(b), a.till(), b.till()
        made = man_a.post("/api/v1/members", json={"phone": NEW_PHONE, "name": "隐私测试", "card_no": "PV00001"})
        assert made.status_code in (200, 201), made.text
        new_id = made.json()["member_id"]
        assert till_a.get("/api/v1/members/lookup", params={"phone": NEW_PHONE}).json()["phone"] == "135****1234"
        assert man_a.get("/api/v1/members/lookup", params={"phone": NEW_PHONE}).json()["phone"] == NEW_PHONE
        for phone, member_id in ((DEMO_PHONES[0], "M000001"), (DEMO_PHONES[2], "M000003")):
            for till in (till_a, till_b):  # hashes re-made under the chain's key at pairing still find them
                assert till.get("/api/v1/members/lookup", params={"phone": phone}).json()["member_id"] == member_id
        assert man_b.get("/api/v1/members/lookup", params={"phone": DEMO_PHONES[1]}).status_code == 200
        for till, member_id in ((till_a, new_id), (till_a, "M000001"), (till_b, "M000002"), (till_b, "M000003")):
            sold = sell(till, 1, member_id=member_id)
            assert sold.status_code == 201, sold.text
        wait_until(lambda: _synced(hq, a, "demo-001") and _synced(hq, b, "demo-002"), 20, what="both stores synced")
        assert hq.query("SELECT count(*) FROM hq_members WHERE member_id = ?", (new_id,)) == [(1,)]

        # HQ holds the new member sealed, and gives it back only through an audited export.
        admin = hq.admin()
        exported = admin.get(f"/hq/v1/members/{new_id}/export")
        assert exported.status_code == 200, exported.text
        assert (exported.json()["phone"], exported.json()["name"]) == (NEW_PHONE, "隐私测试")
        assert [s["store_id"] for s in exported.json()["sales"]] == ["demo-001"]
        audit = admin.get("/hq/v1/members/audit", params={"member_id": new_id}).json()
        assert [(e["action"], e["username"]) for e in audit["entries"]] == [("export", "hq")]
        assert admin.get("/hq/v1/members/audit", params={"limit": "9" * 30}).status_code == 400

        # An erase at store A reaches HQ and store B; an erase at HQ reaches both stores.
        assert man_a.post("/api/v1/members/M000003/erase").status_code == 200
        wait_until(lambda: hq.query("SELECT erased_at FROM hq_members WHERE member_id = 'M000003'")[0][0], 15,
                   what="HQ erased M000003")
        wait_until(lambda: _erased_at(b, "M000003"), 15, what="store B erased M000003")
        assert till_b.get("/api/v1/members/lookup", params={"phone": DEMO_PHONES[2]}).status_code == 404
        assert hq.query("SELECT pii, phone_hash, tags FROM hq_members WHERE member_id = 'M000003'") == \
            [(None, None, "[]")]
        erased = admin.post(f"/hq/v1/members/{new_id}/erase")
        assert erased.status_code == 200, erased.text
        assert admin.post(f"/hq/v1/members/{new_id}/erase").status_code == 409
        wait_until(lambda: _erased_at(a, new_id), 15, what="store A erased the new member")
        assert till_a.get("/api/v1/members/lookup", params={"phone": NEW_PHONE}).status_code == 404
        assert hq.query("SELECT count(*) FROM hq_sales WHERE member_id = ?", (new_id,)) == [(1,)]  # ledgers stay
        actions = [e["action"] for e in admin.get("/hq/v1/members/audit").json()["entries"]]
        assert actions.count("erase") == 2

        # While everything runs (WAL and SHM files present) and again after it stopped.
        phones = [*DEMO_PHONES, NEW_PHONE]
        hq_files = [tmp_path / "pg-not-used"] if hq_db_url.startswith("postgres") else \
            list(Path(hq_db_url).parent.glob(Path(hq_db_url).name + "*"))
        logs = list(tmp_path.glob("*.log"))
        assert _phones_found(phones, a.data_dir, b.data_dir, *logs, *[f for f in hq_files if f.exists()]) == []
    finally:
        for proc in (b, a, hq):
            proc.stop()
    roots: list[Path] = [a.data_dir, b.data_dir, *tmp_path.glob("*.log")]
    if hq_db_url.startswith("postgres"):
        roots.append(pg_data_dir(hq_db_url))
    else:
        roots += list(Path(hq_db_url).parent.glob(Path(hq_db_url).name + "*"))
    assert _phones_found([*DEMO_PHONES, NEW_PHONE], *roots) == []


def pg_data_dir(url: str) -> Path:
    """The PostgreSQL cluster's data directory (tables, WAL segments) that serves `url`."""
    cluster = sync_support._CLUSTER[0]
    return cluster.data


def test_hq_reads_a_database_it_wrote_before_sealing(hq_db_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An HQ database with plaintext members and a plaintext member feed entry (as HQ wrote them
    before this version) is sealed on the next start; a SQLite file keeps no copy of the phone
    (PostgreSQL's WAL does until it is recycled: docs/privacy.md)."""
    import msgspec

    from hq_sync.server.service import pii as hq_pii
    from hq_sync.server.service.feed import read_feed
    from hq_sync.server.storage.db import open_db
    from hq_sync.server.storage.schema import SCHEMA
    from hq_sync.wire import MemberRow, MembersPut, feed_body_decoder, feed_body_encoder

    sqlite = not hq_db_url.startswith("postgres")
    key_file = tmp_path / "hq.pii.key"
    monkeypatch.setenv("BACKROOM_HQ_KEY_FILE", str(key_file))
    old_schema = SCHEMA.replace(",\n    phone_hash TEXT,\n    card_hash TEXT,\n    phone_last4 TEXT,\n    pii BLOB,\n"
                                "    erased_at TEXT\n);", "\n);")
    old_schema = re.sub(r"CREATE TABLE IF NOT EXISTS hq_pii_audit \(.*?\);\nCREATE INDEX [^;]*;", "", old_schema,
                        flags=re.S)
    assert "phone_hash" not in old_schema
    old = open_db(hq_db_url)
    body = feed_body_encoder.encode(MembersPut(members=[MemberRow("M9", "gold", "13712345678", None, "老会员", None,
                                                                  [], None, "2026-01-01")]))
    with old.write() as tx:
        for statement in old.type_words(old_schema).split(";"):
            if statement.strip():
                tx.run(statement)
        tx.run("INSERT INTO hq_members (member_id, tier, phone, card_no, name, birthday, created_at) "
               "VALUES ('M9', 'gold', '13712345678', 'OLD00001', '老会员', '1970-01-01', '2026-01-01')")
        tx.run("INSERT INTO hq_feed (seq, store_id, kind, at, body, sig) VALUES (1, 's1', 'members', 'x', ?, ?)",
               (body, b"sig"))
    old.close()
    if sqlite:
        assert b"13712345678" in Path(hq_db_url).read_bytes()  # closed: checkpointed into the file

    db = open_db(hq_db_url)
    try:
        from hq_sync.server.storage.schema import create_schema

        create_schema(db)
        create_schema(db)  # idempotent
        with db.read() as tx:
            assert hq_pii.member_rows(tx, "M9")[0].phone == "13712345678"
            assert hq_pii.members_by_phone(tx, "137 1234 5678") == ["M9"]
            assert tx.all("SELECT phone, name, phone_last4 FROM hq_members") == [(None, "", "5678")]
        page = read_feed(db, "s1", 0)
        put = feed_body_decoder.decode(page.entries[0].body)
        assert isinstance(put, MembersPut) and put.members[0].phone == "13712345678"
        with db.read() as tx:
            assert tx.all("SELECT count(*) FROM hq_feed WHERE body = ?", (body,)) == [(0,)]  # sealed in place
        if sqlite:
            for f in tmp_path.iterdir():
                assert b"13712345678" not in f.read_bytes(), f.name
        assert msgspec.json.decode(key_file.read_bytes())["lookup_key"]
    finally:
        db.close()
