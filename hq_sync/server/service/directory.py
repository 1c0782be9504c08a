"""The chain's member directory as it changes with each store's batch (docs/sync.md "Members across the
chain"), run inside the batch's transaction after its deltas are applied:

- a member created at a store, or a profile a store changed, goes to every store (`members` to `*`);
- a new or changed phone or card that another member already holds is merged (service/merges.py);
- the balances of members whose money moved go to the stores that deal with them (the acting store and
  every store holding escrow for them), as `member_balances` entries saying how far each store's own
  stream is in them, so a store's lookup shows the chain-wide figure without asking HQ.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from hq_sync.protocol import MemberDelta
from hq_sync.server.service import pii
from hq_sync.server.service.access import system_principal
from hq_sync.server.service.feed import queue_feed_many
from hq_sync.server.service.members import balance_rows, member_rows_of, resolve, resolve_many, send_balances
from hq_sync.server.service.merges import merge_duplicates
from hq_sync.server.storage.db import Tx
from hq_sync.wire import MemberBalances, MembersPut

SYNC_ACTOR = system_principal("hq-sync")


def known_members(tx: Tx, member_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(member_ids))
    known: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        known.update(str(r[0]) for r in tx.all(f"SELECT member_id FROM hq_members WHERE member_id IN ({marks})",
                                                chunk))
    return known


def after_batch(tx: Tx, store_id: str, acked: int, applied: list[MemberDelta], known_before: set[str],
                moved: Iterable[str], at: str) -> int:
    """Feed the directory changes of one applied batch; returns how many feed entries it appended."""
    moved = set(moved)
    if not applied and not moved:
        return 0
    key_row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
    if key_row is None:
        return 0
    private_key = bytes(key_row[0])
    appended = 0
    aliases = resolve_many(tx, [d.member_id for d in applied])
    changed: list[str] = []
    for delta in applied:
        if delta.member_id in aliases:
            continue  # a later profile of a merged id: the merge decided the profile
        if delta.member_id in known_before and _edit(tx, delta):
            changed.append(delta.member_id)
        elif delta.member_id not in known_before:
            changed.append(delta.member_id)
    if changed:
        queue_feed_many(tx, private_key, [
            ("*", MembersPut(members=member_rows_of(tx, changed))),
            ("*", MemberBalances(rows=balance_rows(tx, changed), as_of=at, store=store_id, acked=acked))], at)
        appended += 2
    merges = merge_duplicates(tx, private_key, changed, SYNC_ACTOR, at)
    appended += 2 * len(merges)
    moved = {resolve(tx, m) for m in moved} | {m["winner"] for m in merges}
    if moved:
        appended += send_balances(tx, private_key, moved, at, acting=(store_id, acked))
    return appended


def _edit(tx: Tx, delta: MemberDelta) -> bool:
    """A store's new profile of a member HQ knows; True if it changed anything."""
    row = tx.one("SELECT tier, pii, tags, erased_at FROM hq_members WHERE member_id = ?", (delta.member_id,))
    if row is None or row[3] is not None:
        return False  # unknown, or erased on request: a store's older profile does not bring the person back
    tags = msgspec.json.encode(delta.tags).decode()
    held = pii.opened(tx, delta.member_id, row[1])
    new = pii.Personal(phone=delta.phone, name=delta.name, birthday=delta.birthday, card_no=delta.card_no)
    if (row[0], held, row[2]) == (delta.tier, new, tags):
        return False
    tx.run("UPDATE hq_members SET tier = ?, tags = ? WHERE member_id = ?", (delta.tier, tags, delta.member_id))
    pii.write_personal(tx, delta.member_id, new)
    return True
