"""HQ's side of transfers between stores (调拨) and the per-store stock snapshot (docs/sync.md).

A transfer delta is applied inside the batch's transaction: HQ records the step (each state change
happens once: a resent delta finds the state already moved and changes nothing) and puts the
transfer's new state on the feed of the store that must act or see it — the sender when it is
requested and when it was received, the receiver when it was shipped.
"""

from __future__ import annotations

from typing import Any

from hq_sync.protocol import TransferDelta, TransferReceivedDelta, TransferRequestDelta, TransferShippedDelta
from hq_sync.server.service.access import Principal, require, require_store, scope_sql
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import StockReport, TransferLine, TransferState


def _state_body(tx: Tx, transfer_id: str) -> TransferState:
    row = tx.one("""SELECT transfer_id, from_store, to_store, state, requested_at, note, shipped_at, received_at
                    FROM hq_transfers WHERE transfer_id = ?""", (transfer_id,))
    assert row is not None
    lines = [TransferLine(str(r[0]), int(r[1]), None if r[2] is None else int(r[2]),
                          None if r[3] is None else int(r[3]))
             for r in tx.all("SELECT sku, requested, shipped, received FROM hq_transfer_lines WHERE transfer_id = ? "
                             "ORDER BY sku", (transfer_id,))]
    return TransferState(transfer_id=row[0], from_store=row[1], to_store=row[2], state=row[3], requested_at=row[4],
                         lines=lines, note=row[5], shipped_at=row[6], received_at=row[7])


def _ensure(tx: Tx, d: TransferDelta, at: str) -> bool:
    note = d.note if isinstance(d, TransferRequestDelta) else ""
    return tx.run("""INSERT INTO hq_transfers (transfer_id, from_store, to_store, state, note, requested_at, updated_at)
                     VALUES (?, ?, ?, 'requested', ?, ?, ?) ON CONFLICT (transfer_id) DO NOTHING""",
                  (d.transfer_id, d.from_store, d.to_store, note, d.at, at)) == 1


def apply_transfers(tx: Tx, deltas: list[TransferDelta], at: str) -> None:
    key_row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
    assert key_row is not None
    key = bytes(key_row[0])
    hold = need_approval(tx)
    for d in deltas:
        created = _ensure(tx, d, at)
        match d:
            case TransferRequestDelta():
                if not created:
                    continue  # a resent request: routed already
                tx.many("INSERT INTO hq_transfer_lines (transfer_id, sku, requested) VALUES (?, ?, ?) "
                        "ON CONFLICT (transfer_id, sku) DO NOTHING",
                        [(d.transfer_id, ln.sku, ln.qty) for ln in d.lines])
                if hold:  # the chain wants approval: held until approved (service/transfer_approvals.py)
                    tx.run("INSERT INTO hq_transfer_approvals (transfer_id, status, held_at) VALUES (?, 'pending', ?) "
                           "ON CONFLICT (transfer_id) DO NOTHING", (d.transfer_id, at))
                    continue
                notify = d.from_store
            case TransferShippedDelta():
                if tx.run("UPDATE hq_transfers SET state = 'in_transit', shipped_at = ?, updated_at = ? "
                          "WHERE transfer_id = ? AND state = 'requested'", (d.at, at, d.transfer_id)) != 1:
                    continue
                tx.many("""INSERT INTO hq_transfer_lines (transfer_id, sku, requested, shipped) VALUES (?, ?, 0, ?)
                           ON CONFLICT (transfer_id, sku) DO UPDATE SET shipped = excluded.shipped""",
                        [(d.transfer_id, ln.sku, ln.qty) for ln in d.lines])
                notify = d.to_store
            case TransferReceivedDelta():
                if tx.run("UPDATE hq_transfers SET state = 'received', received_at = ?, updated_at = ? "
                          "WHERE transfer_id = ? AND state IN ('requested', 'in_transit')",
                          (d.at, at, d.transfer_id)) != 1:
                    continue
                tx.many("""INSERT INTO hq_transfer_lines (transfer_id, sku, requested, received) VALUES (?, ?, 0, ?)
                           ON CONFLICT (transfer_id, sku) DO UPDATE SET received = excluded.received""",
                        [(d.transfer_id, ln.sku, ln.qty) for ln in d.lines])
                notify = d.from_store
        append_feed(tx, key, notify, _state_body(tx, d.transfer_id), at)


APPROVAL_SETTING = "transfers_need_approval"


def need_approval(tx: Tx) -> bool:
    """The chain setting `transfers_need_approval`: requested transfers wait for an approval at HQ."""
    row = tx.one("SELECT value FROM hq_chain_settings WHERE key = ?", (APPROVAL_SETTING,))
    return row is not None and row[0] == "true"


def list_transfers(db: HqDb, principal: Principal, state: str | None = None) -> list[dict[str, Any]]:
    """The chain's transfers; a region manager's are those from or to a store of his regions."""
    require(principal, "transfers.read")
    from_ok, args_from = scope_sql(principal, "from_store")
    to_ok, args_to = scope_sql(principal, "to_store")
    where, args = f"({from_ok} OR {to_ok})", [*args_from, *args_to]
    if state:
        where, args = f"{where} AND state = ?", [*args, state]
    with db.read() as tx:
        ids = [r[0] for r in tx.all(f"SELECT transfer_id FROM hq_transfers WHERE {where} "
                                    "ORDER BY requested_at, transfer_id", args)]
        bodies = [_state_body(tx, tid) for tid in ids]
    out = []
    for b in bodies:
        lines = [{"sku": ln.sku, "requested": ln.requested, "shipped": ln.shipped, "received": ln.received,
                  "in_transit": (ln.shipped or 0) if b.state == "in_transit" else 0,
                  "discrepancy": None if ln.received is None else (ln.shipped or 0) - ln.received} for ln in b.lines]
        out.append({"transfer_id": b.transfer_id, "from_store": b.from_store, "to_store": b.to_store,
                    "state": b.state, "note": b.note, "requested_at": b.requested_at, "shipped_at": b.shipped_at,
                    "received_at": b.received_at, "lines": lines,
                    "has_discrepancy": any(ln["discrepancy"] for ln in lines)})
    return out


# -- the per-store stock snapshot ------------------------------------------------------------------------------

def put_stock_report(db: HqDb, store_id: str, report: StockReport) -> int:
    """Keep the newest level per (store, sku); an older report arriving late changes nothing."""
    with db.write() as tx:
        tx.many("""INSERT INTO hq_stock_levels (store_id, sku, on_hand, as_of) VALUES (?, ?, ?, ?)
                   ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = excluded.on_hand, as_of = excluded.as_of
                   WHERE hq_stock_levels.as_of <= excluded.as_of""",
                [(store_id, sku, on_hand, report.at) for sku, on_hand in report.levels])
    return len(report.levels)


def stock_levels(db: HqDb, sku: str, store_id: str | None = None) -> list[dict[str, Any]]:
    with db.read() as tx:
        if store_id is None:
            rows = tx.all("""SELECT l.store_id, s.name, l.on_hand, l.as_of FROM hq_stock_levels l
                             JOIN hq_stores s ON s.store_id = l.store_id WHERE l.sku = ? ORDER BY l.store_id""", (sku,))
        else:
            rows = tx.all("""SELECT l.store_id, s.name, l.on_hand, l.as_of FROM hq_stock_levels l
                             JOIN hq_stores s ON s.store_id = l.store_id WHERE l.sku = ? AND l.store_id = ?""",
                          (sku, store_id))
    return [{"store_id": r[0], "name": r[1], "on_hand": int(r[2]), "as_of": r[3]} for r in rows]


def store_stock(db: HqDb, principal: Principal, store_id: str, sku: str) -> dict[str, Any]:
    require(principal, "stock.read")
    with db.read() as tx:
        require_store(tx, principal, store_id)
    rows = stock_levels(db, sku, store_id)
    if not rows:
        raise HqError(404, "no_snapshot", f"HQ holds no stock level of {sku[:64]} at {store_id[:64]}")
    return {"sku": sku, **rows[0]}
