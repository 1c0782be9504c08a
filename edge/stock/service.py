"""Stock operations a manager performs: receiving goods, corrections and counts.

Each request is idempotent by its client id (stored in `client_requests`) and is one transaction:
movements, balances, alerts, one journal record and one outbox delta per movement.
"""

from __future__ import annotations

import sqlite3

import msgspec

from edge.errors import ApiError
from edge.journal import chain
from edge.outbox import queue as outbox
from edge.sales.checkout import Replay, replay_or_conflict
from edge.stock import ledger
from edge.stock.ledger import Actor
from edge.stock.models import AdjustRequest, Alert, MovementResult, ReceiveRequest, StockView
from hq_sync.protocol import StockDelta

_encoder = msgspec.json.Encoder()


def stock_view(conn: sqlite3.Connection, sku: str) -> StockView | None:
    item = conn.execute("SELECT sku, name_zh, unit, low_threshold, high_threshold FROM items WHERE sku = ?",
                        (sku,)).fetchone()
    if item is None:
        return None
    alerts = [Alert(*r) for r in conn.execute(
        """SELECT alert_id, sku, kind, on_hand, threshold, raised_at FROM stock_alerts
           WHERE sku = ? AND cleared_at IS NULL ORDER BY alert_id""", (sku,))]
    return StockView(sku=item[0], name=item[1], unit=item[2], on_hand=ledger.on_hand(conn, sku),
                     batches=[b for b in ledger.batch_levels(conn, sku) if b.on_hand != 0 or b.batch_id],
                     thresholds={"low": item[3], "high": item[4]}, alerts=alerts)


def _remember(conn: sqlite3.Connection, request_id: str, kind: str, digest: str, body: bytes, at: str) -> None:
    conn.execute("INSERT INTO client_requests (request_id, kind, request_hash, response, created_at)"
                 " VALUES (?, ?, ?, ?, ?)", (request_id, kind, digest, body, at))


def _move(conn: sqlite3.Connection, *, sku: str, qty: int, kind: ledger.MovementKind, batch_id: int, lot: str | None,
          expiry: str | None, ref: str, reason: str, actor: Actor, at: str, seq: int) -> int:
    movement_id = ledger.record(conn, sku=sku, qty=qty, kind=kind, at=at, actor=actor, ref=ref, batch_id=batch_id,
                                reason=reason)
    outbox.append(conn, StockDelta(movement_id=movement_id, sku=sku, kind=kind, qty=qty, user_id=actor.user_id,
                                   at=at, journal_seq=seq, lot=lot, expiry=expiry, ref=ref, reason=reason), ref, at)
    return movement_id


def receive(conn: sqlite3.Connection, req: ReceiveRequest, digest: str, actor: Actor, at: str) -> Replay | bytes:
    rid = str(req.receipt_id)
    replay = replay_or_conflict(conn, "client_requests", "request_id", rid, digest)
    if replay is not None:
        return replay
    for line in req.lines:
        if conn.execute("SELECT 1 FROM items WHERE sku = ?", (line.sku,)).fetchone() is None:
            raise ApiError(422, "unknown_item", f"no item with sku {line.sku}")
    appended = chain.append(conn, "stock.receive", rid, at, {
        "user_id": actor.user_id, "supplier": req.supplier,
        "lines": [[ln.sku, ln.qty, ln.lot, ln.expiry.isoformat() if ln.expiry else None] for ln in req.lines]})
    movements = []
    for line in req.lines:
        expiry = line.expiry.isoformat() if line.expiry else None
        # Goods with an expiry always form a batch (named by the date when no lot is given) so FEFO sees it.
        lot = line.lot or (f"EXP-{expiry}" if expiry else None)
        batch_id = ledger.ensure_batch(conn, line.sku, lot, expiry, at) if lot else ledger.UNBATCHED
        movements.append(_move(conn, sku=line.sku, qty=line.qty, kind="receive", batch_id=batch_id, lot=lot,
                               expiry=expiry, ref=rid, reason=req.supplier, actor=actor, at=at, seq=appended.seq))
    skus = sorted({ln.sku for ln in req.lines})
    for sku in skus:
        ledger.check_thresholds(conn, sku, at)
    body = _encoder.encode(MovementResult(rid, movements, {s: ledger.on_hand(conn, s) for s in skus},
                                          appended.seq, appended.hash))
    _remember(conn, rid, "stock.receive", digest, body, at)
    return body


def adjust(conn: sqlite3.Connection, req: AdjustRequest, digest: str, actor: Actor, at: str) -> Replay | bytes:
    rid = str(req.adjustment_id)
    replay = replay_or_conflict(conn, "client_requests", "request_id", rid, digest)
    if replay is not None:
        return replay
    if conn.execute("SELECT 1 FROM items WHERE sku = ?", (req.sku,)).fetchone() is None:
        raise ApiError(422, "unknown_item", f"no item with sku {req.sku}")
    batch_id = ledger.UNBATCHED
    if req.lot is not None:
        row = conn.execute("SELECT batch_id FROM batches WHERE sku = ? AND lot = ?", (req.sku, req.lot)).fetchone()
        if row is None:
            raise ApiError(422, "unknown_batch", f"{req.sku} has no lot {req.lot}")
        batch_id = int(row[0])
    if req.kind == "count":
        if req.qty < 0:
            raise ApiError(400, "invalid_quantity", "a count cannot be negative")
        if req.lot is not None:
            current = conn.execute("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ? AND batch_id = ?",
                                   (req.sku, batch_id)).fetchone()[0]
        else:
            current = ledger.on_hand(conn, req.sku)
        delta = req.qty - int(current)
    elif req.kind in ("transfer_out", "transfer_in"):
        if req.qty <= 0:
            raise ApiError(400, "invalid_quantity", "a transfer moves a positive quantity")
        delta = -req.qty if req.kind == "transfer_out" else req.qty
    else:
        if req.qty == 0:
            raise ApiError(400, "invalid_quantity", "an adjustment of zero changes nothing")
        delta = req.qty
    appended = chain.append(conn, f"stock.{req.kind}", rid, at, {
        "user_id": actor.user_id, "sku": req.sku, "lot": req.lot, "qty": req.qty, "delta": delta,
        "reason": req.reason})
    movements = []
    if delta:
        if req.kind == "count" and req.lot is None and delta < 0:
            # A short count takes from the batches in FEFO order, as sales would have.
            for part_batch, qty in ledger.fefo(conn, req.sku, -delta, "0000-00-00"):
                movements.append(_move(conn, sku=req.sku, qty=-qty, kind="count", batch_id=part_batch, lot=None,
                                       expiry=None, ref=rid, reason=req.reason, actor=actor, at=at, seq=appended.seq))
        else:
            movements.append(_move(conn, sku=req.sku, qty=delta, kind=req.kind, batch_id=batch_id, lot=req.lot,
                                   expiry=None, ref=rid, reason=req.reason, actor=actor, at=at, seq=appended.seq))
        ledger.check_thresholds(conn, req.sku, at)
    body = _encoder.encode(MovementResult(rid, movements, {req.sku: ledger.on_hand(conn, req.sku)},
                                          appended.seq, appended.hash))
    _remember(conn, rid, f"stock.{req.kind}", digest, body, at)
    return body
