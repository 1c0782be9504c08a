"""Looking after the box (docs/appliance-care.md), on a real `backroom serve` and real SQLite files:

- `backroom backup` / `restore`: a verified archive with the members' key, retention, a dry run, a restore
  refused while the hub runs, the round trip (sales before the backup are back, the one after is gone,
  the journal verifies, members' personal data still reads);
- a damaged database: `backroom serve` exits 78 naming the last good backup; `doctor` fails its database
  check with the remedy; a clean stop lets the next start skip the check, a killed hub is checked;
- the journal under a clock set back: sequence order is authoritative;
- the small fixes: a 32-digit Z number is 400, every `$ref` of the OpenAPI document resolves, a
  standalone hub's stock elsewhere is 200 `standalone`, `/healthz` carries its components.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubproc import REPO, HubProcess, backroom, free_port, seed_demo

from edge.catalog.barcodes import VariableMeasureLayout
from edge.journal.chain import verify
from edge.sales.basket import quote_lines
from edge.sales.checkout import commit_sale, request_hash
from edge.sales.models import LineIn, SaleRequest, TenderIn
from edge.stock.ledger import Actor
from edge.storage.db import Database


def _sale(client: httpx.Client, sku: str = "SKU00033", qty: int = 1) -> dict[str, Any]:
    lines = [{"sku": sku, "qty": qty}]
    quote = client.post("/api/v1/quote", json={"lines": lines})
    assert quote.status_code == 200, quote.text
    body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines,
            "tenders": [{"method": "card", "amount": quote.json()["total"]}]}
    resp = client.post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


def _count(data: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{data / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A demo hub that has sold three times (devices off, as every conftest hub)."""
    root = tmp_path_factory.mktemp("box")
    seed_demo(root / "data")
    hub = HubProcess(root / "data").start()
    with hub.client() as till:
        for sku in ("SKU00033", "SKU00034", "SKU00033"):
            _sale(till, sku)
    yield hub
    hub.stop()


def test_a_backup_is_a_verified_archive_with_the_keys_and_retention_keeps_the_newest(
        box: HubProcess, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    taken = []
    for _ in range(3):
        done = backroom("backup", "--to", str(dest), "--data", str(box.data_dir), "--keep", "2")
        assert done.returncode == 0, done.stderr
        taken.append(_last_json(done.stdout))
    last = taken[-1]
    assert last["verified"] is True and last["store_id"] == "demo-001"
    assert last["journal"]["count"] == _count(box.data_dir, "journal")
    assert sorted(p.name for p in dest.glob("backroom-*.tar")) == sorted(Path(t["backup"]).name for t in taken[1:])
    with tarfile.open(last["backup"]) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert names[0] == "manifest.json"
    assert {"hub.sqlite3", "pii.key", "secret.key"} <= set(names)
    assert manifest["journal"] == last["journal"] and manifest["verified"] is True
    assert {f["path"] for f in manifest["files"]} == set(names) - {"manifest.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert Path(last["backup"]).stat().st_mode & 0o077 == 0  # it holds the members' key: owner only
    assert backroom("backup", "--to", str(dest), "--data", str(box.data_dir), "--keep", "0").returncode == 2


def test_a_tampered_backup_does_not_verify(box: HubProcess, tmp_path: Path) -> None:
    done = backroom("backup", "--to", str(tmp_path), "--data", str(box.data_dir), "--json")
    archive = Path(_last_json(done.stdout)["backup"])
    with tarfile.open(archive) as tar:
        member = tar.getmember("hub.sqlite3")
    raw = bytearray(archive.read_bytes())
    raw[member.offset_data + 4096 * 3 + 100] ^= 0xFF
    archive.write_bytes(bytes(raw))
    dry = backroom("restore", str(archive), "--data", str(box.data_dir), "--dry-run")
    assert dry.returncode == 1
    problems = _last_json(dry.stdout)["problems"]  # the zstd frame's checksum, or the manifest's sha256
    assert any(p.startswith("hub.sqlite3: the compressed copy is damaged") for p in problems) \
        or "hub.sqlite3: sha256 differs from the manifest" in problems, problems


def test_the_databases_are_compressed_and_an_uncompressed_format_1_backup_still_restores(
        box: HubProcess, tmp_path: Path) -> None:
    import zstandard

    done = backroom("backup", "--to", str(tmp_path), "--data", str(box.data_dir), "--json")
    assert done.returncode == 0, done.stderr
    archive = Path(_last_json(done.stdout)["backup"])
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    entry = next(f for f in manifest["files"] if f["path"] == "hub.sqlite3")
    assert manifest["format"] == 2 and entry["stored"] == "zstd"
    plain = zstandard.ZstdDecompressor().decompress(members["hub.sqlite3"])
    assert len(plain) == entry["bytes"] and len(members["hub.sqlite3"]) < len(plain) // 2

    # The same backup as the first version wrote it: every file as is, no `stored`.
    old = tmp_path / "old" / archive.name
    old.parent.mkdir()
    files = []
    for f in manifest["files"]:
        if f.pop("stored", "") == "zstd":
            members[f["path"]] = zstandard.ZstdDecompressor().decompress(members[f["path"]])
        files.append(f)
    body = json.dumps({**manifest, "format": 1, "files": files}).encode()
    with tarfile.open(old, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, raw in [("manifest.json", body), *((f["path"], members[f["path"]]) for f in files)]:
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    dry = backroom("restore", str(old), "--data", str(box.data_dir), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert _last_json(dry.stdout)["verified"] is True


def test_backup_and_restore_round_trip(box: HubProcess, tmp_path: Path) -> None:
    data = box.data_dir
    with box.client() as till:
        before = [_sale(till, "SKU00034") for _ in range(2)]
    done = backroom("backup", "--to", str(tmp_path / "b"), "--data", str(data))
    assert done.returncode == 0, done.stderr
    backup = _last_json(done.stdout)
    with box.client() as till:
        after = _sale(till, "SKU00033")
    sales_at_backup = _count(data, "sales") - 1

    refused = backroom("restore", backup["backup"], "--data", str(data))
    assert refused.returncode == 1 and "a hub is running on" in refused.stderr

    box.stop()
    try:
        dry = backroom("restore", backup["backup"], "--data", str(data), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        plan = _last_json(dry.stdout)
        assert (plan["verified"], plan["dry_run"], plan["restored"]) == (True, True, False)
        assert {"hub.sqlite3", "pii.key", "secret.key"} <= set(plan["replace"])
        assert _count(data, "sales") == sales_at_backup + 1  # the dry run changed nothing

        real = backroom("restore", backup["backup"], "--data", str(data))
        assert real.returncode == 0, real.stderr
        plan = _last_json(real.stdout)
        assert plan["restored"] is True
        kept = Path(plan["kept_aside"])
        assert (kept / "hub.sqlite3").exists() and kept.parent == data
        assert _count(data, "sales") == sales_at_backup
        verified = backroom("journal", "verify", "--data", str(data))
        assert verified.returncode == 0, verified.stdout
        assert f"{backup['journal']['count']} records, head {backup['journal']['head']}" in verified.stdout
    finally:
        box.start()
    with box.client() as till:
        for sale in before:
            assert till.get(f"/api/v1/sales/{sale['sale_id']}").json()["receipt_no"] == sale["receipt_no"]
        assert till.get(f"/api/v1/sales/{after['sale_id']}").status_code == 404
        member = till.get("/api/v1/members/lookup", params={"phone": "13800138000"})  # the key came back with it
        assert member.status_code == 200 and member.json()["member_id"] == "M000001", member.text


def _corrupt(db: Path) -> None:
    """Overwrite pages in the middle of the file, as a torn SD-card write would."""
    with db.open("r+b") as fh:
        for page in (4, 5, 6, 7):
            fh.seek(page * 4096)
            fh.write(b"\xde\xad\xbe\xef" * 1024)


def test_a_damaged_database_does_not_start_and_names_the_last_good_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_demo(data)
    done = backroom("backup", "--data", str(data))  # the default place: <data>/backups
    assert done.returncode == 0, done.stderr
    archive = _last_json(done.stdout)["backup"]
    assert Path(archive).parent == data / "backups"
    _corrupt(data / "hub.sqlite3")

    serve = subprocess.run([sys.executable, "-m", "edge.cli", "serve", "--data", str(data), "--port", str(free_port())],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 78, serve.stderr
    assert "is damaged" in serve.stderr
    assert f"last good backup: {archive}" in serve.stderr
    assert f"backroom restore {archive} --data {data}" in serve.stderr

    doctor = backroom("doctor", "--data", str(data), "--json")
    assert doctor.returncode == 1
    checks = {c["name"]: c for c in _last_json(doctor.stdout)["checks"]}
    assert list(checks) == ["broker", "disk", "database", "clock", "hq", "devices"]
    assert checks["database"]["ok"] is False and "backroom restore" in checks["database"]["remedy"]
    assert checks["disk"]["ok"] is True and checks["clock"]["ok"] is True and checks["hq"]["ok"] is True

    restored = backroom("restore", archive, "--data", str(data))
    assert restored.returncode == 0, restored.stderr
    hub = HubProcess(data).start()  # starts again on the restored file
    hub.stop()


def test_a_clean_stop_lets_the_next_start_skip_the_check_and_a_killed_hub_is_checked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_demo(data)
    record = data / "clean-close.json"
    hub = HubProcess(data).start()
    assert not record.exists()
    with hub.client() as till:
        _sale(till)
    hub.stop()
    assert record.exists(), hub.log()
    wal = data / "hub.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # everything is in the database file

    hub.start()  # closed cleanly, untouched: no check, and the record is gone while the hub runs
    assert "start-up check skipped" in hub.log() and "start-up check of the database" not in hub.log()
    assert not record.exists()
    with hub.client() as till:
        _sale(till)
    hub.kill()  # a power cut: no record, so the next start checks
    assert not record.exists()
    hub.start()
    assert "start-up check of the database" in hub.log() and "skipped" not in hub.log()
    hub.stop()

    assert record.exists()
    _corrupt(data / "hub.sqlite3")  # written after the clean stop: the record no longer matches the file
    serve = subprocess.run([sys.executable, "-m", "edge.cli", "serve", "--data", str(data), "--port", str(free_port())],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert serve.returncode == 78, serve.stderr
    assert "is damaged" in serve.stderr and "skipped" not in serve.stderr


def test_the_journal_keeps_sequence_order_when_the_clock_is_set_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_demo(data)
    db = Database(data / "hub.sqlite3")
    stamps = ["2026-12-02T10:00:00.000+08:00", "2026-12-02T09:00:00.000+08:00",  # NTP corrected an hour back
              "2026-12-01T23:59:59.000+08:00"]
    try:
        for at in stamps:
            lines = [LineIn(sku="SKU00033", qty=1)]
            quote = quote_lines(db.reader(), VariableMeasureLayout(), lines, None)
            req = SaleRequest(sale_id=uuid.uuid4(), till_id="T1", lines=lines, tenders=[TenderIn("card", quote.total)])
            db.write_sync(lambda c, req=req, quote=quote, at=at: commit_sale(  # type: ignore[misc]
                c, req, request_hash(req), quote, Actor(user_id="U-cashier", till_id="T1"), at, at[:10], "DEMO001"))
        rows = db.reader().execute("SELECT seq, kind, body FROM journal ORDER BY seq").fetchall()
        assert [json.loads(r[2])["at"] for r in rows if r[1] == "sale"] == stamps
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
        assert verify(db.reader()).ok
    finally:
        db.close()
    assert backroom("journal", "verify", "--data", str(data)).returncode == 0


def test_path_numbers_are_bounded(box: HubProcess) -> None:
    with box.client("manager", password="manager-demo", till_id=None) as mgr:
        resp = mgr.get("/api/v1/eod/z/" + "9" * 32)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_parameter", resp.text
        assert mgr.get("/api/v1/eod/z/0").status_code == 400
        assert mgr.get("/api/v1/eod/z/424242").json()["code"] == "unknown_z_report"


def _pointer(doc: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_of_the_openapi_document_resolves(box: HubProcess) -> None:
    doc = httpx.get(box.url + "/schema/openapi.json", timeout=30).json()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert len(refs) > 50
    unresolved = []
    for ref in sorted(set(refs)):
        try:
            _pointer(doc, ref)
        except KeyError:
            unresolved.append(ref)
    assert unresolved == []
    approve = doc["paths"]["/api/v1/devices/pending/{name}/approve"]["post"]["requestBody"]
    assert _pointer(doc, approve["content"]["application/json"]["schema"]["$ref"])["properties"].keys() == {
        "device_id", "profile"}


def test_a_standalone_hub_answers_stock_elsewhere_with_no_stores(box: HubProcess) -> None:
    with box.client() as till:
        resp = till.get("/api/v1/stock/SKU00033/elsewhere")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sku": "SKU00033", "stores": [], "standalone": True}


def test_healthz_keeps_its_keys_and_adds_the_components(box: HubProcess) -> None:
    health = httpx.get(box.url + "/healthz", timeout=10).json()
    assert {k: health[k] for k in ("status", "store_id")} == {"status": "ok", "store_id": "demo-001"}
    comps = health["components"]
    assert sorted(comps) == ["broker", "clock", "database", "devices", "disk", "hq"]
    assert all(c["ok"] for c in comps.values()), comps
    assert comps["broker"]["detail"] == "devices are off on this hub"


def test_a_second_hub_on_the_same_data_directory_is_refused(box: HubProcess) -> None:
    second = subprocess.run([sys.executable, "-m", "edge.cli", "serve", "--data", str(box.data_dir), "--port",
                             str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "a hub is running on" in second.stderr


def test_doctor_asks_hq_and_compares_the_clock_with_its_date_header(tmp_path: Path) -> None:
    from sync_support import HqServer

    data = tmp_path / "data"
    seed_demo(data)
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    config = tmp_path / "hub.toml"
    config.write_text(f'hq_url = "{hq.url}"\n', "utf-8")
    try:
        doctor = backroom("doctor", "--data", str(data), "--config", str(config), "--json")
        checks = {c["name"]: c for c in _last_json(doctor.stdout)["checks"]}
        assert checks["hq"] == {"name": "hq", "ok": True, "detail": f"HQ at {hq.url} answers", "remedy": ""}
        assert checks["clock"]["ok"] is True and checks["clock"]["detail"].endswith(" s from HQ")
        assert doctor.returncode == 0, checks
    finally:
        hq.stop()
    doctor = backroom("doctor", "--data", str(data), "--config", str(config), "--json")
    assert doctor.returncode == 1
    checks = {c["name"]: c for c in _last_json(doctor.stdout)["checks"]}
    assert checks["hq"]["ok"] is False and f"HQ at {hq.url} did not answer" in checks["hq"]["detail"]
    assert "network" in checks["hq"]["remedy"]
    assert checks["clock"]["ok"] is True and "HQ" not in checks["clock"]["detail"]


def test_a_backup_taken_while_the_tills_sell_is_consistent(box: HubProcess, tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    sold: list[str] = []

    def sell() -> None:
        with box.client() as till:
            while not stop.is_set():
                sold.append(_sale(till)["sale_id"])

    seller = threading.Thread(target=sell)
    before = _count(box.data_dir, "journal")
    seller.start()
    try:
        deadline = time.monotonic() + 30  # the backup starts once the till is selling
        while not sold and seller.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        done = backroom("backup", "--to", str(tmp_path), "--data", str(box.data_dir), "--json")
    finally:
        stop.set()
        seller.join(30)
    assert done.returncode == 0, done.stderr
    taken = _last_json(done.stdout)
    assert sold and before <= taken["journal"]["count"] <= _count(box.data_dir, "journal")
    dry = backroom("restore", taken["backup"], "--data", str(box.data_dir), "--dry-run", "--json")
    assert dry.returncode == 0 and _last_json(dry.stdout)["verified"] is True, dry.stdout


def test_a_backup_of_another_store_is_refused_without_force(box: HubProcess, tmp_path: Path) -> None:
    done = backroom("backup", "--to", str(tmp_path / "b"), "--data", str(box.data_dir), "--json")
    other = tmp_path / "other"
    assert backroom("seed", "--demo", "--store", "demo-002", "--data", str(other)).returncode == 0
    refused = backroom("restore", _last_json(done.stdout)["backup"], "--data", str(other))
    assert refused.returncode == 1
    plan = _last_json(refused.stdout)
    assert plan["restored"] is False and "the backup is of store demo-001" in plan["refused"]
    assert _count(other, "sales") == 0 and not list(other.glob("replaced-*"))
    forced = backroom("restore", _last_json(done.stdout)["backup"], "--data", str(other), "--force")
    assert forced.returncode == 0 and _last_json(forced.stdout)["store_id"] == "demo-001"


def test_the_tablet_lists_the_archives_of_backroom_backup(box: HubProcess) -> None:
    from types import SimpleNamespace

    from ui_support import ui_login

    done = backroom("backup", "--data", str(box.data_dir), "--json")  # into <data>/backups, the default
    name = Path(_last_json(done.stdout)["backup"]).name
    tablet = ui_login(SimpleNamespace(base_url=box.url), "manager")  # type: ignore[arg-type]
    try:
        page = tablet.get("/ui/sync")
    finally:
        tablet.close()
    assert page.status_code == 200 and name in page.text
