"""Commit a return: refund exactly what was paid for the returned units, restock, reverse points.

Refund per line is the stored net of the sale line shared out by units with cumulative rounding,
so returning every unit — in one return or many — refunds exactly the line's net, never a fen
more. Returned units go back to the batches they were sold from. Without an explicit
`refund_method` the refund goes back to the sale's own tenders: member stored value and points
first, then card and wallets, cash last, never more to a tender than it paid; each part names the
tender it goes back to and a reference (edge/sales/refund_routing.py). Exchange credit that
paid for a sale is refunded as cash if that sale is returned in turn.
"""

from __future__ import annotations

import sqlite3

import msgspec

from edge.engage import referrals
from edge.errors import ApiError
from edge.journal import chain
from edge.members import chainwide
from edge.members import ledger as member_ledger
from edge.members import points as member_points
from edge.money import share_of_units
from edge.outbox import queue as outbox
from edge.promotions import clawback as promo_clawback
from edge.sales import refund_routing
from edge.sales.checkout import POINT_VALUE_FEN, Replay, replay_or_conflict
from edge.sales.models import MemberSummary, Refund, ReturnedLine, ReturnRequest, ReturnResult, TenderRefund
from edge.sales.refund_routing import REFUND_ORDER
from edge.stock import ledger as stock
from edge.stock.ledger import Actor
from hq_sync.protocol import DeltaTender, ReturnDelta, ReturnLineDelta

_encoder = msgspec.json.Encoder()


def split_refund(amount: int, paid: dict[str, int], refunded: dict[str, int]) -> list[Refund]:
    """Refund `amount` to the sale's tenders in REFUND_ORDER, each up to what it has left."""
    out = []
    left = amount
    for method in REFUND_ORDER:
        room = paid.get(method, 0) - refunded.get(method, 0)
        if left <= 0:
            break
        if room > 0:
            take = min(room, left)
            out.append(Refund(method, take))
            left -= take
    if left > 0:  # only possible after explicit refunds elsewhere; the rest goes back as cash
        out.append(Refund("cash", left))
    return out


def _batches_back(allocation: list[list[int]], done: int, taking: int) -> list[tuple[int, int]]:
    """Which batches `taking` returned units go back to, after `done` were already returned."""
    out = []
    for batch_id, qty in allocation:
        skip = min(done, qty)
        done -= skip
        room = qty - skip
        take = min(room, taking)
        if take > 0:
            out.append((batch_id, take))
            taking -= take
    if taking > 0:
        out.append((stock.UNBATCHED, taking))
    return out


def commit_return(
    conn: sqlite3.Connection, req: ReturnRequest, digest: str, actor: Actor, at: str,
    exchange_total: int | None = None, clawback: bool = False,
) -> Replay | bytes:
    """Commit a return. In an exchange, up to `exchange_total` of the refund becomes credit
    (refund method `exchange`) that pays for the replacement sale in the same transaction.
    With `clawback` (hub option return_clawback) a 满减 the kept items no longer earn is taken back
    from the refund (edge/promotions/clawback.py); by default each unit refunds its stored net."""
    return_id, sale_id = str(req.return_id), str(req.sale_id)
    replay = replay_or_conflict(conn, "returns", "return_id", return_id, digest)
    if replay is not None:
        return replay
    sale = conn.execute(
        "SELECT sale_id, member_id, total, change, points_earned FROM sales WHERE sale_id = ?", (sale_id,)
    ).fetchone()
    if sale is None:
        raise ApiError(404, "unknown_sale", f"no sale {sale_id} on this hub")
    sold = {r["line_no"]: r for r in conn.execute("SELECT * FROM sale_lines WHERE sale_id = ?", (sale_id,))}
    returned: dict[int, int] = {}
    for row in conn.execute(
        """SELECT rl.line_no, sum(coalesce(rl.weight_g, rl.qty)) FROM return_lines rl
           JOIN returns r ON r.return_id = rl.return_id WHERE r.sale_id = ? GROUP BY rl.line_no""",
        (sale_id,),
    ):
        returned[row[0]] = int(row[1])
    seen: set[int] = set()
    lines: list[ReturnedLine] = []
    restock: list[tuple[str, int, int]] = []
    reward_back = 0  # points given back for returned reward lines (积分兑换)
    for rl in req.lines:
        if rl.line_no in seen:
            raise ApiError(400, "duplicate_line", f"line {rl.line_no} appears twice in the return")
        seen.add(rl.line_no)
        sl = sold.get(rl.line_no)
        if sl is None:
            raise ApiError(422, "unknown_line", f"sale {sale_id} has no line {rl.line_no}")
        weighed = sl["weight_g"] is not None and sl["qty"] == 1 and _is_kg(conn, sl["sku"])
        units = sl["weight_g"] if weighed else sl["qty"]
        done = returned.get(rl.line_no, 0)
        if weighed:
            if rl.weight_g is not None:
                taking = rl.weight_g
            elif rl.qty in (None, 1):
                taking = units - done
            else:
                raise ApiError(400, "invalid_quantity", f"line {rl.line_no} was sold by weight; send weight_g")
        else:
            if rl.weight_g is not None:
                raise ApiError(400, "invalid_quantity", f"line {rl.line_no} was sold by count; send qty")
            taking = rl.qty if rl.qty is not None else 1
        if taking <= 0 or done + taking > units:
            raise ApiError(422, "over_return", f"line {rl.line_no}: {units - done} left to return, asked {taking}",
                           line_no=rl.line_no, returnable=units - done)
        refund = share_of_units(sl["net"], units, done, taking)
        reward_back += member_points.reward_points_back(conn, sale_id, rl.line_no, units, done, taking)
        lines.append(ReturnedLine(rl.line_no, sl["sku"], taking if not weighed else 1,
                                  taking if weighed else None, refund))
        for batch_id, qty in _batches_back(msgspec.json.decode(sl["batches"]), done, taking):
            restock.append((sl["sku"], batch_id, qty))
    refund_total = sum(line.refund for line in lines)
    clawed = 0
    if clawback:
        units_back = {ln.line_no: ln.weight_g if ln.weight_g is not None else ln.qty for ln in lines}
        clawed = promo_clawback.clawback_for_return(conn, sale_id, units_back, refund_total)
        refund_total -= clawed

    member_id = chainwide.resolve(conn, sale["member_id"]) if sale["member_id"] else None  # HQ may have merged it
    refunded_before = int(conn.execute("SELECT coalesce(sum(refund_total), 0) FROM returns WHERE sale_id = ?",
                                       (sale_id,)).fetchone()[0])
    to_exchange = min(refund_total, exchange_total) if exchange_total is not None else 0
    payout = refund_total - to_exchange
    tenders = refund_routing.paid_tenders(conn, sale_id, sale["change"])
    references = {r.tender_no: r.reference for r in req.refund_references}
    if len(references) != len(req.refund_references):
        raise ApiError(400, "duplicate_tender", "a tender appears twice in refund_references")
    refund_routing.check_references(tenders, references)
    parts = [TenderRefund("exchange", to_exchange)] if to_exchange else []
    if req.refund_method is not None:
        if req.refund_method in ("stored_value", "points") and member_id is None:
            raise ApiError(422, "member_required", "refunds to stored value or points need a member sale")
        parts += refund_routing.allocate_to_method(payout, req.refund_method, tenders, references) if payout else []
    elif payout:
        parts += refund_routing.allocate(payout, tenders, references)
    refunds = refund_routing.by_method(parts)

    points_reversed = 0
    member: MemberSummary | None = None
    if member_id is not None:
        for f in refunds:
            if f.method == "stored_value":
                member_ledger.post(conn, "value", member_id, f.amount, "refund", return_id, actor, at)
            elif f.method == "points":
                points_back = f.amount // POINT_VALUE_FEN
                member_ledger.post(conn, "points", member_id, points_back, "refund", return_id, actor, at)
        if sale["points_earned"] and sale["total"] > 0:
            owed = share_of_units(sale["points_earned"], sale["total"], refunded_before, refund_total)
            points_now, _ = member_ledger.balances(conn, member_id)
            points_reversed = min(owed, points_now)  # points already spent cannot be taken below zero
            if points_reversed:
                member_ledger.post(conn, "points", member_id, -points_reversed, "reverse", return_id, actor, at)
        if reward_back:
            member_ledger.post(conn, "points", member_id, reward_back, "reward_return", return_id, actor, at)
        tier = conn.execute("SELECT tier FROM members WHERE member_id = ?", (member_id,)).fetchone()[0]
        value_back = sum(f.amount for f in refunds if f.method == "stored_value")
        points_net = sum(f.amount // POINT_VALUE_FEN for f in refunds if f.method == "points") - points_reversed
        member = chainwide.summary(conn, member_id, tier, unsent=(value_back, points_net + reward_back))

    appended = chain.append(conn, "return", return_id, at, {
        "sale_id": sale_id, "user_id": actor.user_id, "refund_total": refund_total,
        "lines": [[ln.line_no, ln.sku, ln.qty, ln.weight_g, ln.refund] for ln in lines],
        "refunds": [[f.method, f.amount] for f in refunds], "points_reversed": points_reversed,
        **({"refund_tenders": [[p.method, p.amount, p.tender_no, p.reference] for p in parts]}
           if any(p.tender_no is not None for p in parts) else {}),
        **({"clawback": clawed} if clawed else {}),
        **({"points_reward_returned": reward_back} if reward_back else {}),
    })
    result = ReturnResult(
        return_id=return_id, sale_id=sale_id, created_at=at, lines=lines, refund_total=refund_total,
        refunds=refunds, points_reversed=points_reversed, member=member,
        journal_seq=appended.seq, journal_hash=appended.hash, clawback=clawed, points_reward_returned=reward_back,
        refunds_by_tender=parts,
    )
    body = _encoder.encode(result)
    conn.execute(
        """INSERT INTO returns (return_id, sale_id, till_id, user_id, refund_total, points_reversed, request_hash,
               response, journal_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (return_id, sale_id, req.till_id or actor.till_id, actor.user_id, refund_total, points_reversed, digest,
         body, appended.seq, at),
    )
    promo_clawback.record(conn, return_id, sale_id, clawed)
    for ln in lines:
        conn.execute("INSERT INTO return_lines (return_id, line_no, qty, weight_g, refund) VALUES (?, ?, ?, ?, ?)",
                     (return_id, ln.line_no, ln.qty, ln.weight_g, ln.refund))
    for n, p in enumerate(parts, start=1):
        conn.execute("""INSERT INTO return_refunds (return_id, refund_no, method, amount, tender_no, reference)
                        VALUES (?, ?, ?, ?, ?, ?)""", (return_id, n, p.method, p.amount, p.tender_no, p.reference))
    for sku, batch_id, qty in restock:
        stock.record(conn, sku=sku, qty=qty, kind="return", at=at, actor=actor, ref=return_id, batch_id=batch_id)
    for sku in {sku for sku, _, _ in restock}:
        stock.check_thresholds(conn, sku, at)
    outbox.append(conn, ReturnDelta(
        return_id=return_id, sale_id=sale_id, user_id=actor.user_id, at=at,
        lines=[ReturnLineDelta(ln.line_no, ln.qty, ln.refund, ln.weight_g) for ln in lines],
        refunds=[DeltaTender(p.method, p.amount, p.reference) for p in parts], refund_total=refund_total,
        journal_seq=appended.seq, till_id=req.till_id or actor.till_id, member_id=member_id,
        points_reversed=points_reversed, points_reward_returned=reward_back,
    ), return_id, at)
    referrals.on_return(conn, sale_id, at)  # standalone: a returned first purchase takes the referral reward back
    return body


def _is_kg(conn: sqlite3.Connection, sku: str) -> bool:
    row = conn.execute("SELECT unit FROM items WHERE sku = ?", (sku,)).fetchone()
    return bool(row and row[0] == "kg")
