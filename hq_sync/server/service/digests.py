"""Daily digests: compare a store's per-day counts and sums with HQ's, and ask for a resend of days that differ."""

from __future__ import annotations

from typing import Any

from hq_sync.server.service.access import Principal, require, require_store
from hq_sync.server.storage.db import HqDb
from hq_sync.wire import (
    DigestRow,
    DigestVerdict,
)

# -- digests -------------------------------------------------------------------------------------------------------

def check_digests(db: HqDb, store_id: str, rows: list[DigestRow], upto: int, at: str) -> DigestVerdict:
    """Compare the store's daily digests with HQ's (over applied deltas up to the store's ack); a day
    that differs is recorded as a mismatch and its sequence range is asked for again."""
    days = sorted({r.day for r in rows})
    theirs: dict[tuple[str, str], DigestRow] = {(r.day, r.kind): r for r in rows}
    mismatched: list[str] = []
    resend: list[tuple[int, int]] = []
    with db.write() as tx:
        ours: dict[tuple[str, str], tuple[int, int]] = {}
        for day in days:
            for kind, count, total in tx.all(
                    """SELECT kind, count(*), coalesce(sum(amount), 0) FROM hq_deltas
                       WHERE store_id = ? AND day = ? AND status = 'applied' AND seq <= ? GROUP BY kind""",
                    (store_id, day, upto)):
                ours[(day, str(kind))] = (int(count), int(total))
        for day in days:
            keys = {k for k in theirs if k[0] == day} | {k for k in ours if k[0] == day}
            diff = [f"{k[1]}: store {theirs[k].count}/{theirs[k].total} hq {ours.get(k, (0, 0))[0]}/"
                    f"{ours.get(k, (0, 0))[1]}" if k in theirs else f"{k[1]}: only at hq"
                    for k in sorted(keys)
                    if k not in theirs or (theirs[k].count, theirs[k].total) != ours.get(k, (0, 0))]
            if diff:
                mismatched.append(day)
                span = [r for r in rows if r.day == day]
                resend.append((min(r.first_seq for r in span), max(r.last_seq for r in span)))
            tx.run("""INSERT INTO hq_digest_checks (store_id, day, status, detail, checked_at, mismatches)
                      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, day) DO UPDATE SET status = excluded.status,
                      detail = excluded.detail, checked_at = excluded.checked_at,
                      mismatches = hq_digest_checks.mismatches + excluded.mismatches""",
                   (store_id, day, "mismatch" if diff else "match", "; ".join(diff)[:1000], at, 1 if diff else 0))
    return DigestVerdict(mismatched=mismatched, resend=resend)


def digest_checks(db: HqDb, principal: Principal, store_id: str) -> list[dict[str, Any]]:
    require(principal, "stores.read")
    with db.read() as tx:
        require_store(tx, principal, store_id)
        rows = tx.all("SELECT day, status, detail, checked_at, mismatches FROM hq_digest_checks WHERE store_id = ? "
                      "ORDER BY day", (store_id,))
    return [{"day": r[0], "status": r[1], "detail": r[2], "checked_at": r[3], "mismatches": int(r[4])} for r in rows]
