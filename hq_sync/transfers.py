"""Transfers between stores (调拨), the hub's side (docs/sync.md "Transfers").

The requesting store (`to_store`) records a request and sends it up; HQ routes it down the sender's
feed; the sender ships (transfer_out movements, FEFO over batches as sales take) and the receiver
receives (transfer_in movements), each in one writer transaction with its journal record, its stock
deltas and a transfer delta in the outbox. Every step is idempotent by transfer id: a retried
request with the same body gets the same answer, a different body or a step out of order is a 409.
A feed entry (`TransferState`) only ever moves a transfer's state forward.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from edge.errors import ApiError
from edge.journal import chain
from edge.outbox import queue as outbox
from edge.sales.checkout import Replay, replay_or_conflict
from edge.stock import ledger
from edge.stock.ledger import Actor
from hq_sync.protocol import (
    StockDelta,
    TransferLineDelta,
    TransferReceivedDelta,
    TransferRequestDelta,
    TransferShippedDelta,
)
from hq_sync.wire import TransferState

STATES = ("requested", "in_transit", "received")
encoder = msgspec.json.Encoder()

Sku = Annotated[str, Meta(min_length=1, max_length=64)]
StoreId = Annotated[str, Meta(min_length=1, max_length=64)]


class TransferLineIn(msgspec.Struct, frozen=True):
    sku: Sku
    qty: Annotated[int, Meta(ge=1, le=10_000_000)]


class TransferCreate(msgspec.Struct, frozen=True, omit_defaults=True):
    transfer_id: uuid.UUID
    from_store: StoreId
    lines: Annotated[list[TransferLineIn], Meta(min_length=1, max_length=500)]
    note: Annotated[str, Meta(max_length=200)] = ""


class QtyIn(msgspec.Struct, frozen=True):
    sku: Sku
    qty: Annotated[int, Meta(ge=0, le=10_000_000)]


class TransferStep(msgspec.Struct, frozen=True):
    """Shipped or received quantities per sku; a sku left out counts as 0."""

    lines: Annotated[list[QtyIn], Meta(max_length=500)]


# -- reading ------------------------------------------------------------------------------------------

def view(conn: sqlite3.Connection, transfer_id: str, store_id: str) -> dict[str, Any] | None:
    row = conn.execute("""SELECT transfer_id, from_store, to_store, state, note, requested_at, shipped_at, received_at
                          FROM transfers WHERE transfer_id = ?""", (transfer_id,)).fetchone()
    if row is None:
        return None
    lines = []
    for sku, requested, shipped, received in conn.execute(
            "SELECT sku, requested, shipped, received FROM transfer_lines WHERE transfer_id = ? ORDER BY sku",
            (transfer_id,)):
        lines.append({"sku": sku, "requested": requested, "shipped": shipped, "received": received,
                      "in_transit": (shipped or 0) if row[3] == "in_transit" else 0,
                      "discrepancy": None if received is None else (shipped or 0) - received})
    return {"transfer_id": row[0], "from_store": row[1], "to_store": row[2],
            "direction": "out" if row[1] == store_id else "in", "state": row[3], "note": row[4],
            "requested_at": row[5], "shipped_at": row[6], "received_at": row[7], "lines": lines,
            "has_discrepancy": any(ln["discrepancy"] for ln in lines)}


def listing(conn: sqlite3.Connection, store_id: str, direction: str | None, state: str | None) -> list[dict[str, Any]]:
    sql = "SELECT transfer_id FROM transfers WHERE 1 = 1"
    args: list[str] = []
    if direction == "out":
        sql += " AND from_store = ?"
        args.append(store_id)
    elif direction == "in":
        sql += " AND to_store = ?"
        args.append(store_id)
    if state:
        sql += " AND state = ?"
        args.append(state)
    ids = [r[0] for r in conn.execute(sql + " ORDER BY requested_at, transfer_id", args)]
    return [v for tid in ids if (v := view(conn, tid, store_id)) is not None]


# -- the three steps ----------------------------------------------------------------------------------------

def _remember(conn: sqlite3.Connection, request_id: str, kind: str, digest: str, body: bytes, at: str) -> None:
    conn.execute("INSERT INTO client_requests (request_id, kind, request_hash, response, created_at)"
                 " VALUES (?, ?, ?, ?, ?)", (request_id, kind, digest, body, at))


def _unique_skus(skus: list[str]) -> None:
    if len(set(skus)) != len(skus):
        raise ApiError(422, "duplicate_sku", "each sku appears once in a transfer")


def request(conn: sqlite3.Connection, req: TransferCreate, digest: str, store_id: str, actor: Actor,
            at: str) -> Replay | bytes:
    tid = str(req.transfer_id)
    replay = replay_or_conflict(conn, "client_requests", "request_id", tid, digest)
    if replay is not None:
        return replay
    if conn.execute("SELECT 1 FROM transfers WHERE transfer_id = ?", (tid,)).fetchone() is not None:
        raise ApiError(409, "id_conflict", f"transfer_id {tid} is already used")
    if req.from_store == store_id:
        raise ApiError(422, "same_store", "a store requests stock from another store")
    _unique_skus([ln.sku for ln in req.lines])
    for line in req.lines:
        if conn.execute("SELECT 1 FROM items WHERE sku = ?", (line.sku,)).fetchone() is None:
            raise ApiError(422, "unknown_item", f"no item with sku {line.sku}")
    appended = chain.append(conn, "transfer.request", tid, at, {
        "user_id": actor.user_id, "from_store": req.from_store, "to_store": store_id,
        "lines": [[ln.sku, ln.qty] for ln in req.lines], "note": req.note})
    conn.execute("""INSERT INTO transfers (transfer_id, from_store, to_store, state, note, requested_at, updated_at)
                    VALUES (?, ?, ?, 'requested', ?, ?, ?)""", (tid, req.from_store, store_id, req.note, at, at))
    conn.executemany("INSERT INTO transfer_lines (transfer_id, sku, requested) VALUES (?, ?, ?)",
                     [(tid, ln.sku, ln.qty) for ln in req.lines])
    outbox.append(conn, TransferRequestDelta(
        transfer_id=tid, from_store=req.from_store, to_store=store_id,
        lines=[TransferLineDelta(ln.sku, ln.qty) for ln in req.lines], user_id=actor.user_id, at=at,
        journal_seq=appended.seq, note=req.note), tid, at)
    body = encoder.encode(view(conn, tid, store_id))
    _remember(conn, tid, "transfer.request", digest, body, at)
    return body


def _step_target(conn: sqlite3.Connection, tid: str, store_id: str, role: str, state: str) -> tuple[str, str]:
    row = conn.execute("SELECT from_store, to_store, state FROM transfers WHERE transfer_id = ?", (tid,)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_transfer", f"no transfer {tid}")
    if (row[0] if role == "sender" else row[1]) != store_id:
        raise ApiError(403, f"not_{role}", f"only the {role} of transfer {tid} may do this")
    if row[2] != state:
        raise ApiError(409, "transfer_state", f"transfer {tid} is {row[2]}", state=row[2])
    return str(row[0]), str(row[1])


def _quantities(conn: sqlite3.Connection, tid: str, req: TransferStep) -> dict[str, int]:
    """The step's quantity for every line of the transfer (0 where the request leaves a sku out)."""
    _unique_skus([ln.sku for ln in req.lines])
    known = [r[0] for r in conn.execute("SELECT sku FROM transfer_lines WHERE transfer_id = ? ORDER BY sku", (tid,))]
    given = {ln.sku: ln.qty for ln in req.lines}
    extra = sorted(set(given) - set(known))
    if extra:
        raise ApiError(422, "unknown_line", f"transfer {tid} has no line for {', '.join(extra)[:200]}")
    return {sku: given.get(sku, 0) for sku in known}


def _stock_delta(conn: sqlite3.Connection, movement_id: int, sku: str, kind: ledger.MovementKind, qty: int,
                 batch_id: int, tid: str, reason: str, actor: Actor, at: str, seq: int) -> None:
    lot = None
    if batch_id:
        row = conn.execute("SELECT lot FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        lot = row[0] if row else None
    outbox.append(conn, StockDelta(movement_id=movement_id, sku=sku, kind=kind, qty=qty, user_id=actor.user_id,
                                   at=at, journal_seq=seq, lot=lot, ref=tid, reason=reason), tid, at)


def ship(conn: sqlite3.Connection, tid: str, req: TransferStep, digest: str, store_id: str, actor: Actor, at: str,
         today: str) -> Replay | bytes:
    replay = replay_or_conflict(conn, "client_requests", "request_id", f"{tid}:ship", digest)
    if replay is not None:
        return replay
    from_store, to_store = _step_target(conn, tid, store_id, "sender", "requested")
    qty = _quantities(conn, tid, req)
    appended = chain.append(conn, "transfer.ship", tid, at, {
        "user_id": actor.user_id, "to_store": to_store, "lines": [[s, q] for s, q in qty.items()]})
    reason = f"transfer to {to_store}"
    for sku, n in qty.items():
        if n > 0:
            for batch_id, part in ledger.fefo(conn, sku, n, today):
                mid = ledger.record(conn, sku=sku, qty=-part, kind="transfer_out", at=at, actor=actor, ref=tid,
                                    batch_id=batch_id, reason=reason)
                _stock_delta(conn, mid, sku, "transfer_out", -part, batch_id, tid, reason, actor, at, appended.seq)
            ledger.check_thresholds(conn, sku, at)
        conn.execute("UPDATE transfer_lines SET shipped = ? WHERE transfer_id = ? AND sku = ?", (n, tid, sku))
    conn.execute("UPDATE transfers SET state = 'in_transit', shipped_at = ?, updated_at = ? WHERE transfer_id = ?",
                 (at, at, tid))
    outbox.append(conn, TransferShippedDelta(
        transfer_id=tid, from_store=from_store, to_store=to_store,
        lines=[TransferLineDelta(s, q) for s, q in qty.items()], user_id=actor.user_id, at=at,
        journal_seq=appended.seq), tid, at)
    body = encoder.encode(view(conn, tid, store_id))
    _remember(conn, f"{tid}:ship", "transfer.ship", digest, body, at)
    return body


def receive(conn: sqlite3.Connection, tid: str, req: TransferStep, digest: str, store_id: str, actor: Actor,
            at: str) -> Replay | bytes:
    replay = replay_or_conflict(conn, "client_requests", "request_id", f"{tid}:receive", digest)
    if replay is not None:
        return replay
    from_store, to_store = _step_target(conn, tid, store_id, "receiver", "in_transit")
    qty = _quantities(conn, tid, req)
    shipped = {r[0]: int(r[1] or 0) for r in conn.execute(
        "SELECT sku, shipped FROM transfer_lines WHERE transfer_id = ?", (tid,))}
    discrepancies = [(sku, shipped[sku] - n) for sku, n in qty.items() if shipped[sku] != n]
    appended = chain.append(conn, "transfer.receive", tid, at, {
        "user_id": actor.user_id, "from_store": from_store, "lines": [[s, q] for s, q in qty.items()],
        "discrepancies": [list(d) for d in discrepancies]})
    reason = f"transfer from {from_store}"
    for sku, n in qty.items():
        if n > 0:
            mid = ledger.record(conn, sku=sku, qty=n, kind="transfer_in", at=at, actor=actor, ref=tid, reason=reason)
            _stock_delta(conn, mid, sku, "transfer_in", n, ledger.UNBATCHED, tid, reason, actor, at, appended.seq)
            ledger.check_thresholds(conn, sku, at)
        conn.execute("UPDATE transfer_lines SET received = ? WHERE transfer_id = ? AND sku = ?", (n, tid, sku))
    conn.execute("UPDATE transfers SET state = 'received', received_at = ?, updated_at = ? WHERE transfer_id = ?",
                 (at, at, tid))
    outbox.append(conn, TransferReceivedDelta(
        transfer_id=tid, from_store=from_store, to_store=to_store,
        lines=[TransferLineDelta(s, q) for s, q in qty.items()], user_id=actor.user_id, at=at,
        journal_seq=appended.seq, discrepancies=[TransferLineDelta(s, d) for s, d in discrepancies]), tid, at)
    body = encoder.encode(view(conn, tid, store_id))
    _remember(conn, f"{tid}:receive", "transfer.receive", digest, body, at)
    return body


# -- from HQ's feed ---------------------------------------------------------------------------------------------

def apply_state(conn: sqlite3.Connection, body: TransferState, store_id: str, now: str) -> bool:
    """HQ's view of a transfer this store is part of: insert it, or move it forward (never back)."""
    if store_id not in (body.from_store, body.to_store) or body.state not in STATES:
        return False
    row = conn.execute("SELECT state FROM transfers WHERE transfer_id = ?", (body.transfer_id,)).fetchone()
    if row is None:
        conn.execute("""INSERT INTO transfers (transfer_id, from_store, to_store, state, note, requested_at, shipped_at,
                            received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                     (body.transfer_id, body.from_store, body.to_store, body.state, body.note, body.requested_at,
                      body.shipped_at, body.received_at, now))
    elif STATES.index(body.state) > STATES.index(row[0]):
        conn.execute("""UPDATE transfers SET state = ?, shipped_at = coalesce(shipped_at, ?),
                            received_at = coalesce(received_at, ?), updated_at = ? WHERE transfer_id = ?""",
                     (body.state, body.shipped_at, body.received_at, now, body.transfer_id))
    else:
        return False
    conn.executemany(
        """INSERT INTO transfer_lines (transfer_id, sku, requested, shipped, received) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (transfer_id, sku) DO UPDATE SET shipped = coalesce(transfer_lines.shipped, excluded.shipped),
               received = coalesce(transfer_lines.received, excluded.received)""",
        [(body.transfer_id, ln.sku, ln.requested, ln.shipped, ln.received) for ln in body.lines])
    return True


# -- stock levels for HQ's cross-store lookup --------------------------------------------------------------------

def levels_since(conn: sqlite3.Connection, after: int) -> tuple[int, list[tuple[str, int]]]:
    """(newest movement id, on-hand of every sku that moved after movement `after`; every item when 0)."""
    marker = int(conn.execute("SELECT coalesce(max(movement_id), 0) FROM stock_movements").fetchone()[0])
    if after == 0:
        rows = conn.execute("""SELECT i.sku, coalesce(sum(b.on_hand), 0) FROM items i
                               LEFT JOIN stock_balance b ON b.sku = i.sku GROUP BY i.sku ORDER BY i.sku""")
    else:
        rows = conn.execute("""SELECT sku, coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku IN
                               (SELECT DISTINCT sku FROM stock_movements WHERE movement_id > ?)
                               GROUP BY sku ORDER BY sku""", (after,))
    return marker, [(str(r[0]), int(r[1])) for r in rows]
