"""Transfers between stores (调拨) through a real HQ and two real hubs: request, HQ routing, a short
shipment, a receipt with a discrepancy, in-transit stock on both sides, balanced ledgers, intact
journals and the cross-store stock lookup with its age; and the refusals and retries of each step."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import sync_support
from sync_support import FAST, HqServer, SyncHub, wait_until

from edge.stock.ledger import Actor
from edge.storage.db import Database
from hq_sync import transfers
from hq_sync.hub_state import apply_body
from hq_sync.protocol import TransferLineDelta, TransferRequestDelta, TransferShippedDelta, delta_encoder
from hq_sync.server.service.demo import seed_demo
from hq_sync.server.service.feed import hq_key, read_feed
from hq_sync.server.service.ingest import ingest
from hq_sync.server.storage.db import SqliteDb
from hq_sync.server.storage.schema import create_schema
from hq_sync.transfers import QtyIn, TransferCreate, TransferLineIn, TransferStep
from hq_sync.wire import Batch, OutRow, TransferLine, TransferState, feed_body_decoder

pg_cluster = sync_support.pg_cluster
hq_db_url = sync_support.hq_db_url

def _manager(hub: SyncHub) -> httpx.Client:
    r = httpx.post(hub.url + "/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"},
                   timeout=10)
    assert r.status_code == 200, r.text
    return httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=30)


def _on_hand(c: httpx.Client, sku: str) -> int:
    return int(c.get(f"/api/v1/stock/{sku}").json()["on_hand"])


def _one(c: httpx.Client, direction: str, state: str | None = None) -> dict[str, Any] | None:
    params = {"direction": direction, **({"state": state} if state else {})}
    rows = c.get("/api/v1/transfers", params=params).json()["transfers"]
    return rows[0] if rows else None


def _lines(t: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {ln["sku"]: (ln["requested"], ln["shipped"], ln["received"], ln["in_transit"], ln["discrepancy"])
            for ln in t["lines"]}


def _balanced(hub: SyncHub) -> bool:
    cache = dict(hub.query("SELECT sku, sum(on_hand) FROM stock_balance GROUP BY sku HAVING sum(on_hand) != 0"))
    ledger = dict(hub.query("SELECT sku, sum(qty) FROM stock_movements GROUP BY sku HAVING sum(qty) != 0"))
    return cache == ledger


def _synced(hub: SyncHub) -> bool:
    return bool(hub.query("SELECT acked_seq = (SELECT coalesce(max(seq), 0) FROM outbox) FROM sync_state")[0][0])


def test_a_transfer_goes_request_route_ship_short_receive_with_discrepancy_across_two_hubs(
        hq_db_url: str, tmp_path: Path) -> None:
    hq = HqServer(hq_db_url, tmp_path).start()
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()  # the sender
    b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST).start()  # asks demo-001 for stock
    try:
        wait_until(lambda: a.paired() and b.paired(), 15, what="both stores paired")
        ma, mb = _manager(a), _manager(b)
        admin = hq.admin()
        before_a = {s: _on_hand(ma, s) for s in ("SKU00027", "SKU00033")}
        before_b = {s: _on_hand(mb, s) for s in ("SKU00027", "SKU00033")}
        assert before_a == before_b == {"SKU00027": 11, "SKU00033": 30}

        tid = str(uuid.uuid4())
        ask = {"transfer_id": tid, "from_store": "demo-001", "note": "weekend",
               "lines": [{"sku": "SKU00027", "qty": 10}, {"sku": "SKU00033", "qty": 15}]}
        r = mb.post("/api/v1/transfers", json=ask)
        assert r.status_code == 201, r.text
        assert (r.json()["state"], r.json()["direction"], r.json()["to_store"]) == ("requested", "in", "demo-002")
        assert mb.post("/api/v1/transfers", json=ask).json() == r.json()  # a retry: the same answer
        other = mb.post("/api/v1/transfers", json={**ask, "lines": [{"sku": "SKU00027", "qty": 1}]})
        assert (other.status_code, other.json()["code"]) == (409, "id_conflict")

        # HQ routes the request onto the sender's feed.
        routed = wait_until(lambda: _one(ma, "out", "requested"), 10, what="the request at the sender")
        assert (routed["transfer_id"], routed["from_store"], routed["to_store"], routed["note"]) == (
            tid, "demo-001", "demo-002", "weekend")
        assert _lines(routed) == {"SKU00027": (10, None, None, 0, None), "SKU00033": (15, None, None, 0, None)}
        not_mine = mb.post(f"/api/v1/transfers/{tid}/ship", json={"lines": []})
        assert (not_mine.status_code, not_mine.json()["code"]) == (403, "not_sender")

        # The sender ships short; SKU00033 leaves FEFO: all of lot L00004 (11), then 3 of L00005.
        ship = {"lines": [{"sku": "SKU00027", "qty": 8}, {"sku": "SKU00033", "qty": 14}]}
        shipped = ma.post(f"/api/v1/transfers/{tid}/ship", json=ship)
        assert shipped.status_code == 200, shipped.text
        assert ma.post(f"/api/v1/transfers/{tid}/ship", json=ship).json() == shipped.json()
        twice = ma.post(f"/api/v1/transfers/{tid}/ship", json={"lines": [{"sku": "SKU00027", "qty": 9}]})
        assert (twice.status_code, twice.json()["code"]) == (409, "id_conflict")
        assert a.query("""SELECT b.lot, m.qty FROM stock_movements m JOIN batches b ON b.batch_id = m.batch_id
                          WHERE m.ref = ? AND m.sku = 'SKU00033' ORDER BY m.movement_id""", (tid,)) == [
            ("L00004", -11), ("L00005", -3)]
        assert {s: _on_hand(ma, s) for s in before_a} == {"SKU00027": 3, "SKU00033": 16}
        out = _one(ma, "out")
        assert out is not None and out["state"] == "in_transit"
        assert _lines(out) == {"SKU00027": (10, 8, None, 8, None), "SKU00033": (15, 14, None, 14, None)}

        # In transit at the receiver (through HQ) and at HQ; nothing has arrived yet.
        incoming = wait_until(lambda: _one(mb, "in", "in_transit"), 10, what="the shipment at the receiver")
        assert _lines(incoming) == {"SKU00027": (10, 8, None, 8, None), "SKU00033": (15, 14, None, 14, None)}
        assert {s: _on_hand(mb, s) for s in before_b} == before_b
        at_hq = admin.get("/hq/v1/transfers").json()["transfers"]
        assert [(t["transfer_id"], t["state"]) for t in at_hq] == [(tid, "in_transit")]
        early = mb.post(f"/api/v1/transfers/{tid}/receive", json={"lines": [{"sku": "SKU00099", "qty": 1}]})
        assert (early.status_code, early.json()["code"]) == (422, "unknown_line")

        # The receiver counts one SKU00027 short.
        got = mb.post(f"/api/v1/transfers/{tid}/receive",
                      json={"lines": [{"sku": "SKU00027", "qty": 7}, {"sku": "SKU00033", "qty": 14}]})
        assert got.status_code == 200, got.text
        assert (got.json()["state"], got.json()["has_discrepancy"]) == ("received", True)
        assert _lines(got.json()) == {"SKU00027": (10, 8, 7, 0, 1), "SKU00033": (15, 14, 14, 0, 0)}
        assert {s: _on_hand(mb, s) for s in before_b} == {"SKU00027": 18, "SKU00033": 44}
        again = mb.post(f"/api/v1/transfers/{tid}/receive", json={"lines": [{"sku": "SKU00027", "qty": 8}]})
        assert (again.status_code, again.json()["code"]) == (409, "id_conflict")

        def hq_received() -> list[Any]:
            rows = admin.get("/hq/v1/transfers", params={"state": "received"}).json()["transfers"]
            return rows

        done = wait_until(hq_received, 10, what="HQ to mark the transfer received")
        assert done[0]["has_discrepancy"] is True
        assert {ln["sku"]: ln["discrepancy"] for ln in done[0]["lines"]} == {"SKU00027": 1, "SKU00033": 0}
        seen = wait_until(lambda: _one(ma, "out", "received"), 10, what="the receipt back at the sender")
        assert _lines(seen) == {"SKU00027": (10, 8, 7, 0, 1), "SKU00033": (15, 14, 14, 0, 0)}

        # Ledgers balanced, journals intact, and every movement at HQ once.
        for hub, m in ((a, ma), (b, mb)):
            assert _balanced(hub)
            verdict = m.get("/api/v1/journal/verify").json()
            assert verdict["ok"] is True, verdict
        assert a.query("SELECT kind, sum(qty) FROM stock_movements WHERE ref = ? GROUP BY kind", (tid,)) == [
            ("transfer_out", -22)]
        assert b.query("SELECT kind, sum(qty) FROM stock_movements WHERE ref = ? GROUP BY kind", (tid,)) == [
            ("transfer_in", 21)]
        wait_until(lambda: _synced(a) and _synced(b), 10, what="both outboxes acknowledged")
        assert sorted(hq.query("SELECT store_id, kind, sum(qty) FROM hq_stock_movements WHERE ref = ? "
                               "GROUP BY store_id, kind", (tid,))) == [
            ("demo-001", "transfer_out", -22), ("demo-002", "transfer_in", 21)]
        assert hq.query("SELECT count(*) FROM hq_deltas WHERE status = 'quarantined'") == [(0,)]

        # The cross-store lookup: HQ's snapshot of the other store, with its age.
        def elsewhere() -> dict[str, Any] | None:
            r = mb.get("/api/v1/stock/SKU00027/elsewhere")
            assert r.status_code == 200, r.text
            rows = r.json()["stores"]
            return rows[0] if rows and rows[0]["on_hand"] == 3 else None

        row = wait_until(elsewhere, 10, what="the sender's level in HQ's snapshot")
        assert (row["store_id"], row["on_hand"]) == ("demo-001", 3) and row["as_of"]
        mine = wait_until(lambda: (r := admin.get("/hq/v1/stores/demo-002/stock/SKU00027")).status_code == 200
                          and r.json()["on_hand"] == 18 and r.json(), 10, what="the receiver's level at HQ")
        assert (mine["store_id"], mine["sku"]) == ("demo-002", "SKU00027") and mine["as_of"]
        hq.stop()
        offline = mb.get("/api/v1/stock/SKU00027/elsewhere")
        assert (offline.status_code, offline.json()["code"]) == (503, "hq_unreachable")
    finally:
        a.stop()
        b.stop()
        hq.stop()


# -- the steps in process: refusals, retries, feed entries that only move forward ---------------------------------

def _hub(tmp_path: Path, store: str) -> Database:
    done = sync_support.cli("seed", "--demo", "--store", store, "--data", str(tmp_path / store))
    assert done.returncode == 0, done.stderr
    return Database(tmp_path / store / "hub.sqlite3")


def test_each_step_is_idempotent_by_transfer_id_and_refused_out_of_order(tmp_path: Path) -> None:
    db = _hub(tmp_path, "demo-002")
    actor, at = Actor(user_id="U-mgr"), "2026-05-01T10:00:00.000+08:00"
    tid = uuid.uuid4()
    req = TransferCreate(transfer_id=tid, from_store="demo-001", lines=[TransferLineIn("SKU00027", 2)])
    try:
        first = db.write_sync(lambda c: transfers.request(c, req, "h1", "demo-002", actor, at))
        again = db.write_sync(lambda c: transfers.request(c, req, "h1", "demo-002", actor, at))
        assert isinstance(first, bytes) and again.body == first  # type: ignore[union-attr]
        for bad, code in ((TransferCreate(uuid.uuid4(), "demo-002", [TransferLineIn("SKU00027", 1)]), "same_store"),
                          (TransferCreate(uuid.uuid4(), "demo-001", [TransferLineIn("NOPE", 1)]), "unknown_item"),
                          (TransferCreate(uuid.uuid4(), "demo-001", [TransferLineIn("SKU00027", 1)] * 2),
                           "duplicate_sku")):
            try:
                db.write_sync(lambda c, bad=bad: transfers.request(c, bad, "h2", "demo-002", actor, at))
            except Exception as exc:  # noqa: BLE001 -- ApiError carries the code
                assert getattr(exc, "code", None) == code
            else:
                raise AssertionError(f"{code} was not refused")
        step = TransferStep([QtyIn("SKU00027", 2)])
        for fn, code in ((lambda c: transfers.receive(c, str(tid), step, "h3", "demo-002", actor, at),
                          "transfer_state"),
                         (lambda c: transfers.ship(c, str(tid), step, "h3", "demo-002", actor, at, "2026-05-01"),
                          "not_sender")):
            try:
                db.write_sync(fn)
            except Exception as exc:  # noqa: BLE001
                assert getattr(exc, "code", None) == code
            else:
                raise AssertionError(f"{code} was not refused")
        outbox = [tuple(r) for r in db.reader().execute("SELECT kind, ref FROM outbox ORDER BY seq")]
        assert outbox == [("transfer_request", str(tid))]  # one request, however often asked

        # HQ's feed moves the transfer forward only: shipped, then a late 'requested' changes nothing.
        lines = [TransferLine("SKU00027", 2, 1)]
        shipped = TransferState(str(tid), "demo-001", "demo-002", "in_transit", at, lines, shipped_at=at)
        late = TransferState(str(tid), "demo-001", "demo-002", "requested", at, [TransferLine("SKU00027", 2)])
        db.write_sync(lambda c: apply_body(c, shipped, 7, "demo-002", at))
        db.write_sync(lambda c: apply_body(c, late, 8, "demo-002", at))
        view = transfers.view(db.reader(), str(tid), "demo-002")
        assert view is not None and (view["state"], view["lines"][0]["shipped"], view["lines"][0]["in_transit"]) == (
            "in_transit", 1, 1)
        stranger = TransferState(str(uuid.uuid4()), "demo-001", "demo-003", "requested", at, lines)
        db.write_sync(lambda c: apply_body(c, stranger, 9, "demo-002", at))
        assert transfers.view(db.reader(), stranger.transfer_id, "demo-002") is None
    finally:
        db.close()


def test_hq_routes_each_transfer_step_once_and_quarantines_one_from_the_wrong_store(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "hq.sqlite3")
    create_schema(db)
    seed_demo(db, "2026-05-01T10:00:00+08:00")
    hq_key(db)
    at = "2026-05-01T10:00:00.000+08:00"
    with db.write() as tx:
        tx.run("UPDATE hq_stores SET public_key = ? WHERE store_id IN ('demo-001', 'demo-002')", (b"k" * 32,))
    tid = str(uuid.uuid4())
    lines = [TransferLineDelta("SKU00027", 3)]
    req = TransferRequestDelta(tid, "demo-001", "demo-002", lines, "U", at, 1)
    forged = TransferShippedDelta(tid, "demo-001", "demo-002", lines, "U", at, 2)  # demo-002 is not the sender

    def row(seq: int, delta: Any) -> OutRow:
        import msgspec

        return OutRow(seq, type(delta).__struct_config__.tag, tid, at, msgspec.Raw(delta_encoder.encode(delta)))

    try:
        batch = Batch("demo-002", 2, [row(1, req), row(2, forged)])
        first = ingest(db, batch, at)
        assert (first.acked, first.applied) == (2, 1)
        assert [q[0] for q in first.quarantined] == [2]
        assert ingest(db, batch, at).duplicates == 1  # a resend: the request is held; the forged row tried again
        page = read_feed(db, "demo-001", 0)
        routed = [feed_body_decoder.decode(e.body) for e in page.entries if e.store == "demo-001"]
        assert [(b.transfer_id, b.state) for b in routed if isinstance(b, TransferState)] == [(tid, "requested")]
        assert read_feed(db, "demo-002", 0).entries == []
        shipped = Batch("demo-001", 1, [row(1, TransferShippedDelta(tid, "demo-001", "demo-002", lines, "U", at, 5))])
        assert ingest(db, shipped, at).applied == 1
        assert ingest(db, shipped, at).duplicates == 1
        to_b = [feed_body_decoder.decode(e.body) for e in read_feed(db, "demo-002", 0).entries]
        assert [(b.state, b.lines[0].shipped) for b in to_b if isinstance(b, TransferState)] == [("in_transit", 3)]
    finally:
        db.close()
