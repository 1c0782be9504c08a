"""kill -9 of the hub under concurrent checkout load: every acknowledged sale survives, complete.

A real `backroom serve` process takes sales from eight tills at once; it is SIGKILLed mid-load (no
shutdown, no lifespan teardown) and started again on the same data directory. A 201 is sent only
after the group COMMIT returned, so every sale a till saw acknowledged must be there with the same
body; sales cut off in flight may or may not exist, but never half. The caches, the outbox and the
journal must agree with the ledgers as if nothing had happened.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubproc import HubProcess, backroom, seed_demo

TILLS = 8
LOAD_SECONDS = 1.5
MEMBER = "M000001"
WEIGHED_LABEL = "2112345015002"  # SKU00001 apples, 1500 g
BATCHED_SKUS = ["SKU00033", "SKU00034", "SKU00073", "SKU00077"]  # small batches: sales spill over them


class Till(threading.Thread):
    """One till: quote, then commit, as fast as the hub answers, until the hub dies or `stop` is set."""

    def __init__(self, n: int, hub: HubProcess, codes: list[str], stop: threading.Event) -> None:
        super().__init__(name=f"till-{n}", daemon=True)
        self.rng = random.Random(n)
        self.till_id = f"T{n}"
        self.client = hub.client(till_id=self.till_id)  # the cashier's PIN login is bound to this till
        self.codes = codes
        self.stop = stop
        self.acked: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.in_doubt: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    def basket(self) -> tuple[list[dict[str, Any]], str | None]:
        rng = self.rng
        lines: list[dict[str, Any]] = [{"barcode": rng.choice(self.codes), "qty": rng.randint(1, 3)}
                                       for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.4:
            lines.append({"sku": rng.choice(BATCHED_SKUS), "qty": rng.randint(1, 4)})
        if rng.random() < 0.4:
            lines.append({"barcode": WEIGHED_LABEL})
        if rng.random() < 0.2:
            lines.append({"sku": "SKU00002", "weight_g": rng.randint(200, 2500)})
        rng.shuffle(lines)
        return lines, MEMBER if rng.random() < 0.5 else None

    def tenders(self, total: int, member_id: str | None) -> list[dict[str, Any]]:
        rng = self.rng
        tenders: list[dict[str, Any]] = []
        left = total
        if member_id is not None and left > 1:
            # Small enough that 8 tills for a few seconds cannot exhaust 200 yuan or 5000 points.
            sv = rng.randint(1, min(20, left - 1))
            tenders.append({"method": "stored_value", "amount": sv})
            left -= sv
            if rng.random() < 0.3 and left > 1:
                tenders.append({"method": "points", "amount": 1})
                left -= 1
        if rng.random() < 0.5:
            tenders.append({"method": rng.choice(["card", "alipay", "wechat"]), "amount": left,
                            "reference": uuid.uuid4().hex[:12]})
        else:
            tenders.append({"method": "cash", "amount": (left // 10_000 + 1) * 10_000})  # a 100-yuan note: change
        return tenders

    def run(self) -> None:
        while not self.stop.is_set():
            lines, member_id = self.basket()
            quote_body: dict[str, Any] = {"lines": lines}
            if member_id:
                quote_body["member_id"] = member_id
            try:
                q = self.client.post("/api/v1/quote", json=quote_body)
            except httpx.TransportError:
                return
            if q.status_code != 200:
                self.errors.append(f"quote {q.status_code} {q.text}")
                return
            sale = {"sale_id": str(uuid.uuid4()), "till_id": self.till_id, **quote_body,
                    "tenders": self.tenders(q.json()["total"], member_id)}
            try:
                r = self.client.post("/api/v1/sales", json=sale)
            except httpx.TransportError:
                self.in_doubt[sale["sale_id"]] = sale  # sent; the answer was lost with the hub
                return
            if r.status_code != 201:
                self.errors.append(f"sale {r.status_code} {r.text}")
                return
            self.acked[sale["sale_id"]] = (sale, r.content)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hub"
    seed_demo(d)
    return d


@pytest.fixture
def hub_proc(data_dir: Path) -> Iterator[HubProcess]:
    h = HubProcess(data_dir)
    try:
        yield h
    finally:
        h.stop()


@contextlib.contextmanager
def _db(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A read-only look at the hub's file (while it runs, as an auditor would)."""
    conn = sqlite3.connect(f"file:{data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("sales", "sale_lines", "sale_tenders", "journal", "outbox", "stock_movements",
                      "points_ledger", "value_ledger", "counters")} | {
        "receipts": conn.execute("SELECT coalesce(max(value), 0) FROM counters WHERE name = 'receipt'").fetchone()[0]}


def _assert_consistent(conn: sqlite3.Connection, requests: dict[str, dict[str, Any]]) -> None:
    """Every sale row is whole, and every cache, sequence and ledger agrees."""
    sales = {r["sale_id"]: r for r in conn.execute("SELECT * FROM sales")}
    for sale_id, sale in sales.items():
        req = requests.get(sale_id)
        assert req is not None, f"sale {sale_id} was never sent"
        lines = conn.execute("SELECT * FROM sale_lines WHERE sale_id = ? ORDER BY line_no", (sale_id,)).fetchall()
        tenders = conn.execute("SELECT * FROM sale_tenders WHERE sale_id = ? ORDER BY tender_no",
                               (sale_id,)).fetchall()
        assert [ln["line_no"] for ln in lines] == list(range(1, len(req["lines"]) + 1))
        assert [(t["method"], t["amount"]) for t in tenders] == [(t["method"], t["amount"]) for t in req["tenders"]]
        assert sum(ln["net"] for ln in lines) == sale["total"]
        assert sum(t["amount"] for t in tenders) == sale["tendered"] == sale["total"] + sale["change"]
        moved = conn.execute("SELECT coalesce(-sum(qty), 0) FROM stock_movements WHERE ref = ? AND kind = 'sale'",
                             (sale_id,)).fetchone()[0]
        assert moved == sum(ln["weight_g"] if ln["weight_g"] is not None else ln["qty"] for ln in lines)
        record = conn.execute("SELECT kind, ref FROM journal WHERE seq = ?", (sale["journal_seq"],)).fetchone()
        assert tuple(record) == ("sale", sale_id)
    journal_refs = [r[0] for r in conn.execute("SELECT ref FROM journal WHERE kind = 'sale'")]
    assert sorted(journal_refs) == sorted(sales)
    # Receipt numbers: one per sale, none skipped (the counter is in the same transaction).
    assert conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone()[0] == len(sales)

    # The outbox holds exactly one sale delta per sale, on a gapless sequence.
    outbox_refs = [r[0] for r in conn.execute("SELECT ref FROM outbox WHERE kind = 'sale'")]
    assert sorted(outbox_refs) == sorted(sales)
    outbox_seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert outbox_seqs == list(range(1, len(outbox_seqs) + 1))

    journal_seqs = [r[0] for r in conn.execute("SELECT seq FROM journal ORDER BY seq")]
    assert journal_seqs == list(range(1, len(journal_seqs) + 1))

    stock_mismatch = conn.execute(
        """SELECT b.sku, b.batch_id, b.on_hand, coalesce(m.total, 0) FROM stock_balance b
           LEFT JOIN (SELECT sku, coalesce(batch_id, 0) AS batch_id, sum(qty) AS total FROM stock_movements
                      GROUP BY sku, coalesce(batch_id, 0)) m ON m.sku = b.sku AND m.batch_id = b.batch_id
           WHERE b.on_hand != coalesce(m.total, 0)""").fetchall()
    assert [tuple(r) for r in stock_mismatch] == []
    uncached = conn.execute(
        """SELECT count(*) FROM (SELECT DISTINCT sku, coalesce(batch_id, 0) AS batch_id FROM stock_movements) m
           LEFT JOIN stock_balance b ON b.sku = m.sku AND b.batch_id = m.batch_id WHERE b.sku IS NULL""").fetchone()[0]
    assert uncached == 0

    member_mismatch = conn.execute(
        """SELECT b.member_id, b.points, b.balance,
                  (SELECT coalesce(sum(delta), 0) FROM points_ledger p WHERE p.member_id = b.member_id),
                  (SELECT coalesce(sum(delta), 0) FROM value_ledger v WHERE v.member_id = b.member_id)
           FROM member_balance b""").fetchall()
    assert [tuple(r) for r in member_mismatch if (r[1], r[2]) != (r[3], r[4])] == []
    assert all(r[1] >= 0 and r[2] >= 0 for r in member_mismatch)


def test_kill_9_under_checkout_load_loses_no_acknowledged_sale(data_dir: Path, hub_proc: HubProcess) -> None:
    hub_proc.start()
    with hub_proc.client(till_id="T0") as c:
        items = c.get("/api/v1/items", params={"limit": 500}).json()["items"]
    codes = [i["barcodes"][0] for i in items if i["unit"] == "each" and i["barcodes"]][:60]
    assert len(codes) == 60

    stop = threading.Event()
    tills = [Till(n, hub_proc, codes, stop) for n in range(1, TILLS + 1)]
    for t in tills:
        t.start()
    time.sleep(LOAD_SECONDS)
    hub_proc.kill()  # SIGKILL while the tills are mid-request
    stop.set()
    for t in tills:
        t.join(timeout=20)
        t.client.close()
    assert not any(t.is_alive() for t in tills)
    assert [e for t in tills for e in t.errors] == []

    acked = {sid: v for t in tills for sid, v in t.acked.items()}
    in_doubt = {sid: sale for t in tills for sid, sale in t.in_doubt.items()}
    requests = {sid: sale for sid, (sale, _) in acked.items()} | in_doubt
    assert len(acked) >= 40, f"only {len(acked)} sales in {LOAD_SECONDS} s: the load did not load"

    hub_proc.start()  # same data directory, same port: SQLite recovers the WAL on open
    with _db(data_dir) as conn:
        _assert_consistent(conn, requests)
        present = {r[0] for r in conn.execute("SELECT sale_id FROM sales")}
    assert set(acked) <= present
    assert present <= set(requests)

    with hub_proc.client(till_id="T0") as c:
        for sale_id, (_, body) in acked.items():
            r = c.get(f"/api/v1/sales/{sale_id}")
            assert r.status_code == 200
            assert r.content == body
    with _db(data_dir) as conn:
        before = _counts(conn)
    # The tills carry on with the tokens they had: the hub's key is on disk, so they survive a restart.
    for t in tills:
        t.client = httpx.Client(base_url=hub_proc.url, timeout=10, headers=t.client.headers)
    # A till that saw the 201 and retries anyway gets the same answer, and nothing is committed.
    for t in tills:
        for sale, body in list(t.acked.values())[:3]:
            r = t.client.post("/api/v1/sales", json=sale)
            assert (r.status_code, r.content) == (201, body)
    with _db(data_dir) as conn:
        assert _counts(conn) == before
    # A till whose request died with the hub retries it: committed once either way.
    for t in tills:
        for sale_id, sale in t.in_doubt.items():
            r = t.client.post("/api/v1/sales", json=sale)
            assert r.status_code == 201, r.text
            if sale_id in present:
                assert t.client.get(f"/api/v1/sales/{sale_id}").content == r.content
        t.client.close()
    with _db(data_dir) as conn:
        after = _counts(conn)
        _assert_consistent(conn, requests)
        assert {r[0] for r in conn.execute("SELECT sale_id FROM sales")} == set(requests)
    assert after["sales"] == before["sales"] + len(set(in_doubt) - present)

    hub_proc.stop()
    verified = backroom("journal", "verify", "--data", str(data_dir))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # seed record + one per sale; nothing else was journalled.
    assert f"journal intact: {len(requests) + 1} records" in verified.stdout
