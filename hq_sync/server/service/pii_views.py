"""Who saw which member's personal data unmasked, at HQ (issue 10 "Privacy": every read of unmasked
personal data is audited). One row per member shown: who, when, which fields, where (`via`).

A small stand-in for the HQ personal-data audit of branch member-privacy: when that lands, `record`
is the one function to point at it.
"""

from __future__ import annotations

from typing import Any

from hq_sync.server.storage.db import HqDb, Tx


def record(tx: Tx, username: str, member_ids: list[str], fields: str, via: str, at: str) -> None:
    tx.many("INSERT INTO hq_pii_views (at, username, member_id, fields, via) VALUES (?, ?, ?, ?, ?)",
            [(at, username, member_id, fields, via) for member_id in member_ids])


def views(db: HqDb, member_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    with db.read() as tx:
        rows = tx.all("SELECT view_id, at, username, member_id, fields, via FROM hq_pii_views"
                      + (" WHERE member_id = ?" if member_id else "") + " ORDER BY view_id DESC LIMIT ?",
                      (member_id, limit) if member_id else (limit,))
    return [{"view_id": int(r[0]), "at": r[1], "username": r[2], "member_id": r[3], "fields": r[4], "via": r[5]}
            for r in rows]
