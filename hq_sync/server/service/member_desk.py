"""HQ staff's work on members (the console's Members page and its API): search, a member's chain-wide view
with history across stores, manual adjustments of balance and points, tier and tags.

Rules (docs/hq-console.md "Members"):
- Personal data is masked unless the viewer's role holds `members.phone` (permissions.toml); every
  unmasked view is recorded (`pii_views.record`), one row per member shown.
- A member is chain-wide: anyone who may open the page finds any member and sees the chain-wide
  balance and points. Per-store detail — escrow held by a store, sales, top-ups and ledger entries
  made at a store — is shown to a region manager only for the stores of his regions; the rest is
  summed up as "other stores" so the figures still add up.
- An adjustment is an append-only `hq_member_ledger` entry (kind `adjust`, no store) and an
  `hq_member_adjustments` row with its reason, in one transaction with the audit row. It keeps
  `balance ≥ Σ escrow ≥ 0`: a negative adjustment may take only the unallocated part; beyond it the
  answer is `409 escrow_held` (with `unallocated`), and the page offers to reclaim the stores'
  escrow first (`members.reclaim`); once the stores have released it, the adjustment goes through.
  The adjustment id makes a resent form harmless.
- Tier and tags edits go down the feed to every store (a `members` entry), audited.
- A region manager adjusts and edits only members whose home store is in his regions (403
  `out_of_scope` otherwise, nothing written).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec

from hq_sync.server.service import pii, pii_views
from hq_sync.server.service.access import (
    Principal,
    in_scope,
    out_of_scope,
    require,
    scope_sql,
    stores_in_scope,
)
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.members import member_rows
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import MembersPut

MAX_ADJUST = 10_000_000  # fen or points in one manual adjustment (¥100,000)
MAX_REASON = 200
MAX_TAGS = 20
SEARCH_LIMIT = 50
HISTORY_LIMIT = 100
_TAG = re.compile(r"^[\w\-.:一-鿿]{1,32}$")


def mask_phone(phone: str | None) -> str | None:
    """138****8000 (as the hub masks it)."""
    if not phone or len(phone) < 7:
        return phone
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1) if name else name


def sees_pii(viewer: Principal) -> bool:
    """Full phones, cards, names and birthdays: only roles that need them."""
    return viewer.may("members.phone")


def _profile(row: tuple[Any, ...], unmasked: bool) -> dict[str, Any]:
    member_id, tier, phone, card_no, name, birthday, tags, home_store, created_at = row[:9]
    return {"member_id": member_id, "tier": tier,
            "phone": phone if unmasked else mask_phone(phone),
            "card_no": card_no if unmasked else mask_phone(card_no),
            "name": name if unmasked else mask_name(name),
            "birthday": birthday if unmasked else None,
            "tags": msgspec.json.decode(tags, type=list[str]) if tags else [],
            "home_store": home_store, "created_at": created_at, "masked": not unmasked}


# Personal data is sealed (service/pii.py, docs/privacy.md): `_opened` puts phone, card, name and
# birthday in the places the NULLs keep for them.
_PROFILE = "member_id, tier, pii, NULL, NULL, NULL, tags, home_store, created_at, balance, points"


def _opened(tx: Tx, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        p = pii.opened(tx, str(r[0]), r[2])
        out.append((r[0], r[1], p.phone, p.card_no, p.name, p.birthday, *r[6:]))
    return out


def find_rows(tx: Tx, query: str, limit: int) -> list[tuple[Any, ...]]:
    """Members matching `query`: a member id, a card number or phone (whole), the last four digits of a
    phone, or part of a name. The one place HQ's member search reads personal columns."""
    q = query.strip()
    if not q:
        return []
    digits = q.replace(" ", "").replace("-", "")
    args: tuple[Any, ...]
    if digits.isdigit():
        k = pii.keys(tx)
        if len(digits) == 4:
            sql, args = f"SELECT {_PROFILE} FROM hq_members WHERE phone_last4 = ? ORDER BY member_id LIMIT ?", \
                (digits, limit)
        else:
            sql, args = (f"SELECT {_PROFILE} FROM hq_members WHERE phone_hash = ? OR card_hash = ? "
                         "ORDER BY member_id LIMIT ?", (k.phone_hash(digits), k.card_hash(digits), limit))
        return _opened(tx, tx.all(sql, args))
    exact = tx.all(f"SELECT {_PROFILE} FROM hq_members WHERE member_id = ?", (q.upper(),))
    if exact:
        return _opened(tx, exact)
    # Names are sealed: part of a name is found by opening the members one by one (a walk over the
    # table, stopped at the limit; docs/privacy.md).
    found = []
    for row in _opened(tx, tx.all(f"SELECT {_PROFILE} FROM hq_members WHERE pii IS NOT NULL ORDER BY member_id")):
        if q in (row[4] or ""):
            found.append(row)
            if len(found) >= limit:
                break
    return found


def search(db: HqDb, viewer: Principal, query: str, at: str, limit: int = SEARCH_LIMIT,
           via: str = "console") -> list[dict[str, Any]]:
    """Members matching `query`, masked for the viewer; unmasked results are recorded as viewed."""
    require(viewer, "members.read")
    if len(query) > 64:
        raise HqError(400, "invalid_parameter", "a search is at most 64 characters")
    unmasked = sees_pii(viewer)
    with db.read() as tx:
        rows = find_rows(tx, query, limit)
    hits = [_profile(row, unmasked) | {"balance": int(row[9]), "points": int(row[10])} for row in rows]
    if unmasked and hits:
        with db.write() as tx:
            pii_views.record(tx, viewer.username, [h["member_id"] for h in hits], "phone,card_no,name",
                             f"{via} search", at)
    return hits


def detail(db: HqDb, viewer: Principal, member_id: str, at: str, limit: int = HISTORY_LIMIT,
           via: str = "console") -> dict[str, Any]:
    """One member chain-wide: profile (masked per role), balance and points with escrow per store
    (per-store detail within the viewer's scope), adjustments, and history across stores."""
    require(viewer, "members.read")
    unmasked = sees_pii(viewer)
    with db.read() as tx:
        mine_stores = set(stores_in_scope(tx, viewer))
        held = tx.one(f"SELECT {_PROFILE} FROM hq_members WHERE member_id = ?", (member_id,))
        if held is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        row = _opened(tx, [held])[0]
        escrow_rows = tx.all("SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ? "
                             "AND outstanding > 0 ORDER BY store_id, ledger", (member_id,))
        names = {r[0]: r[1] for r in tx.all("SELECT store_id, name FROM hq_stores")}
        in_scope_sql, scope_args = scope_sql(viewer, "store_id")
        sales = tx.all(f"""SELECT sale_id, store_id, receipt_no, at, total, value_spent, points_redeemed, points_earned
                           FROM hq_sales WHERE member_id = ? AND {in_scope_sql} ORDER BY at DESC LIMIT ?""",
                       [member_id, *scope_args, limit])
        ledger = tx.all(f"""SELECT entry_id, ledger, delta, kind, store_id, ref, at FROM hq_member_ledger
                           WHERE member_id = ? AND (store_id IS NULL OR {in_scope_sql})
                           ORDER BY entry_id DESC LIMIT ?""", [member_id, *scope_args, limit])
        adjustments = tx.all("""SELECT adjustment_id, ledger, delta, reason, actor, at FROM hq_member_adjustments
                                WHERE member_id = ? ORDER BY at DESC LIMIT ?""", (member_id, limit))
        tiers = [r[0] for r in tx.all("SELECT tier FROM hq_tiers ORDER BY min_points, tier")]
    balance, points = int(row[9]), int(row[10])
    escrow: dict[str, dict[str, int]] = {}
    other = {"value": 0, "points": 0}
    for store_id, ledger_name, outstanding in escrow_rows:
        if store_id in mine_stores:
            escrow.setdefault(store_id, {"value": 0, "points": 0})[ledger_name] = int(outstanding)
        else:
            other[ledger_name] += int(outstanding)
    held_value = sum(e["value"] for e in escrow.values()) + other["value"]
    held_points = sum(e["points"] for e in escrow.values()) + other["points"]

    def mine(store_id: str | None) -> bool:
        return store_id is None or store_id in mine_stores

    history = [{"kind": "sale", "at": r[3], "store_id": r[1], "store_name": names.get(r[1], r[1]), "ref": r[2],
                "sale_id": r[0], "total": int(r[4]), "value": -int(r[5]), "points": int(r[7]) - int(r[6])}
               for r in sales if mine(r[1])][:limit]
    entries = [{"entry_id": int(r[0]), "ledger": r[1], "delta": int(r[2]), "kind": r[3], "store_id": r[4],
                "store_name": names.get(r[4], r[4]) if r[4] else "", "ref": r[5], "at": r[6]}
               for r in ledger if mine(r[4])][:limit]
    view = _profile(row, unmasked) | {
        "balance": balance, "points": points,
        "escrow": escrow, "escrow_other_stores": other if any(other.values()) else None,
        "unallocated_balance": balance - held_value, "unallocated_points": points - held_points,
        "store_names": {s: names.get(s, s) for s in escrow},
        "history": history, "ledger": entries,
        "adjustments": [{"adjustment_id": r[0], "ledger": r[1], "delta": int(r[2]), "reason": r[3], "actor": r[4],
                         "at": r[5]} for r in adjustments],
        "tiers": tiers,
        "pii_views": pii_views.views(db, member_id, 20) if viewer.may("audit.read") else None,
    }
    if unmasked:
        with db.write() as tx:
            pii_views.record(tx, viewer.username, [member_id], "phone,card_no,name,birthday", f"{via} member", at)
    return view


def _require_home(tx: Tx, viewer: Principal, member_id: str, home_store: str | None) -> None:
    """A region manager changes only members whose home store is one of his (403 out_of_scope otherwise)."""
    if viewer.scoped and (home_store is None or not in_scope(tx, viewer, home_store)):
        raise out_of_scope(f"member {member_id}")


def may_change(db: HqDb, viewer: Principal, member_id: str) -> bool:
    """Whether `adjust` and `edit` would let this viewer change this member (for the page's forms)."""
    if not viewer.may("members.write"):
        return False
    with db.read() as tx:
        row = tx.one("SELECT home_store FROM hq_members WHERE member_id = ?", (member_id,))
        return row is not None and (not viewer.scoped or (row[0] is not None and in_scope(tx, viewer, row[0])))


class Adjustment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    adjustment_id: str
    ledger: str
    delta: int
    reason: str


def check_adjustment(adj: Adjustment) -> None:
    if not 8 <= len(adj.adjustment_id) <= 64:
        raise HqError(400, "invalid_field", "adjustment_id is 8 to 64 characters")
    if adj.ledger not in ("value", "points"):
        raise HqError(400, "invalid_field", "ledger is value or points")
    if adj.delta == 0 or abs(adj.delta) > MAX_ADJUST:
        raise HqError(400, "invalid_field", f"delta is a non-zero integer within ±{MAX_ADJUST}")
    if not adj.reason.strip() or len(adj.reason) > MAX_REASON:
        raise HqError(400, "reason_required", f"a reason of 1 to {MAX_REASON} characters is required")


def adjust(db: HqDb, viewer: Principal, member_id: str, adj: Adjustment, at: str) -> dict[str, Any]:
    """A manual correction of a member's balance (fen) or points, with its reason. Idempotent by
    adjustment id (the same id with other content is 409 id_conflict)."""
    require(viewer, "members.write")
    check_adjustment(adj)
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        prior = tx.one("SELECT member_id, ledger, delta, reason FROM hq_member_adjustments WHERE adjustment_id = ?",
                       (adj.adjustment_id,))
        if prior is not None:
            if tuple(prior) != (member_id, adj.ledger, adj.delta, adj.reason.strip()):
                raise HqError(409, "id_conflict", "this adjustment id was used for another adjustment")
            row = tx.one("SELECT balance, points FROM hq_members WHERE member_id = ?", (member_id,))
            assert row is not None
            return {"member_id": member_id, "adjustment_id": adj.adjustment_id, "balance": int(row[0]),
                    "points": int(row[1]), "repeated": True}
        row = tx.one("SELECT balance, points, home_store FROM hq_members WHERE member_id = ?", (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        _require_home(tx, viewer, member_id, row[2])
        balance, points = int(row[0]), int(row[1])
        held_row = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ?",
                          (member_id, adj.ledger))
        held = int(held_row[0]) if held_row else 0
        total = balance if adj.ledger == "value" else points
        if adj.delta < 0 and total + adj.delta < 0:
            raise HqError(409, "insufficient_balance" if adj.ledger == "value" else "insufficient_points",
                          f"member {member_id} has only {total}", available=total)
        if adj.delta < 0 and total + adj.delta < held:
            raise HqError(409, "escrow_held", f"only {max(0, total - held)} of member {member_id} is unallocated; "
                          f"{held} is held by stores: reclaim it first", unallocated=max(0, total - held), held=held)
        new_balance = balance + adj.delta if adj.ledger == "value" else balance
        new_points = points + adj.delta if adj.ledger == "points" else points
        tx.run("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
                  VALUES (?, ?, ?, 'adjust', NULL, ?, ?)""", (member_id, adj.ledger, adj.delta, adj.adjustment_id, at))
        tx.run("UPDATE hq_members SET balance = ?, points = ? WHERE member_id = ?", (new_balance, new_points,
                                                                                    member_id))
        tx.run("""INSERT INTO hq_member_adjustments (adjustment_id, member_id, ledger, delta, reason, actor, at)
                  VALUES (?, ?, ?, ?, ?, ?, ?)""",
               (adj.adjustment_id, member_id, adj.ledger, adj.delta, adj.reason.strip(), viewer.username, at))
        audit(tx, viewer, "member.adjust", f"member:{member_id}",
              {"balance": balance, "points": points},
              {"balance": new_balance, "points": new_points, "ledger": adj.ledger, "delta": adj.delta,
               "reason": adj.reason.strip(), "adjustment_id": adj.adjustment_id}, at=at)
    return {"member_id": member_id, "adjustment_id": adj.adjustment_id, "balance": new_balance, "points": new_points,
            "repeated": False}


class ProfileEdit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tier: str | None = None
    tags: list[str] | None = None


def edit(db: HqDb, private_key: bytes, viewer: Principal, member_id: str, change: ProfileEdit,
         at: str) -> dict[str, Any]:
    """Set a member's tier and/or manual tags; every store hears of it through the feed."""
    require(viewer, "members.write")
    tags = None
    if change.tags is not None:
        tags = sorted({t.strip() for t in change.tags if t.strip()})
        if len(tags) > MAX_TAGS or any(not _TAG.match(t) for t in tags):
            raise HqError(400, "invalid_field", f"at most {MAX_TAGS} tags of 1 to 32 letters, digits, - . _ :")
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        row = tx.one("SELECT tier, tags, home_store FROM hq_members WHERE member_id = ?", (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        _require_home(tx, viewer, member_id, row[2])
        before = {"tier": row[0], "tags": msgspec.json.decode(row[1], type=list[str]) if row[1] else []}
        after = dict(before)
        if change.tier is not None:
            if tx.one("SELECT 1 FROM hq_tiers WHERE tier = ?", (change.tier,)) is None:
                raise HqError(422, "unknown_tier", f"no tier {change.tier[:32]}")
            after["tier"] = change.tier
        if tags is not None:
            after["tags"] = tags
        if after != before:
            tx.run("UPDATE hq_members SET tier = ?, tags = ? WHERE member_id = ?",
                   (after["tier"], msgspec.json.encode(after["tags"]).decode(), member_id))
            append_feed(tx, private_key, "*", MembersPut(members=member_rows(tx, member_id)), at)
            audit(tx, viewer, "member.edit", f"member:{member_id}", before, after, at=at)
    return {"member_id": member_id, **after, "changed": after != before}


# -- merge by hand -------------------------------------------------------------------------------------------------

def merge_service() -> Callable[..., dict[str, Any]] | None:
    """The chain's merge of two members (`service/merges.py`, `merge_by_hand`: the same code path as a
    detected duplicate, from branch chain-members), or None while this HQ does not have it."""
    try:
        module = importlib.import_module("hq_sync.server.service.merges")
    except ImportError:
        return None
    fn = getattr(module, "merge_by_hand", None)
    return fn if callable(fn) else None


def merge(db: HqDb, private_key: bytes, viewer: Principal, winner: str, loser: str, at: str) -> dict[str, Any]:
    """Merge member `loser` into `winner` by hand: `members.write`, and for a region manager both members'
    home stores in his regions; the merge itself (ledgers combined, alias, feed, audit) is merges.py's."""
    require(viewer, "members.write")
    fn = merge_service()
    if fn is None:
        raise HqError(501, "merge_unavailable", "merging members is not available on this HQ")
    if not loser or loser == winner:
        raise HqError(400, "invalid_field", "name another member to merge into this one")
    with db.read() as tx:
        for member_id in (winner, loser):
            row = tx.one("SELECT home_store FROM hq_members WHERE member_id = ?", (member_id,))
            if row is None:
                raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
            _require_home(tx, viewer, member_id, row[0])
    params = inspect.signature(fn).parameters  # by name: (db, principal, private_key, winner, loser, at)
    given: dict[str, Any] = {"db": db, "private_key": private_key, "winner": winner, "loser": loser, "at": at,
                             "principal": viewer}
    if "actor" in params:  # an earlier form names the actor by his user name
        given["actor"] = viewer if "Principal" in str(params["actor"].annotation) else viewer.username
    return fn(**{name: value for name, value in given.items() if name in params})
