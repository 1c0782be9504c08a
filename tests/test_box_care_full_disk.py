"""A full data disk (docs/appliance-care.md): a real `backroom serve` on a 16 MB tmpfs.

Filled to the last byte, a sale is refused with `507 storage_full` and nothing of it is committed (the
sale is unknown, the counts and the journal are as before); doctor and `/healthz` say the disk is the
problem and the tablet warns before it is full; once space is back the same sale (same id) commits.
Mounting needs root; the mount is always taken down again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hubproc import HubProcess, backroom, seed_demo
from ui_support import ui_login


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(path: Path) -> None:
    """Write zeros until the file system refuses (ENOSPC), in ever smaller pieces to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def _counts(data: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{data / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("sales", "journal", "outbox")}
    finally:
        conn.close()


def _body(client: Any) -> dict[str, Any]:
    lines = [{"sku": "SKU00033", "qty": 1}]
    total = client.post("/api/v1/quote", json={"lines": lines}).json()["total"]
    return {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines,
            "tenders": [{"method": "card", "amount": total}]}


def test_a_full_disk_refuses_sales_with_507_commits_nothing_and_recovers(small_disk: Path) -> None:
    data = small_disk  # the tmpfs is the data directory; the hub's log goes beside it, off the small disk
    seed_demo(data)
    hub = HubProcess(data).start()
    try:
        with hub.client() as till:
            assert till.post("/api/v1/sales", json=_body(till)).status_code == 201
            # 16 MB is under the 1024 MB warning level: the tablet says so before anything fails
            tablet = ui_login(SimpleNamespace(base_url=hub.url), "manager")  # type: ignore[arg-type]
            page = tablet.get("/ui/stock")
            assert page.status_code == 200 and "门店主机磁盘即将用满" in page.text, page.text[:500]
            tablet.close()

            # the nightly backup must not be what fills the card: refused on the data disk, fine elsewhere
            onto_data = backroom("backup", "--data", str(data))
            assert onto_data.returncode == 1 and "not enough space" in onto_data.stderr, onto_data.stderr
            assert not (data / "backups").exists() or not list((data / "backups").glob("backroom-*"))
            elsewhere = backroom("backup", "--data", str(data), "--to", str(data.parent / "backups"))
            assert elsewhere.returncode == 0, elsewhere.stderr

            _fill(data / "filler")
            committed = _counts(data)
            refused: dict[str, Any] | None = None
            for _ in range(50):  # the WAL may still have room for a sale or two
                body = _body(till)
                resp = till.post("/api/v1/sales", json=body)
                if resp.status_code == 507:
                    assert resp.json()["code"] == "storage_full", resp.text
                    refused = body
                    break
                assert resp.status_code == 201, resp.text
                committed = _counts(data)
            assert refused is not None, "no sale was refused on a full disk"
            assert _counts(data) == committed
            assert till.get(f"/api/v1/sales/{refused['sale_id']}").status_code == 404
            assert backroom("journal", "verify", "--data", str(data)).returncode == 0

            health = till.get("/healthz").json()["components"]
            assert health["disk"]["ok"] is False and health["database"]["ok"] is False, health
            doctor = backroom("doctor", "--data", str(data), "--json")
            assert doctor.returncode == 1
            checks = {c["name"]: c for c in json.loads(doctor.stdout.strip().splitlines()[-1])["checks"]}
            assert checks["disk"]["ok"] is False and "free space" in checks["disk"]["remedy"]
            assert checks["database"]["ok"] is True  # full, not damaged

            (data / "filler").unlink()
            again = till.post("/api/v1/sales", json=refused)  # the till retries the same sale
            assert again.status_code == 201, again.text
            assert till.post("/api/v1/sales", json=_body(till)).status_code == 201
        after = _counts(data)
        assert after["sales"] == committed["sales"] + 2
        assert backroom("journal", "verify", "--data", str(data)).returncode == 0
    finally:
        hub.stop()


@pytest.mark.parametrize("replayable", [False, True], ids=["savepoints", "replayable"])
def test_the_writer_fails_exactly_the_writes_the_full_disk_lost_and_goes_on(small_disk: Path, replayable: bool) -> None:
    """One group-commit batch on a 16 MB tmpfs: a small write, one too big for the disk (SQLite rolls back
    the statement or, once its cache spilled, the whole transaction), another small one. Whatever SQLite
    did, a write whose caller got a result is in the file and one that got an exception is not; the
    writer thread goes on. With `replayable` writes (a sale's) the batch first runs without savepoints,
    is rolled back and runs again with them."""
    import threading

    from edge.errors import StorageFull
    from edge.storage.db import Database

    db = Database(small_disk / "hub.sqlite3")
    try:
        db.write_sync(lambda c: c.execute("CREATE TABLE scratch (name TEXT PRIMARY KEY, body BLOB)"))
        gate = threading.Event()
        db.submit(lambda c: gate.wait(10))  # holds the writer, so the next three queue into one batch

        def insert(name: str, size: int) -> Any:
            return lambda c: c.execute("INSERT INTO scratch VALUES (?, zeroblob(?))", (name, size)).rowcount

        futures = {name: db.submit(insert(name, size), replayable=replayable)
                   for name, size in (("small-1", 1000), ("huge", 64 << 20), ("small-2", 1000))}
        gate.set()
        outcomes = {name: (f.exception(timeout=30) or f.result()) for name, f in futures.items()}
        assert isinstance(outcomes["huge"], StorageFull), outcomes
        assert outcomes["huge"].status == 507 and outcomes["huge"].code == "storage_full"
        stored = {r[0] for r in db.reader().execute("SELECT name FROM scratch")}
        assert stored == {name for name, o in outcomes.items() if o == 1}, (outcomes, stored)
        assert all(o == 1 or isinstance(o, StorageFull) for o in outcomes.values()), outcomes
        assert db.write_sync(insert("after", 1000)) == 1  # the writer is still there
    finally:
        db.close()
