"""The sale path's shortcuts (docs/performance.md) against a real `backroom serve`: scanned codes kept
in memory must never outlive a catalog change, responses leave in one write and stay byte-identical on
retry, and a hub whose schema is current starts without the modules it only needs later."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

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
