"""Members' personal data (docs/privacy.md): the sealing and hashing functions, the audit of unmasked
reads, export and erase on a real hub, and the migration of a database written before sealing."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from cryptography.exceptions import InvalidTag

from edge.members import pii
from hq_sync.protocol import MemberDelta, MemberErasedDelta, delta_decoder
from tests.conftest import Hub

REPO = Path(__file__).resolve().parent.parent

# -- the functions ----------------------------------------------------------------------------------------------


def test_sealed_personal_data_opens_only_for_its_member_and_key() -> None:
    k = pii.Keys.generate()
    person = pii.Personal(phone="13800138000", name="董颖", birthday="1971-05-09", card_no="8800000001")
    blob = k.seal_personal("M000001", person)
    assert b"13800138000" not in blob and "董颖".encode() not in blob and b"8800000001" not in blob
    assert k.open_personal("M000001", blob) == person
    assert k.seal_personal("M000001", person) != blob  # a fresh nonce every time
    with pytest.raises(InvalidTag):
        k.open_personal("M000002", blob)  # copied onto another member
    with pytest.raises(InvalidTag):
        pii.Keys.generate().open_personal("M000001", blob)  # another installation's key
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(InvalidTag):
        k.open_personal("M000001", tampered)
    assert k.open_personal("M000001", None) == pii.Personal()  # erased: nothing


@pytest.mark.parametrize(("written", "same"), [
    ("13800138000", True), ("138 0013 8000", True), ("138-0013-8000", True), ("+86 138 0013 8000", True),
    ("008613800138000", True), ("13800138001", False), ("3800138000", False),
])
def test_the_phone_hash_is_over_the_normalised_number(written: str, same: bool) -> None:
    k = pii.Keys.generate()
    assert (k.phone_hash(written) == k.phone_hash("13800138000")) is same


def test_hashes_depend_on_the_lookup_key_and_the_kind() -> None:
    a, b = pii.Keys.generate(), pii.Keys.generate()
    assert a.phone_hash("13800138000") != b.phone_hash("13800138000")
    same_lookup = pii.Keys(b.data_key, a.lookup_key)
    assert same_lookup.phone_hash("13800138000") == a.phone_hash("13800138000")  # every store and HQ agree
    assert a.card_hash("13800138000") != a.phone_hash("13800138000")
    assert a.phone_hash("") is None and a.card_hash(None) is None and a.phone_hash("abc") is None
    assert len(a.phone_hash("13800138000") or "") == 64 and "13800138000" not in (a.phone_hash("13800138000") or "")
    assert pii.last4("+86 138 0013 8000") == "8000" and pii.last4(None) is None


def test_the_key_file_is_made_once_private_and_keeps_the_data_key_when_the_lookup_key_changes(tmp_path: Path) -> None:
    path = tmp_path / "data" / pii.KEY_FILE
    first = pii.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pii.forget_cached()
    again = pii.load(path)
    assert (again.data_key, again.lookup_key) == (first.data_key, first.lookup_key)
    chain_key = os.urandom(32)
    changed = pii.set_lookup_key(path, chain_key)
    assert (changed.data_key, changed.lookup_key, changed.lookup_from) == (first.data_key, chain_key, "hq")
    pii.forget_cached()
    assert pii.load(path).lookup_key == chain_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        pii.load(tmp_path / "elsewhere" / pii.KEY_FILE, create=False)


# -- on a real hub --------------------------------------------------------------------------------------------------


def _audit(hub: Hub, member_id: str) -> list[tuple[object, ...]]:
    return hub.query("SELECT user_id, till_id, fields, action, via FROM pii_audit WHERE member_id = ? "
                     "ORDER BY audit_id", (member_id,))


def test_a_managers_unmasked_read_is_audited_a_cashiers_masked_one_is_not(hub: Hub) -> None:
    cashier, manager = hub.login("cashier"), hub.login("manager")
    before = _audit(hub, "M000002")
    masked = cashier.get("/api/v1/members/lookup", params={"phone": "159 0208 7464"})
    assert masked.status_code == 200 and masked.json()["phone"] == "159****7464"
    assert masked.json()["member_id"] == "M000002" and masked.json()["phone_masked"] is True
    assert _audit(hub, "M000002") == before
    full = manager.get("/api/v1/members/lookup", params={"phone": "15902087464"})
    assert full.status_code == 200 and full.json()["phone"] == "15902087464"
    by_id = manager.get("/api/v1/members/M000002")
    assert by_id.json()["name"] == "谭刚磊"
    rows = _audit(hub, "M000002")[len(before):]
    assert [r[2:] for r in rows] == [("phone,name,birthday,card_no", "read", "api")] * 2
    [(manager_id,)] = hub.query("SELECT user_id FROM users WHERE username = 'manager'")
    assert {r[0] for r in rows} == {manager_id}
    page = manager.get("/api/v1/members/audit", params={"member_id": "M000002"})
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == len(_audit(hub, "M000002"))
    assert body["entries"][0]["member_id"] == "M000002" and body["entries"][0]["via"] == "api"
    assert cashier.get("/api/v1/members/audit").status_code == 403
    assert hub.login("guide").get("/api/v1/members/M000002/export").status_code == 403


def test_lookup_by_card_and_the_search_by_last_four_go_through_hashes(hub: Hub) -> None:
    manager = hub.login("manager")
    assert manager.get("/api/v1/members/lookup", params={"card": "8800000003"}).json()["member_id"] == "M000003"
    assert manager.get("/api/v1/members/lookup", params={"phone": "13800000000"}).status_code == 404
    assert hub.query("SELECT phone_last4 FROM members WHERE member_id = 'M000003'") == [("3834",)]
    assert hub.query("SELECT count(*) FROM members WHERE phone IS NOT NULL OR name != '' OR birthday IS NOT NULL "
                     "OR card_no IS NOT NULL") == [(0,)]


def test_bad_audit_paging_is_a_400(hub: Hub) -> None:
    manager = hub.login("manager")
    for params in ({"limit": "1" + "0" * 30}, {"offset": "-1"}, {"limit": "0"}, {"member_id": "x" * 65}):
        resp = manager.get("/api/v1/members/audit", params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert {"code", "message"} <= set(resp.json())


def test_export_holds_the_profile_and_histories_and_is_audited(hub: Hub) -> None:
    manager = hub.login("manager")
    till = hub.login("cashier")
    topup = till.post("/api/v1/members/M000004/topups",
                      json={"topup_id": "5b0c39a6-3f2e-4c55-9d41-7a1f5d9e0a01", "amount": 5000, "method": "cash"})
    assert topup.status_code == 201, topup.text
    resp = manager.get("/api/v1/members/M000004/export")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert (doc["member_id"], doc["phone"], doc["name"], doc["card_no"]) == \
        ("M000004", "18747193251", "邓磊", "8800000004")
    assert doc["balance"] == 5000 and doc["points"] == 174
    assert [e["kind"] for e in doc["points_ledger"]] == ["opening"]
    assert [(e["delta"], e["kind"]) for e in doc["value_ledger"]] == [(5000, "topup")]
    assert [t["topup_id"] for t in doc["topups"]] == ["5b0c39a6-3f2e-4c55-9d41-7a1f5d9e0a01"]
    assert [b["earned"] for b in doc["points_batches"]] == [174]
    assert doc["store_id"] == "demo-001" and doc["erased_at"] is None
    assert _audit(hub, "M000004")[-1][2:] == ("phone,name,birthday,card_no", "export", "api")
    assert manager.get("/api/v1/members/NOPE/export").status_code == 404


def test_erase_removes_the_person_keeps_the_ledgers_and_leaves_a_tombstone(fresh_hub: Hub) -> None:
    hub = fresh_hub
    manager, till = hub.login("manager"), hub.login("cashier")
    sale = till.post("/api/v1/sales", json={
        "sale_id": "0d5f8c1e-2b7a-4e9c-8f00-3a6b9c2d1e01", "till_id": "T1", "member_id": "M000001",
        "lines": [{"sku": "SKU00027", "qty": 1}], "tenders": [{"method": "cash", "amount": 100000}]})
    assert sale.status_code == 201, sale.text
    ledgers_before = hub.query("SELECT count(*) FROM points_ledger WHERE member_id = 'M000001'")
    assert till.post("/api/v1/members/M000001/erase").status_code == 403
    resp = manager.post("/api/v1/members/M000001/erase")
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["member_id"] == "M000001" and done["fields"] == ["phone", "name", "birthday", "card_no", "tags"]
    assert hub.query("SELECT pii, phone_hash, card_hash, phone_last4, tags FROM members WHERE member_id = 'M000001'") \
        == [(None, None, None, None, "[]")]
    assert manager.get("/api/v1/members/lookup", params={"phone": "13800138000"}).status_code == 404
    assert manager.get("/api/v1/members/lookup", params={"card": "8800000001"}).status_code == 404
    member = manager.get("/api/v1/members/M000001").json()
    assert (member["phone"], member["name"], member["birthday"], member["card_no"], member["tags"]) == \
        (None, "", None, None, [])
    assert member["points"] > 0  # balances stay
    assert hub.query("SELECT count(*) FROM points_ledger WHERE member_id = 'M000001'") == ledgers_before
    assert hub.query("SELECT count(*) FROM sales WHERE member_id = 'M000001'") == [(1,)]
    [(seq, body)] = hub.query("SELECT seq, body FROM journal WHERE kind = 'member_erase'")
    assert seq == done["journal_seq"]
    tomb = msgspec.json.decode(body)
    assert tomb["data"]["member_id"] == "M000001" and tomb["ref"] == "M000001" and b"13800138000" not in body
    [(payload,)] = hub.query("SELECT payload FROM outbox WHERE kind = 'member_erased'")
    delta = delta_decoder.decode(payload)
    assert isinstance(delta, MemberErasedDelta) and delta.member_id == "M000001" and delta.journal_seq == seq
    verify = hub.backroom("journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert _audit(hub, "M000001")[-1][2:] == ("phone,name,birthday,card_no,tags", "erase", "api")
    again = manager.post("/api/v1/members/M000001/erase")
    assert again.status_code == 409 and again.json()["code"] == "already_erased"
    assert manager.post("/api/v1/members/NOPE/erase").status_code == 404
    exported = manager.get("/api/v1/members/M000001/export").json()
    assert exported["phone"] is None and exported["erased_at"] == done["erased_at"]
    assert len(exported["sales"]) == 1
    assert exported["sales"][0]["lines"][0]["sku"] == "SKU00027" and exported["sales"][0]["returns"] == []


def test_a_signed_up_members_outbox_row_is_sealed_and_an_erase_strips_it(fresh_hub: Hub) -> None:
    hub = fresh_hub
    manager = hub.login("manager")
    made = manager.post("/api/v1/members", json={"phone": "13311112222", "name": "测试", "card_no": "CARD9999"})
    assert made.status_code in (200, 201), made.text
    member_id = made.json()["member_id"]
    [(payload,)] = hub.query("SELECT payload FROM outbox WHERE kind = 'member' AND ref = ?", (member_id,))
    assert b"13311112222" not in payload and b"CARD9999" not in payload
    keys = pii.load(hub.data_dir / pii.KEY_FILE)
    sent = delta_decoder.decode(keys.open(payload, b"outbox:member"))
    assert isinstance(sent, MemberDelta) and sent.phone == "13311112222"
    assert manager.post(f"/api/v1/members/{member_id}/erase").status_code == 200
    [(payload,)] = hub.query("SELECT payload FROM outbox WHERE kind = 'member' AND ref = ?", (member_id,))
    stripped = delta_decoder.decode(keys.open(payload, b"outbox:member"))
    assert isinstance(stripped, MemberDelta) and (stripped.phone, stripped.name, stripped.card_no) == (None, "", None)


def test_the_tablet_audits_full_phones_and_shows_the_audit_to_managers(fresh_hub: Hub) -> None:
    from tests.ui_support import post_form, ui_login

    hub = fresh_hub
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/members/M000005")
    assert page.status_code == 200
    assert hub.query("SELECT fields, action, via FROM pii_audit WHERE member_id = 'M000005'") == \
        [("phone,name,birthday,card_no", "read", "tablet")]
    listing = tablet.get("/ui/members")
    assert "个人信息访问记录" in listing.text and "M000005" in listing.text
    guide = ui_login(hub, "guide")
    assert "个人信息访问记录" not in guide.get("/ui/members").text
    audited = hub.query("SELECT count(*) FROM pii_audit")
    guide.get("/ui/members/M000006")  # masked: no audit
    assert hub.query("SELECT count(*) FROM pii_audit") == audited
    export = tablet.get("/ui/members/M000005/export")
    assert export.status_code == 200 and export.json()["member_id"] == "M000005"
    wrong = post_form(tablet, "/ui/members/M000005", "/ui/members/M000005/erase", {"confirm": "M000006"})
    assert wrong.status_code == 303
    assert hub.query("SELECT erased_at FROM members WHERE member_id = 'M000005'") == [(None,)]
    erased = post_form(tablet, "/ui/members/M000005", "/ui/members/M000005/erase", {"confirm": "M000005"})
    assert erased.status_code == 303
    assert hub.query("SELECT erased_at IS NOT NULL, pii FROM members WHERE member_id = 'M000005'") == [(1, None)]
    assert "已删除" in tablet.get("/ui/members/M000005").text


# -- a database from before sealing ---------------------------------------------------------------------------


def test_the_migration_seals_existing_members_and_leaves_no_plaintext_in_the_files(tmp_path: Path) -> None:
    """A hub database as m096 left it, with plaintext members and a member outbox row, is sealed by
    m120 on the next start, and VACUUM/WAL truncation leave no copy of the phones anywhere."""
    from sqlite_utils import Database as SuDb

    from edge.storage import migrations
    from edge.storage.db import Database, connect

    path = tmp_path / "hub.sqlite3"
    conn = connect(path)
    migrations.migrations.apply(SuDb(conn), stop_before="m120_member_privacy")
    conn.execute("INSERT INTO tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points) "
                 "VALUES ('regular', '普通', 'Regular', 0, 100, 0)")
    conn.execute("INSERT INTO members (member_id, phone, card_no, name, birthday, tier, created_at) "
                 "VALUES ('M1', '13955556666', 'CARD1234', '旧会员', '1980-01-02', 'regular', '2026-01-01')")
    conn.execute("INSERT INTO outbox (seq, kind, ref, payload, created_at) VALUES (1, 'member', 'M1', ?, '2026-01-01')",
                 (msgspec.msgpack.encode(MemberDelta(member_id="M1", tier="regular", at="2026-01-01",
                                                     phone="13955556666")),))
    conn.close()
    assert b"13955556666" in path.read_bytes()  # closed: the WAL is checkpointed into the file

    db = Database(path)
    try:
        from edge.members.service import find_member

        m = find_member(db.reader(), phone="13955556666", show_phone=True)
        assert m is not None and (m.member_id, m.name, m.birthday, m.card_no) == \
            ("M1", "旧会员", "1980-01-02", "CARD1234")
        for f in tmp_path.iterdir():
            assert b"13955556666" not in f.read_bytes(), f.name
            assert b"CARD1234" not in f.read_bytes(), f.name
        with pytest.raises(sqlite3.IntegrityError, match="edge.members.pii"):
            db.write_sync(lambda c: c.execute("UPDATE members SET phone = '13955556666' WHERE member_id = 'M1'"))
        from hq_sync.hub_state import next_batch

        batch = next_batch(db.reader(), "demo-001", 0)
        sent = delta_decoder.decode(batch.rows[0].payload)
        assert isinstance(sent, MemberDelta) and sent.phone == "13955556666"
    finally:
        db.close()
    for f in tmp_path.iterdir():
        assert b"13955556666" not in f.read_bytes(), f.name


def test_a_hub_keeps_its_hashes_in_step_with_its_lookup_key(tmp_path: Path) -> None:
    """A lookup key replaced outside a committed pairing (a restored key file): the next start re-hashes."""
    data = tmp_path / "hub"
    done = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pii.forget_cached()
    pii.set_lookup_key(data / pii.KEY_FILE, os.urandom(32))
    from edge.members.service import find_member
    from edge.storage.db import Database

    db = Database(data / "hub.sqlite3")
    try:
        m = find_member(db.reader(), phone="13800138000", show_phone=False)
        assert m is not None and m.member_id == "M000001"
    finally:
        db.close()


def test_a_database_copied_without_its_key_file_does_not_open(tmp_path: Path) -> None:
    """A backup without the key file cannot be read: the hub refuses to start on it, naming the cause."""
    data = tmp_path / "hub"
    done = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (data / pii.KEY_FILE).unlink()
    pii.forget_cached()
    from edge.storage.db import Database

    with pytest.raises(pii.WrongKeyFile, match="another key file"):
        Database(data / "hub.sqlite3")


def test_the_access_log_never_holds_a_phone(tmp_path: Path) -> None:
    import httpx
    from hubproc import free_port, healthy

    assert pii.redact_url("GET /api/v1/members/lookup?phone=13800138000 HTTP/1.1") == \
        "GET /api/v1/members/lookup?phone=*** HTTP/1.1"
    assert pii.redact_url("/ui/members?q=138%200013&offset=0") == "/ui/members?q=***&offset=0"
    assert pii.redact_url("/api/v1/items?query=milk") == "/api/v1/items?query=milk"
    data = tmp_path / "hub"
    done = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--data", str(data), "--port", str(port),
                                 "--access-log", "--log-level", "info"], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "BACKROOM_DEVICES": "0"})
    try:
        base = f"http://127.0.0.1:{port}"
        assert healthy(proc, base, 30), log_path.read_text()
        token = httpx.post(base + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"},
                           timeout=10).json()["token"]
        found = httpx.get(base + "/api/v1/members/lookup", params={"phone": "13800138000"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert found.status_code == 200 and found.json()["phone"] == "13800138000"
        missing = httpx.get(base + "/api/v1/members/lookup", params={"card": "8800000002"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert missing.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    text = log_path.read_text("utf-8", errors="replace")
    assert "/api/v1/members/lookup?phone=***" in text and "card=***" in text
    assert "13800138000" not in text and "8800000002" not in text
