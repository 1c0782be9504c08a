"""Transfers in the console: the chain's view with approval status, and approval where the chain wants it.

With the chain setting `transfers_need_approval` on, HQ holds a requested transfer (`hq_transfer_approvals`
`pending`) instead of routing it to the sender; an HQ operator or admin, or the region manager of the
sending store, approves it (it is routed to the sender as an unheld one is at once) or rejects it with a
reason (it is never routed). Turning the setting off leaves held transfers held until decided.
"""

from __future__ import annotations

from typing import Any

from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.targets import scope_of
from hq_sync.server.service.transfers import APPROVAL_SETTING, _state_body, list_transfers, need_approval
from hq_sync.server.storage.db import HqDb

STATES = ("requested", "in_transit", "received")
APPROVALS = ("pending", "approved", "rejected")


def listing(db: HqDb, principal: Principal, state: str = "", approval: str = "") -> list[dict[str, Any]]:
    """The chain's transfers (a region manager's: those from or to his stores), each with its approval."""
    require(principal, "transfers.read")
    if state and state not in STATES:
        raise HqError(400, "bad_state", "state is requested, in_transit or received")
    if approval and approval not in APPROVALS:
        raise HqError(400, "bad_approval", "approval is pending, approved or rejected")
    rows = list_transfers(db, principal, state or None)
    with db.read() as tx:
        scope = scope_of(tx, principal)
        found = {str(r[0]): r for r in tx.all(
            "SELECT transfer_id, status, reason, decided_by, decided_at, held_at FROM hq_transfer_approvals")}
    out = []
    for t in rows:
        a = found.get(t["transfer_id"])
        t["approval"] = None if a is None else {"status": a[1], "reason": a[2], "decided_by": a[3],
                                                "decided_at": a[4], "held_at": a[5]}
        t["may_decide"] = a is not None and a[1] == "pending" and principal.may("transfers.approve") and (
            scope is None or t["from_store"] in scope)
        if not approval or (a is not None and a[1] == approval):
            out.append(t)
    out.reverse()  # newest first
    return out


def settings(db: HqDb, principal: Principal) -> dict[str, Any]:
    require(principal, "transfers.read")
    with db.read() as tx:
        return {APPROVAL_SETTING: need_approval(tx)}


def set_need_approval(db: HqDb, principal: Principal, on: bool, at: str) -> dict[str, Any]:
    require(principal, "settings.write")
    actor = principal.username
    with db.write() as tx:
        before = need_approval(tx)
        tx.run("""INSERT INTO hq_chain_settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
                  updated_by = excluded.updated_by""", (APPROVAL_SETTING, "true" if on else "false", at, actor))
        audit(tx, principal, "settings.set", f"setting:{APPROVAL_SETTING}", before, on, at=at)
    return {APPROVAL_SETTING: on}


def decide(db: HqDb, principal: Principal, private_key: bytes, transfer_id: str, approve: bool, reason: str,
           at: str) -> dict[str, Any]:
    """Approve a held transfer (routed to the sender) or reject it with a reason (never routed). A region
    manager decides for transfers a store of his region would send."""
    reason = reason.strip()
    if not approve and not reason:
        raise HqError(422, "reason_required", "a rejection says why")
    if len(reason) > 200:
        raise HqError(422, "reason_too_long", "a reason is at most 200 characters")
    require(principal, "transfers.approve")
    actor = principal.username
    with db.write() as tx:
        scope = scope_of(tx, principal)
        row = tx.one("""SELECT t.from_store, t.to_store, a.status FROM hq_transfers t
                        JOIN hq_transfer_approvals a ON a.transfer_id = t.transfer_id WHERE t.transfer_id = ?""",
                     (transfer_id[:64],))
        if row is None or (scope is not None and row[0] not in scope and row[1] not in scope):
            raise HqError(404, "unknown_transfer", f"no transfer {transfer_id[:64]} awaits approval")
        if scope is not None and row[0] not in scope:
            raise HqError(403, "out_of_scope", "the sending store's region approves this transfer")
        if row[2] != "pending":
            raise HqError(409, "transfer_decided", f"transfer {transfer_id[:64]} was {row[2]} already", decided=row[2])
        status = "approved" if approve else "rejected"
        tx.run("UPDATE hq_transfer_approvals SET status = ?, reason = ?, decided_by = ?, decided_at = ? "
               "WHERE transfer_id = ?", (status, reason, actor, at, transfer_id))
        if approve:
            append_feed(tx, private_key, str(row[0]), _state_body(tx, transfer_id), at)
        audit(tx, principal, "transfer." + status[:-1], f"transfer:{transfer_id}", {"approval": "pending"},
              {"approval": status, "reason": reason}, at=at)
    return {"transfer_id": transfer_id, "status": status, "reason": reason}
