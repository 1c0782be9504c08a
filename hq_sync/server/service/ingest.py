"""Apply a store's batch exactly once: a pure planner and the adapter that runs it in one transaction.

Rules (docs/sync.md):
- A row is applied once per (store, seq). Rows at or below the store's ack that HQ holds are
  duplicates; a row at ack+1 is applied and the ack moves on; a row past a gap is left for the
  resend (the agent sends in order, so a gap only comes from a lost or reordered request). A row at
  or below the ack that HQ does *not* hold (HQ lost it, a digest mismatch asked for it) is applied.
- A delta that cannot be applied — undecodable, an unknown member, a spend beyond the escrow HQ
  gave the store, a sale id already taken — is *quarantined*: recorded with its reason and its
  bytes, counted as received so the stream goes on, shown on both sides, retried on a resend.
- Member effects (stored value, points) count only for rows after the store's pairing point
  (`base_seq`): before it the store was standalone, and HQ's ledger was the truth for known members.
  Each effect moves the member's balance and the store's escrow together; neither may go below zero.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

import msgspec

from hq_sync.hub_state import delta_amount
from hq_sync.protocol import (
    Delta,
    EscrowReleaseDelta,
    MemberDelta,
    MemberErasedDelta,
    ReferralDelta,
    ReturnDelta,
    SaleDelta,
    StockDelta,
    TopupDelta,
    TransferDelta,
    TransferReceivedDelta,
    TransferRequestDelta,
    TransferShippedDelta,
    ZReportDelta,
    delta_decoder,
)
from hq_sync.server.service import coupons as coupon_uses
from hq_sync.server.service import directory, engage, pii
from hq_sync.server.service.access import Principal, require, require_store
from hq_sync.server.service.audit import audit
from hq_sync.server.service.coupons import CouponView
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.members import resolve_many
from hq_sync.server.service.transfers import apply_transfers
from hq_sync.server.storage.db import HqDb, Query, Tx
from hq_sync.server.storage.statements import PROVIDER_METHODS
from hq_sync.wire import Ack, Batch, OutRow

LEDGERS = ("value", "points")


class MemberView(msgspec.Struct):
    """What the planner needs of one member: HQ's balances and this store's escrow."""

    balance: int
    points: int
    escrow_value: int
    escrow_points: int


class Plan(msgspec.Struct):
    acked: int
    applied: int = 0
    duplicates: int = 0
    deferred: int = 0
    deltas: list[tuple[object, ...]] = []  # hq_deltas rows
    repaired: list[int] = []  # seqs that were quarantined before and are now applied or quarantined again
    sales: list[tuple[object, ...]] = []
    lines: list[tuple[object, ...]] = []
    line_rules: list[tuple[object, ...]] = []  # (sale_id, line_no, rule_id, store_id, day, amount)
    z_reports: list[tuple[object, ...]] = []
    tenders: list[tuple[object, ...]] = []
    pay_tenders: list[tuple[object, ...]] = []  # hq_pay_tenders rows: provider-paid sale tenders
    pay_refunds: list[tuple[object, ...]] = []  # and refunds to provider methods
    returns: list[tuple[object, ...]] = []
    topups: list[tuple[object, ...]] = []
    stock: list[tuple[object, ...]] = []
    members: list[MemberDelta] = []
    erased: list[MemberErasedDelta] = []
    transfers: list[TransferDelta] = []
    ledger: list[tuple[str, str, int, str, str, str]] = []  # member, ledger, delta, kind, ref, at
    escrow: dict[tuple[str, str], int] = {}  # (member, ledger) -> change of this store's escrow
    releases: list[tuple[str, str, int, str]] = []  # (member_id, request_id, amount, at)
    quarantined: list[tuple[int, str]] = []
    new_sale_ids: set[str] = set()
    coupon_uses: list[tuple[str, str, str, str]] = []  # (code, sale_id, store_id, at) chain coupons redeemed
    used: set[str] = set()  # members who spent (value or points) at this store: their escrow here is in use
    engage: list[tuple[Delta, bool]] = []  # referrals, member sales and returns, in order (service/engage.py)


class Refused(Exception):
    """This delta goes to quarantine with this reason."""


def _effects(delta: Delta) -> list[tuple[str, int, str]]:
    """(ledger, change, kind) a delta makes to a member's balances (and to the store's escrow)."""
    match delta:
        case SaleDelta(value_spent=v, points_redeemed=p, points_earned=e, points_reward=w):
            return [e for e in (("value", -v, "spend"), ("points", -p, "redeem"), ("points", -w, "reward"),
                                ("points", e, "earn")) if e[1]]
        case ReturnDelta(refunds=refunds, points_reversed=r, points_reward_returned=w):
            value = sum(t.amount for t in refunds if t.method == "stored_value")
            points = sum(t.amount for t in refunds if t.method == "points")
            return [e for e in (("value", value, "refund"), ("points", points, "refund"), ("points", -r, "reverse"),
                                ("points", w, "reward_return")) if e[1]]
        case TopupDelta(amount=amount):
            return [("value", amount, "topup")]
    return []


def _member_of(delta: Delta) -> str | None:
    match delta:
        case SaleDelta(member_id=m) | ReturnDelta(member_id=m):
            return m
        case TopupDelta(member_id=m) | EscrowReleaseDelta(member_id=m) | MemberDelta(member_id=m):
            return m
        case MemberErasedDelta(member_id=m):
            return m
    return None


def decode_rows(rows: Iterable[OutRow]) -> list[tuple[OutRow, Delta | str]]:
    """Each row with its delta, or the reason it does not decode."""
    out: list[tuple[OutRow, Delta | str]] = []
    for row in rows:
        try:
            delta = delta_decoder.decode(row.payload)
        except msgspec.DecodeError as exc:
            out.append((row, f"undecodable: {exc}"[:300]))
            continue
        tag = type(delta).__struct_config__.tag
        out.append((row, delta if tag == row.kind else f"kind {row.kind} but payload is {tag}"))
    return out


def plan_batch(store_id: str, base_seq: int, acked: int, held: dict[int, str],
               rows: list[tuple[OutRow, Delta | str]], members: dict[str, MemberView],
               taken_ids: set[str], at: str, coupons: dict[str, CouponView] | None = None) -> Plan:
    """Pure: what applying these rows changes. `held` = seq → status of rows HQ already has among
    these; `members` = views of the members they touch (updated in place as rows apply);
    `taken_ids` = sale ids HQ already holds."""
    plan = Plan(acked=acked)
    seen: set[int] = set()
    for row, delta in sorted(rows, key=lambda rd: rd[0].seq):
        seq = row.seq
        status = held.get(seq)
        if seq in seen or status == "applied":
            plan.duplicates += 1
            continue
        if seq > plan.acked + 1:
            plan.deferred += 1
            continue
        seen.add(seq)
        day = row.at[:10]
        if status == "quarantined":
            plan.repaired.append(seq)
        try:
            if isinstance(delta, str):
                raise Refused(delta)
            _plan_delta(plan, store_id, seq, row, delta, seq > base_seq, members, taken_ids, coupons or {})
        except Refused as exc:
            plan.quarantined.append((seq, str(exc)))
            plan.deltas.append((store_id, seq, row.kind, row.ref, day, 0, "quarantined", str(exc),
                                bytes(row.payload), at))
        else:
            assert not isinstance(delta, str)
            plan.applied += 1
            plan.deltas.append((store_id, seq, row.kind, row.ref, day, delta_amount(delta), "applied", "", None, at))
        if seq == plan.acked + 1:
            plan.acked = seq
    return plan


def _plan_delta(plan: Plan, store_id: str, seq: int, row: OutRow, delta: Delta, paired: bool,
                members: dict[str, MemberView], taken_ids: set[str], coupons: dict[str, CouponView]) -> None:
    if isinstance(delta, SaleDelta) and (delta.sale_id in taken_ids or delta.sale_id in plan.new_sale_ids):
        raise Refused(f"sale {delta.sale_id} is already held at HQ")
    chain: list[str] = []
    if isinstance(delta, SaleDelta) and delta.coupons:
        try:
            chain = coupon_uses.plan_uses(store_id, delta.sale_id, delta.coupons, coupons)
        except ValueError as exc:
            raise Refused(str(exc)) from None
    member_id = _member_of(delta)
    effects = _effects(delta) if paired else []
    view = members.get(member_id) if member_id is not None else None
    if isinstance(delta, EscrowReleaseDelta) and not paired:
        return
    if (effects or isinstance(delta, EscrowReleaseDelta)) and (member_id is None or view is None):
        raise Refused(f"unknown member {member_id}")
    if view is not None and (effects or isinstance(delta, EscrowReleaseDelta)):
        trial = msgspec.structs.replace(view)
        if isinstance(delta, EscrowReleaseDelta):
            if delta.ledger == "value":
                trial.escrow_value -= delta.amount
            else:
                trial.escrow_points -= delta.amount
        for ledger, change, _ in effects:
            if ledger == "value":
                trial.balance += change
                trial.escrow_value += change
            else:
                trial.points += change
                trial.escrow_points += change
        if trial.escrow_value < 0 or trial.escrow_points < 0:
            raise Refused(f"overspend: member {member_id} beyond this store's escrow "
                          f"(value {view.escrow_value}, points {view.escrow_points})")
        if trial.balance < 0 or trial.points < 0:
            raise Refused(f"overspend: member {member_id} balance would go below zero")
        assert member_id is not None
        for ledger, change, kind in effects:
            plan.ledger.append((member_id, ledger, change, kind, row.ref, row.at))
            plan.escrow[(member_id, ledger)] = plan.escrow.get((member_id, ledger), 0) + change
            if change < 0:
                plan.used.add(member_id)
        if isinstance(delta, EscrowReleaseDelta):
            plan.escrow[(member_id, delta.ledger)] = plan.escrow.get((member_id, delta.ledger), 0) - delta.amount
            plan.releases.append((member_id, delta.request_id, delta.amount, row.at))
        view.balance, view.points = trial.balance, trial.points
        view.escrow_value, view.escrow_points = trial.escrow_value, trial.escrow_points
    match delta:
        case SaleDelta():
            plan.new_sale_ids.add(delta.sale_id)
            coupon_uses.mark(store_id, delta.sale_id, chain, coupons)
            plan.coupon_uses.extend((code, delta.sale_id, store_id, delta.at) for code in chain)
            plan.sales.append((delta.sale_id, store_id, seq, delta.receipt_no, delta.till_id, delta.at, delta.at[:10],
                               delta.member_id, delta.subtotal, delta.discount, delta.total, delta.tax,
                               delta.value_spent, delta.points_redeemed, delta.points_earned))
            if delta.member_id is not None:
                plan.engage.append((delta, paired))
            plan.lines.extend((delta.sale_id, ln.line_no, store_id, ln.sku, ln.qty, ln.weight_g, ln.net, ln.discount,
                               ln.tax, delta.at[:10]) for ln in delta.lines)
            plan.tenders.extend((delta.sale_id, n, t.method, t.amount, store_id, delta.at[:10])
                                for n, t in enumerate(delta.tenders, start=1))
            plan.pay_tenders.extend((store_id, "sale", delta.sale_id, n, delta.sale_id, t.method, t.amount, t.reference,
                                     delta.at, delta.at[:10]) for n, t in enumerate(delta.tenders, start=1)
                                    if t.method in PROVIDER_METHODS)
            plan.line_rules.extend((delta.sale_id, ln.line_no, rule_id, store_id, delta.at[:10], amount)
                                   for ln in delta.lines if ln.rules for rule_id, amount in _rule_sums(ln.rules))
        case ReturnDelta():
            plan.returns.append((delta.return_id, store_id, seq, delta.sale_id, delta.at, delta.at[:10],
                                 delta.member_id, delta.refund_total, delta.points_reversed))
            plan.pay_refunds.extend((store_id, "refund", delta.return_id, n, delta.sale_id, t.method, t.amount,
                                     t.reference, delta.at, delta.at[:10]) for n, t in enumerate(delta.refunds, start=1)
                                    if t.method in PROVIDER_METHODS)
            plan.engage.append((delta, paired))
        case TopupDelta():
            plan.topups.append((delta.topup_id, store_id, seq, delta.member_id, delta.amount, delta.method, delta.at))
        case StockDelta():
            plan.stock.append((store_id, delta.movement_id, seq, delta.sku, delta.kind, delta.qty, delta.ref,
                               delta.at))
        case MemberDelta():
            plan.members.append(delta)
        case ZReportDelta():
            plan.z_reports.append((store_id, delta.z_no, delta.day, delta.at, delta.tickets, delta.net, delta.tax,
                                   delta.refunded, delta.cash_expected, delta.cash_counted, delta.cash_variance,
                                   delta.anomalies))
        case ReferralDelta():
            plan.engage.append((delta, paired))
        case MemberErasedDelta():
            plan.erased.append(delta)
        case TransferRequestDelta() | TransferShippedDelta() | TransferReceivedDelta():
            acting = delta.to_store if isinstance(delta, TransferRequestDelta | TransferReceivedDelta) else \
                delta.from_store
            if acting != store_id or delta.from_store == delta.to_store:
                raise Refused(f"transfer {delta.transfer_id}: {type(delta).__struct_config__.tag} from the wrong store")
            plan.transfers.append(delta)


def _rule_sums(rules: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """A line's amount per rule (a rule listed twice on a line is summed: one row per sale line and rule)."""
    sums: dict[str, int] = {}
    for rule_id, amount in rules:
        sums[rule_id] = sums.get(rule_id, 0) + amount
    return sorted(sums.items())


# -- the adapter ------------------------------------------------------------------------------------------

def _member_ids(rows: list[tuple[OutRow, Delta | str]]) -> list[str]:
    ids = {m for _, d in rows if not isinstance(d, str) and (m := _member_of(d)) is not None}
    return sorted(ids)


def resolve_members(rows: list[tuple[OutRow, Delta | str]],
                    aliases: dict[str, str]) -> list[tuple[OutRow, Delta | str]]:
    """Deltas naming a merged member's old id apply to the member it was merged into (a profile delta
    keeps its id: the merge decided the profile). Pure."""
    if not aliases:
        return rows
    out: list[tuple[OutRow, Delta | str]] = []
    for row, delta in rows:
        if (not isinstance(delta, str | MemberDelta) and (m := _member_of(delta)) is not None
                and m in aliases):
            delta = msgspec.structs.replace(delta, member_id=aliases[m])
        out.append((row, delta))
    return out


class Releases(Protocol):
    """Hears the members whose escrow a committed batch released (escrow_signals.ReleaseSignal, or the batch
    lane's process collecting them for its worker)."""

    def notify(self, member_ids: Iterable[str]) -> None: ...


class Shopping(Protocol):
    """Hears (member, store) of a committed batch's member sales (escrow_signals.EscrowEvents, or a collector)."""

    def shopped(self, pairs: Iterable[tuple[str, str]]) -> None: ...


def ingest(db: HqDb, batch: Batch, at: str, *, releases: Releases | None = None,
           events: Shopping | None = None, fed: list[int] | None = None) -> Ack:
    """Apply a verified batch of `batch.store_id` in one transaction; return the ack. After the commit,
    `releases` wakes authorisations waiting for the members whose escrow this batch released, and
    `events` hears which members shopped here (the escrow policy's proactive grants). `fed`, if given,
    gets the number of feed entries the batch caused (the caller wakes the feed's long-polls)."""
    decoded = decode_rows(batch.rows)
    with db.write() as tx:
        ack = _apply(tx, batch.store_id, decoded, batch.head, at, from_store=True, fed=fed)
    if releases is not None:  # after the commit: a woken authorisation must see the release
        released = {d.member_id for _, d in decoded if isinstance(d, EscrowReleaseDelta)}
        if released:
            releases.notify(released)
    if events is not None:
        events.shopped((d.member_id, batch.store_id) for _, d in decoded
                       if isinstance(d, SaleDelta) and d.member_id is not None)
    return ack


def _apply(tx: Tx, store_id: str, decoded: list[tuple[OutRow, Delta | str]], head: int, at: str,
           from_store: bool, fed: list[int] | None = None) -> Ack:
    member_ids = _member_ids(decoded)
    if member_ids:
        decoded = resolve_members(decoded, resolve_many(tx, member_ids))
        member_ids = _member_ids(decoded)
    profiles = [d.member_id for _, d in decoded if isinstance(d, MemberDelta)]
    known_before = directory.known_members(tx, profiles) if profiles else set()
    seqs = [row.seq for row, _ in decoded]
    sale_ids = [d.sale_id for _, d in decoded if isinstance(d, SaleDelta)]
    # The store's row lock serialises its batches (whichever worker takes them); read with the lock. The
    # rows of this batch HQ holds and its sale ids held for any store are read with it: on PostgreSQL one
    # round trip for the three (they were five with the planner setting around the sale-id check).
    lo, hi = (min(seqs), max(seqs)) if seqs else (0, -1)
    found = tx.reads([
        ("SELECT acked_seq, base_seq FROM hq_stores WHERE store_id = ?"
         + (" FOR UPDATE" if tx.dialect == "postgresql" else ""), (store_id,), None),
        ("SELECT seq, status FROM hq_deltas WHERE store_id = ? AND seq BETWEEN ? AND ?", (store_id, lo, hi), None),
        *_taken_sale_ids_queries(tx.dialect, sale_ids)])
    if not found[0]:
        raise LookupError(store_id)
    acked, base_seq = int(found[0][0][0]), int(found[0][0][1])
    held = {int(s): str(st) for s, st in found[1]}
    taken = {str(r[0]) for rows in found[2:] for r in rows}
    if profiles:
        _create_members(tx, decoded, at)
    tx.lock("hq_members", "member_id", member_ids)
    views = _member_views(tx, store_id, member_ids)
    codes = sorted({c for _, d in decoded if isinstance(d, SaleDelta) for c in d.coupons})
    chain = coupon_uses.views(tx, codes) if codes else {}
    plan = plan_batch(store_id, base_seq, acked, held, decoded, views, taken, at, chain)
    # The rows by COPY, then the other writes in one pipeline (PostgreSQL: one round trip); the steps that
    # read come after it, and when a batch has none of them (anonymous sales, stock, Z reports) the
    # store's own update joins the pipeline.
    simple = not (plan.members or plan.ledger or plan.coupon_uses or plan.engage or plan.transfers or plan.erased)
    _write_rows(tx, store_id, plan)
    with tx.pipeline():
        _write_plan(tx, store_id, plan)
        if simple:
            _finish(tx, store_id, plan, head, at, from_store)
    if plan.transfers:
        apply_transfers(tx, plan.transfers, at)
    if plan.erased:  # erased at a store: erase here and at every store
        key_row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
        assert key_row is not None
        for erased in plan.erased:
            pii.erase_in(tx, bytes(key_row[0]), erased.member_id, f"{store_id}:{erased.user_id}", "store", at)
    if not simple:
        entries = directory.after_batch(tx, store_id, plan.acked, plan.members, known_before,
                                        {m for m, _, _, _, _, _ in plan.ledger}, at)
        if fed is not None:
            fed.append(entries)
        coupon_uses.write_uses(tx, plan.coupon_uses)
        engage.apply(tx, store_id, plan.engage, at)
        _finish(tx, store_id, plan, head, at, from_store)
    return Ack(acked=plan.acked, applied=plan.applied, duplicates=plan.duplicates, quarantined=plan.quarantined)


def _finish(tx: Tx, store_id: str, plan: Plan, head: int, at: str, from_store: bool) -> None:
    """The store's ack, head and sale count (and reservations its stream has passed)."""
    if from_store:
        tx.run("UPDATE hq_stores SET acked_seq = ?, head_seq = ?, last_seen = ?, sales = sales + ? "
               "WHERE store_id = ?", (plan.acked, max(head, plan.acked), at, len(plan.sales), store_id))
        coupon_uses.release_stale(tx, store_id, int(time.time()))  # reservations the stream has passed
    else:
        tx.run("UPDATE hq_stores SET sales = sales + ? WHERE store_id = ?", (len(plan.sales), store_id))


def retry_quarantined(db: HqDb, principal: Principal, store_id: str, seq: int, at: str) -> bool:
    """Apply a quarantined delta again from the bytes HQ kept (an operator fixed its cause, e.g. a member
    now known): True if it applied, False if it is quarantined again (with the new reason). Audited."""
    require(principal, "stores.manage")
    with db.write() as tx:
        require_store(tx, principal, store_id)
        row = tx.one("SELECT kind, ref, day, reason, payload FROM hq_deltas WHERE store_id = ? AND seq = ? "
                     "AND status = 'quarantined'", (store_id, seq))
        if row is None:
            raise HqError(404, "not_quarantined", f"store {store_id[:64]} has no quarantined delta {seq}")
        kind, ref, day, reason, payload = row
        out = OutRow(seq, str(kind), str(ref), f"{day}T00:00:00", msgspec.Raw(bytes(payload or b"")))
        ack = _apply(tx, store_id, decode_rows([out]), 0, at, from_store=False)
        applied = ack.applied == 1
        after: dict[str, object] = {"seq": seq, "applied": applied}
        if not applied:
            after["reason"] = ack.quarantined[0][1] if ack.quarantined else ""
        tx.run("DELETE FROM hq_quarantine_notes WHERE store_id = ? AND seq = ?", (store_id, seq))
        audit(tx, principal, "store.quarantine_retry", f"store:{store_id}",
              {"seq": seq, "kind": kind, "ref": ref, "reason": reason}, after, at=at)
    return applied


def _create_members(tx: Tx, decoded: list[tuple[OutRow, Delta | str]], at: str) -> None:
    """Members created at a store become HQ's members (a known member's profile stays HQ's)."""
    pii.insert_new_members(tx, [d for _, d in decoded if isinstance(d, MemberDelta)])


def _member_views(tx: Tx, store_id: str, member_ids: list[str]) -> dict[str, MemberView]:
    views: dict[str, MemberView] = {}
    for chunk in _chunks(member_ids, 500):
        marks = ",".join("?" * len(chunk))
        for member_id, balance, points in tx.all(
                f"SELECT member_id, balance, points FROM hq_members WHERE member_id IN ({marks})", chunk):
            views[member_id] = MemberView(int(balance), int(points), 0, 0)
        for member_id, ledger, outstanding in tx.all(
                f"SELECT member_id, ledger, outstanding FROM hq_escrow WHERE store_id = ? AND member_id IN ({marks})",
                [store_id, *chunk]):
            if member_id in views:
                if ledger == "value":
                    views[member_id].escrow_value = int(outstanding)
                else:
                    views[member_id].escrow_points = int(outstanding)
    return views


def _taken_sale_ids_queries(dialect: str, sale_ids: list[str]) -> list[Query]:
    """The statements that find which of `sale_ids` HQ holds (`Tx.reads`; their rows are the ids). On
    PostgreSQL one query, planned for its arguments each time: prepared, it settled on a generic plan made
    while the partitions were empty (a sequential scan of every sale) and kept it, 60 ms a batch and growing
    with the table."""
    if not sale_ids:
        return []
    if dialect == "postgresql":
        # Always by the index. A month's partition is analysed while nearly empty, so until autovacuum
        # analyses it again the planner takes sale_id for a column of 200 values, expects a quarter of
        # the partition to match 50 ids, and scans all of it: bench chain saw 48,000 rows read per batch,
        # a third of PostgreSQL's time. The setting is the transaction's and is put back at once.
        return [("SET LOCAL enable_seqscan = off", (), None),
                ("SELECT sale_id FROM hq_sales WHERE sale_id = ANY(?)", (sale_ids,), False),
                ("SET LOCAL enable_seqscan = on", (), None)]
    return [(f"SELECT sale_id FROM hq_sales WHERE sale_id IN ({','.join('?' * len(chunk))})", chunk, None)
            for chunk in _chunks(sale_ids, 900)]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def hourly_rollup(sales: list[tuple[object, ...]]) -> list[tuple[str, str, int, int, int, int]]:
    """Pure: planned hq_sales rows summed per (store, day, local hour): tickets, total, member tickets —
    what `hq_sales_hourly` adds, in the batch's transaction, for the dashboard and hourly reports."""
    cells: dict[tuple[str, str, int], list[int]] = {}
    for row in sales:
        at, day = str(row[5]), str(row[6])
        hour = int(at[11:13]) if at[11:13].isdigit() and int(at[11:13]) < 24 else 0
        cell = cells.setdefault((str(row[1]), day, hour), [0, 0, 0])
        cell[0] += 1
        cell[1] += int(row[10])  # type: ignore[call-overload]
        cell[2] += 0 if row[7] is None else 1
    return [(store, day, hour, n, total, members) for (store, day, hour), (n, total, members) in sorted(cells.items())]


def _roll_up(tx: Tx, store_id: str, plan: Plan) -> None:
    """Add the batch's sales to the report rollups (per store, day and hour; per store, day and sku; per
    promotion, store and day: its uses, discount, lines and the totals of the sales it was in)."""
    if not plan.sales:
        return
    tx.insert_rows("hq_sales_hourly", "store_id text, day text, hour bigint, tickets bigint, total bigint, "
                   "member_tickets bigint", hourly_rollup(plan.sales),
                   """ON CONFLICT (store_id, day, hour) DO UPDATE
                      SET tickets = hq_sales_hourly.tickets + excluded.tickets,
                      total = hq_sales_hourly.total + excluded.total,
                      member_tickets = hq_sales_hourly.member_tickets + excluded.member_tickets""")
    hours: dict[tuple[str, str], list[int]] = {}
    days: dict[str, str] = {}
    for sale in plan.sales:  # (sale_id, store, seq, receipt, till, at, day, member, subtotal, discount, total, ...)
        sale_id, sale_at, day = str(sale[0]), str(sale[5]), str(sale[6])
        days[sale_id] = day
        cell = hours.setdefault((day, sale_at[11:13]), [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += int(sale[8])  # type: ignore[call-overload]
        cell[2] += int(sale[9])  # type: ignore[call-overload]
        cell[3] += int(sale[10])  # type: ignore[call-overload]
    totals = {str(sale[0]): int(sale[10]) for sale in plan.sales}  # type: ignore[call-overload]
    per_sale: dict[tuple[str, str], list[int]] = {}  # (rule, sale) -> [discount, lines]
    for rule_row in plan.line_rules:  # (sale_id, line_no, rule_id, store, day, amount)
        amount = rule_row[5]
        cell = per_sale.setdefault((str(rule_row[2]), str(rule_row[0])), [0, 0])
        cell[0] += int(amount)  # type: ignore[call-overload]
        cell[1] += 1
    rules: dict[tuple[str, str], list[int]] = {}  # (rule, day) -> [uses, discount, lines, covered]
    for (rule_id, of_sale), (given, count) in per_sale.items():
        cell = rules.setdefault((rule_id, days[of_sale]), [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += given
        cell[2] += count
        cell[3] += totals[of_sale]
    tx.insert_rows("hq_rule_days", "rule_id text, store_id text, day text, uses bigint, discount bigint, lines bigint, "
                   "covered bigint", [(rule_id, store_id, day, *v) for (rule_id, day), v in sorted(rules.items())],
                   """ON CONFLICT (rule_id, store_id, day) DO UPDATE
                      SET uses = hq_rule_days.uses + excluded.uses,
                      discount = hq_rule_days.discount + excluded.discount,
                      lines = hq_rule_days.lines + excluded.lines, covered = hq_rule_days.covered + excluded.covered""")
    skus: dict[tuple[str, str], list[int]] = {}
    for line in plan.lines:  # (sale_id, line_no, store, sku, qty, weight_g, net, discount, tax)
        cell = skus.setdefault((days[str(line[0])], str(line[3])), [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += int(line[4])  # type: ignore[call-overload]
        cell[2] += int(line[7])  # type: ignore[call-overload]
        cell[3] += int(line[6])  # type: ignore[call-overload]
    tx.insert_rows("hq_store_hours", "store_id text, day text, hour text, tickets bigint, gross bigint, "
                   "discount bigint, net bigint",
                   [(store_id, day, hour, *v) for (day, hour), v in sorted(hours.items())],
                   """ON CONFLICT (store_id, day, hour) DO UPDATE
                      SET tickets = hq_store_hours.tickets + excluded.tickets,
                      gross = hq_store_hours.gross + excluded.gross,
                      discount = hq_store_hours.discount + excluded.discount,
                      net = hq_store_hours.net + excluded.net""")
    store_days: dict[str, list[int]] = {}
    for (day, _), v in hours.items():
        cell = store_days.setdefault(day, [0, 0, 0, 0])
        for i, x in enumerate(v):
            cell[i] += x
    tx.insert_rows("hq_store_days", "store_id text, day text, tickets bigint, gross bigint, discount bigint, "
                   "net bigint", [(store_id, day, *v) for day, v in sorted(store_days.items())],
                   """ON CONFLICT (store_id, day) DO UPDATE SET tickets = hq_store_days.tickets + excluded.tickets,
                      gross = hq_store_days.gross + excluded.gross,
                      discount = hq_store_days.discount + excluded.discount,
                      net = hq_store_days.net + excluded.net""")
    tx.insert_rows("hq_sku_days", "store_id text, day text, sku text, lines bigint, qty bigint, discount bigint, "
                   "net bigint", [(store_id, day, sku, *v) for (day, sku), v in sorted(skus.items())],
                   """ON CONFLICT (store_id, day, sku) DO UPDATE SET lines = hq_sku_days.lines + excluded.lines,
                      qty = hq_sku_days.qty + excluded.qty, discount = hq_sku_days.discount + excluded.discount,
                      net = hq_sku_days.net + excluded.net""")


def _write_rows(tx: Tx, store_id: str, plan: Plan) -> None:
    """The batch's own rows."""
    if plan.repaired:
        for seq in plan.repaired:
            tx.run("DELETE FROM hq_deltas WHERE store_id = ? AND seq = ?", (store_id, seq))
    # Plain inserts: the planner already excluded every row HQ holds (the store's row is locked). COPY: the
    # least work per row on both sides; the statements after it go in one pipeline.
    tx.copy("hq_deltas", "store_id, seq, kind, ref, day, amount, status, reason, payload, received_at",
            pii.seal_delta_rows(tx, plan.deltas))
    tx.copy("hq_sales", "sale_id, store_id, seq, receipt_no, till_id, at, day, member_id, subtotal, discount, total, "
            "tax, value_spent, points_redeemed, points_earned", plan.sales)
    tx.copy("hq_sale_lines", "sale_id, line_no, store_id, sku, qty, weight_g, net, discount, tax, day", plan.lines)
    tx.copy("hq_sale_tenders", "sale_id, tender_no, method, amount, store_id, day", plan.tenders)
    tx.copy("hq_pay_tenders", "store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference, at, day",
            plan.pay_tenders)  # new sales only, as hq_sale_tenders
    tx.copy("hq_sale_line_rules", "sale_id, line_no, rule_id, store_id, day, amount", plan.line_rules)


def _write_plan(tx: Tx, store_id: str, plan: Plan) -> None:
    """What the batch adds to other rows: rollups, member balances and escrow, and the rows that may be
    resent (ON CONFLICT). Writes only: it runs in a pipeline."""
    tx.many("""INSERT INTO hq_pay_tenders (store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference,
               at, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""", plan.pay_refunds)
    _roll_up(tx, store_id, plan)
    tx.many("""INSERT INTO hq_z_reports (store_id, z_no, day, at, tickets, net, tax, refunded, cash_expected,
               cash_counted, cash_variance, anomalies) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (store_id, z_no) DO NOTHING""", plan.z_reports)
    tx.many("""INSERT INTO hq_returns (return_id, store_id, seq, sale_id, at, day, member_id, refund_total,
               points_reversed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, return_id) DO NOTHING""",
            plan.returns)
    tx.many("""INSERT INTO hq_topups (topup_id, store_id, seq, member_id, amount, method, at)
               VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, topup_id) DO NOTHING""", plan.topups)
    tx.many("""INSERT INTO hq_stock_movements (store_id, movement_id, seq, sku, kind, qty, ref, at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, movement_id) DO NOTHING""", plan.stock)
    if plan.ledger:
        tx.many("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [(m, ledger, d, kind, store_id, ref, when) for m, ledger, d, kind, ref, when in plan.ledger])
        sums: dict[str, list[int]] = {}
        for m, ledger, d, _, _, _ in plan.ledger:
            cell = sums.setdefault(m, [0, 0])
            cell[0 if ledger == "value" else 1] += d
        tx.many("UPDATE hq_members SET balance = balance + ?, points = points + ? WHERE member_id = ?",
                [(v, p, m) for m, (v, p) in sums.items()])
    if plan.escrow:
        tx.many("""INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES (?, ?, ?, ?)
                   ON CONFLICT (member_id, store_id, ledger) DO UPDATE
                   SET outstanding = hq_escrow.outstanding + excluded.outstanding""",
                [(m, store_id, ledger, change) for (m, ledger), change in plan.escrow.items() if change > 0])
        tx.many("""UPDATE hq_escrow SET outstanding = outstanding + ?
                   WHERE member_id = ? AND store_id = ? AND ledger = ?""",
                [(change, m, store_id, ledger) for (m, ledger), change in plan.escrow.items() if change < 0])
    tx.many("UPDATE hq_reclaims SET released = ?, answered_at = ? WHERE member_id = ? AND request_id = ? "
            "AND released IS NULL", [(amount, when, m, request_id) for m, request_id, amount, when in plan.releases])
    if plan.used:
        now_s = int(time.time())
        tx.many("""INSERT INTO hq_escrow_activity (member_id, store_id, used_s) VALUES (?, ?, ?)
                   ON CONFLICT (member_id, store_id) DO UPDATE SET used_s = excluded.used_s""",
                [(m, store_id, now_s) for m in sorted(plan.used)])
