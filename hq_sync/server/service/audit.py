"""The audit log: every write at HQ, through the API or the console, appends one row to `hq_audit`
(who, when, which role, what action on which target, the state before and after as JSON) in the same
transaction as the write, so a write is never without its row nor a row without its write.

Other services call `audit(tx, actor, action, target, before, after)`. Secrets never go in: a
password reset records that it happened, not the password or its hash.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.errors import now_text
from hq_sync.server.storage.db import HqDb, Tx

MAX_LIMIT = 200
MAX_OFFSET = 10_000_000
_json = msgspec.json.Encoder(order="sorted")


def _encoded(value: Any) -> str | None:
    return None if value is None else _json.encode(msgspec.to_builtins(value)).decode()


def audit(tx: Tx, actor: Principal, action: str, target: str, before: Any, after: Any, *,
          at: str | None = None) -> None:
    """Record one write (call it inside the write's transaction). `action` is a dotted name such as
    `price.set` or `user.role`; `target` names what changed (`store:demo-001`, `sku:SKU00001`)."""
    tx.run("""INSERT INTO hq_audit (at, actor, role, action, target, before_json, after_json)
              VALUES (?, ?, ?, ?, ?, ?, ?)""",
           (at or now_text(), actor.username, actor.role, action, target, _encoded(before), _encoded(after)))


class AuditRow(msgspec.Struct, frozen=True):
    audit_id: int
    at: str
    actor: str
    role: str
    action: str
    target: str
    before: Any
    after: Any


class AuditPage(msgspec.Struct, frozen=True):
    entries: list[AuditRow]
    total: int
    limit: int
    offset: int


def _decoded(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


def audit_page(db: HqDb, principal: Principal, *, actor: str = "", action: str = "", target: str = "",
               limit: int = 50, offset: int = 0) -> AuditPage:
    """Newest first. `actor` matches exactly, `action` exactly or as a prefix ending in `.`
    (`price.`), `target` exactly or as a prefix ending in `:` (`store:`)."""
    require(principal, "audit.read")
    limit = max(1, min(limit, MAX_LIMIT))
    offset = max(0, min(offset, MAX_OFFSET))
    where: list[str] = []
    args: list[Any] = []
    for column, value, joint in (("actor", actor, ""), ("action", action, "."), ("target", target, ":")):
        if not value:
            continue
        if joint and value.endswith(joint):
            where.append(f"substr({column}, 1, ?) = ?")
            args += [len(value), value]
        else:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with db.read() as tx:
        total_row = tx.one(f"SELECT count(*) FROM hq_audit {clause}", args)
        rows = tx.all(f"""SELECT audit_id, at, actor, role, action, target, before_json, after_json FROM hq_audit
                          {clause} ORDER BY audit_id DESC LIMIT ? OFFSET ?""", [*args, limit, offset])
    return AuditPage([AuditRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], _decoded(r[6]), _decoded(r[7]))
                      for r in rows], int(total_row[0]) if total_row else 0, limit, offset)


def audit_actions(db: HqDb) -> list[str]:
    """The actions the log holds (for the audit page's filter)."""
    with db.read() as tx:
        return [str(r[0]) for r in tx.all("SELECT DISTINCT action FROM hq_audit ORDER BY action")]
