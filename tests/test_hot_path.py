"""The sale path's shortcuts (docs/performance.md) against a real `backroom serve`: scanned codes kept
in memory must never outlive a catalog change, responses leave in one write and stay byte-identical on
retry, and a hub whose schema is current starts without the modules it only needs later."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from conftest import Hub

BLUEBERRIES = "6953686088258"  # SKU00010, 1990 fen each
REPO = Path(__file__).resolve().parent.parent


def _quote_price(client: object, code: str) -> int:
    resp = client.post("/api/v1/quote", json={"lines": [{"barcode": code, "qty": 1}]})  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.text
    return int(resp.json()["lines"][0]["unit_price"])


def test_a_price_change_reaches_the_next_quote_and_lookup_at_once(hub: Hub) -> None:
    manager = hub.login("manager")
    assert _quote_price(manager, BLUEBERRIES) == 1990  # now resolved and kept in memory
    assert manager.get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES}).json()["price"] == 1990
    resp = manager.put("/api/v1/items/SKU00010/price", json={"price": 2090, "reason": "test"})
    assert resp.status_code == 200, resp.text
    assert _quote_price(manager, BLUEBERRIES) == 2090
    assert manager.get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES}).json()["price"] == 2090


def test_a_barcode_removed_or_added_behind_the_hubs_back_counts_at_once(hub: Hub) -> None:
    """Another writer (as HQ's feed does, on the hub's own writer) changes barcodes: m180's triggers
    move the catalog version and the next scan sees it."""
    cashier = hub.login("cashier", pin="1234")
    assert cashier.get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES}).status_code == 200
    db = sqlite3.connect(hub.data_dir / "hub.sqlite3", isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        sku, symbology = db.execute("SELECT sku, symbology FROM barcodes WHERE code = ?", (BLUEBERRIES,)).fetchone()
        db.execute("DELETE FROM barcodes WHERE code = ?", (BLUEBERRIES,))
        gone = cashier.get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES})
        assert gone.status_code == 404 and gone.json()["code"] == "unknown_barcode"
        resp = cashier.post("/api/v1/quote", json={"lines": [{"barcode": BLUEBERRIES, "qty": 1}]})
        assert resp.status_code == 422 and resp.json()["code"] == "unknown_barcode"
        db.execute("INSERT INTO barcodes (code, sku, symbology) VALUES (?, ?, ?)", (BLUEBERRIES, sku, symbology))
    finally:
        db.close()
    assert cashier.get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES}).json()["sku"] == sku


def test_a_retried_sale_gets_the_same_bytes_in_one_piece(hub: Hub) -> None:
    cashier = hub.login("cashier", pin="1234")
    body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"barcode": BLUEBERRIES, "qty": 2}],
            "tenders": [{"method": "cash", "amount": 10_000}]}
    first = cashier.post("/api/v1/sales", json=body)
    assert first.status_code == 201, first.text
    again = cashier.post("/api/v1/sales", json=body)
    assert again.status_code == 201
    assert again.content == first.content
    assert int(first.headers["content-length"]) == len(first.content)
    assert first.json()["change"] == 10_000 - first.json()["total"]


def test_a_hub_with_a_current_schema_starts_without_sqlite_utils_or_httpx(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seeded = subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    probe = ("import sys; from pathlib import Path; import edge.app; from edge.storage.db import Database; "
             f"Database(Path({str(data / 'hub.sqlite3')!r})).close(); "
             "print(sorted(m for m in ('sqlite_utils', 'httpx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_one_sale_takes_an_items_batches_line_after_line_and_adds_to_its_day_once(hub: Hub) -> None:
    """The sale's stock is written in a few statements for all its lines (edge/stock/ledger.py `sell`):
    the second line of the same item must see what the first took, and the day's rollup counts both."""
    manager = hub.login("manager")
    soon, later = (datetime.date.today() + datetime.timedelta(days=d) for d in (2, 10))
    received = manager.post("/api/v1/stock/receipts", json={"receipt_id": str(uuid.uuid4()), "lines": [
        {"sku": "SKU00010", "qty": 3, "lot": "HOT-SOON", "expiry": soon.isoformat()},
        {"sku": "SKU00010", "qty": 5, "lot": "HOT-LATER", "expiry": later.isoformat()}]})
    assert received.status_code == 201, received.text
    lots = {b["lot"]: b["batch_id"] for b in manager.get("/api/v1/stock/SKU00010").json()["batches"]}
    db = sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        before = db.execute("SELECT coalesce(sum(qty), 0), coalesce(sum(lines), 0) FROM sales_daily_sku"
                            " WHERE sku = 'SKU00010'").fetchone()
        cashier = hub.login("cashier", pin="1234")
        sale = cashier.post("/api/v1/sales", json={
            "sale_id": str(uuid.uuid4()), "till_id": "T1", "tenders": [{"method": "cash", "amount": 10_000}],
            "lines": [{"barcode": BLUEBERRIES, "qty": 2}, {"barcode": BLUEBERRIES, "qty": 2}]})
        assert sale.status_code == 201, sale.text
        sale_id = sale.json()["sale_id"]
        batches = db.execute("SELECT batches FROM sale_lines WHERE sale_id = ? ORDER BY line_no", (sale_id,)).fetchall()
        assert [json.loads(b[0]) for b in batches] == [
            [[lots["HOT-SOON"], 2]], [[lots["HOT-SOON"], 1], [lots["HOT-LATER"], 1]]]
        moved = db.execute("SELECT batch_id, qty FROM stock_movements WHERE ref = ? ORDER BY movement_id",
                           (sale_id,)).fetchall()
        assert moved == [(lots["HOT-SOON"], -2), (lots["HOT-SOON"], -1), (lots["HOT-LATER"], -1)]
        after = db.execute("SELECT coalesce(sum(qty), 0), coalesce(sum(lines), 0) FROM sales_daily_sku"
                           " WHERE sku = 'SKU00010'").fetchone()
        assert (after[0] - before[0], after[1] - before[1]) == (4, 2)
        ledger, cached = db.execute("SELECT (SELECT sum(qty) FROM stock_movements WHERE sku = 'SKU00010'),"
                                    " (SELECT sum(on_hand) FROM stock_balance WHERE sku = 'SKU00010')").fetchone()
        assert ledger == cached
    finally:
        db.close()
    levels = {b["lot"]: b["on_hand"] for b in manager.get("/api/v1/stock/SKU00010").json()["batches"]}
    assert (levels["HOT-SOON"], levels["HOT-LATER"]) == (0, 4)


def test_a_sale_litestar_answers_and_its_retry_on_the_fast_path_are_the_same_bytes(hub: Hub) -> None:
    """A chunked body (no Content-Length) goes to Litestar's route; the retry, with a length, is answered
    below Litestar (edge/api/sale_fast_path.py): both must give the same stored bytes. Refusals of the
    caller stay Litestar's."""
    body = json.dumps({"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"barcode": BLUEBERRIES}],
                       "tenders": [{"method": "cash", "amount": 5_000}]}).encode()
    cashier = hub.login("cashier", pin="1234")
    chunked = cashier.post("/api/v1/sales", content=iter([body[:10], body[10:]]),
                           headers={"content-type": "application/json"})
    assert chunked.status_code == 201, chunked.text
    again = cashier.post("/api/v1/sales", content=body, headers={"content-type": "application/json"})
    assert again.status_code == 201
    assert again.content == chunked.content
    assert again.headers["content-type"] == chunked.headers["content-type"] == "application/json"
    guide = hub.login("guide", pin="5678")
    refused = guide.post("/api/v1/sales", content=body)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    anonymous = httpx.post(f"{hub.base_url}/api/v1/sales", content=body)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    oversized = cashier.post("/api/v1/sales", content=b" " * 300_000)
    assert oversized.status_code == 413 and oversized.json()["code"] == "body_too_large"
