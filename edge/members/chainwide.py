"""Members across the chain, at the hub: the chain-wide balances a lookup shows, aliases of merged
members, and a merge applied here (docs/sync.md "Members across the chain").

On a paired hub the local ledgers (`member_balance`) are this store's escrow: what it may spend
(`spendable_here`). What the member holds across the chain comes from HQ: `member_chain` keeps HQ's
last snapshot of a member (`as_of`) and how far this store's own stream is in it (`upto_seq`, an
outbox sequence). Every outbox row that moves a member's money also writes `member_effects` in its
transaction, so the figure shown is HQ's snapshot plus this store's later effects — right at once after
a sale or top-up here, whatever HQ has seen. A standalone hub shows its local ledger for both.

A merged member's old id is an alias (`member_aliases`): `resolve` maps it to the member everywhere.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import msgspec

from edge.journal import chain as journal
from edge.members import ledger
from edge.members.models import Spendable
from edge.sales.models import MemberSummary
from edge.stock.ledger import Actor
from hq_sync.protocol import Delta, ReturnDelta, SaleDelta, TopupDelta

MERGE_ACTOR = Actor(user_id="hq-sync")


class Figures(msgspec.Struct, frozen=True):
    """What a member read shows: chain-wide holdings as last known (`as_of`: None when only this store's
    ledger is known, e.g. a standalone hub) and this store's part."""

    balance: int
    points: int
    as_of: str | None
    spendable_balance: int
    spendable_points: int


# -- effects of this store's deltas ---------------------------------------------------------------------------

def member_effects(delta: Delta) -> tuple[str, int, int] | None:
    """(member, value change, points change) a delta makes to a member's chain-wide holdings (HQ's ledger
    applies the same: hq_sync/server/service/ingest.py `_effects`). Pure."""
    match delta:
        case SaleDelta(member_id=m, value_spent=v, points_redeemed=p, points_earned=e, points_reward=w) if m:
            return (m, -v, e - p - w) if (v or p or e or w) else None
        case ReturnDelta(member_id=m, refunds=refunds, points_reversed=r, points_reward_returned=w) if m:
            value = sum(t.amount for t in refunds if t.method == "stored_value")
            points = sum(t.amount for t in refunds if t.method == "points") - r + w
            return (m, value, points) if (value or points) else None
        case TopupDelta(member_id=m, amount=amount):
            return (m, amount, 0)
    return None


def record_effects(conn: sqlite3.Connection, seq: int, delta: Delta) -> None:
    """Called by the outbox for every row it appends, in the same transaction."""
    effect = member_effects(delta)
    if effect is not None:
        conn.execute("INSERT INTO member_effects (seq, member_id, value, points) VALUES (?, ?, ?, ?)", (seq, *effect))


# -- aliases -------------------------------------------------------------------------------------------------------

def resolve(conn: sqlite3.Connection, member_id: str) -> str:
    """The member an id stands for: itself, or the member HQ merged it into."""
    row = conn.execute("SELECT member_id FROM member_aliases WHERE alias = ?", (member_id,)).fetchone()
    return str(row[0]) if row else member_id


def aliases_of(conn: sqlite3.Connection, member_id: str) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT alias FROM member_aliases WHERE member_id = ? ORDER BY alias",
                                            (member_id,))]


def record_aliases(conn: sqlite3.Connection, member_id: str, aliases: Iterable[str], at: str) -> None:
    """Aliases HQ named in a lookup answer (a merge this store has not applied yet keeps its own entry)."""
    conn.executemany("INSERT OR IGNORE INTO member_aliases (alias, member_id, merged_at) VALUES (?, ?, ?)",
                     [(a, member_id, at) for a in aliases if a != member_id])


# -- chain-wide figures --------------------------------------------------------------------------------------------

def _paired(conn: sqlite3.Connection) -> int | None:
    """This hub's pairing point (outbox seq), or None when it is standalone."""
    row = conn.execute("SELECT base_seq FROM sync_state WHERE id = 1").fetchone()
    return int(row[0]) if row else None


def put_balances(conn: sqlite3.Connection, rows: Iterable[tuple[str, int, int]], as_of: str, upto: int) -> None:
    """HQ's snapshot of members' chain-wide holdings (an older snapshot never replaces a newer one). Deltas
    from before the pairing point never move money at HQ, so the snapshot holds at least those."""
    base = _paired(conn) or 0
    upto = max(upto, base)
    conn.executemany(
        """INSERT INTO member_chain (member_id, balance, points, as_of, upto_seq) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (member_id) DO UPDATE SET balance = excluded.balance, points = excluded.points,
               as_of = excluded.as_of, upto_seq = excluded.upto_seq WHERE excluded.as_of >= member_chain.as_of""",
        [(m, max(0, b), max(0, p), as_of, upto) for m, b, p in rows])


def figures(conn: sqlite3.Connection, member_id: str, spendable: tuple[int, int] | None = None,
            unsent: tuple[int, int] = (0, 0)) -> Figures:
    """The member's chain-wide balance and points (HQ's snapshot plus this store's later effects) and what
    this store holds. `spendable` = (points, balance) already read, if the caller has them; `unsent` =
    (value, points) effects of a delta this transaction is about to append (a sale's own answer)."""
    points_here, balance_here = spendable if spendable is not None else ledger.balances(conn, member_id)
    base = _paired(conn)
    if base is None:
        return Figures(balance_here, points_here, None, balance_here, points_here)
    row = conn.execute("SELECT balance, points, as_of, upto_seq FROM member_chain WHERE member_id = ?",
                       (member_id,)).fetchone()
    balance, points, as_of, upto = (int(row[0]), int(row[1]), str(row[2]), int(row[3])) if row else (0, 0, None, base)
    ids = [member_id, *aliases_of(conn, member_id)]
    marks = ",".join("?" * len(ids))
    value, pts = conn.execute(
        f"SELECT coalesce(sum(value), 0), coalesce(sum(points), 0) FROM member_effects "
        f"WHERE member_id IN ({marks}) AND seq > ?", (*ids, upto)).fetchone()
    return Figures(max(0, balance + int(value) + unsent[0]), max(0, points + int(pts) + unsent[1]), as_of,
                   balance_here, points_here)


def summary(conn: sqlite3.Connection, member_id: str, tier: str, unsent: tuple[int, int] = (0, 0)) -> MemberSummary:
    """The member as a quote, sale and receipt show it: chain-wide figures and this store's part
    (`unsent`: the effects of the sale being committed, whose outbox row comes later in its transaction)."""
    shown = figures(conn, member_id, unsent=unsent)
    return MemberSummary(member_id, tier, shown.points, shown.balance, shown.as_of,
                         Spendable(shown.spendable_balance, shown.spendable_points))


# -- a merge HQ decided ----------------------------------------------------------------------------------------------

def apply_merge(conn: sqlite3.Connection, loser: str, winner: str, at: str) -> str | None:
    """Record `loser` as an alias of `winner` and move this store's holdings of the loser into the winner
    (ledger entries `merge_out`/`merge_in`, a journal record), in the caller's transaction. Idempotent.
    Returns why it could not move holdings (the caller alerts), or None."""
    if loser == winner:
        return None
    known = conn.execute("SELECT member_id FROM member_aliases WHERE alias = ?", (loser,)).fetchone()
    if known is not None and known[0] == winner and conn.execute(
            "SELECT 1 FROM journal WHERE kind = 'member_merge' AND ref = ?", (f"{loser}>{winner}",)).fetchone():
        return None
    has = {r[0] for r in conn.execute("SELECT member_id FROM members WHERE member_id IN (?, ?)", (loser, winner))}
    conn.execute("""INSERT INTO member_aliases (alias, member_id, merged_at) VALUES (?, ?, ?)
                    ON CONFLICT (alias) DO UPDATE SET member_id = excluded.member_id""", (loser, winner, at))
    conn.execute("UPDATE member_aliases SET member_id = ? WHERE member_id = ?", (winner, loser))
    conn.execute("DELETE FROM member_chain WHERE member_id = ?", (loser,))
    if loser not in has:
        return None  # nothing of it here
    if winner not in has:
        return f"merge {loser} into {winner}: the winner's profile has not arrived"
    points, balance = ledger.balances(conn, loser)
    ref = f"{loser}>{winner}"
    for name, amount in (("value", balance), ("points", points)):
        if amount:
            ledger.post(conn, name, loser, -amount, "merge_out", ref, MERGE_ACTOR, at)  # type: ignore[arg-type]
            ledger.post(conn, name, winner, amount, "merge_in", ref, MERGE_ACTOR, at)  # type: ignore[arg-type]
    conn.execute("UPDATE coupons SET member_id = ? WHERE member_id = ?", (winner, loser))
    journal.append(conn, "member_merge", ref, at, {"loser": loser, "winner": winner, "balance": balance,
                                                   "points": points})
    return None
