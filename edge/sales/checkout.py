"""Commit a sale: one writer transaction for the sale, its stock, ledgers, journal and outbox.

The basket is priced before the write (on a read connection); the write re-checks what another
sale could have changed meanwhile (idempotency, member balances) and writes everything or nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3

import msgspec

from edge.engage import referrals
from edge.errors import ApiError
from edge.journal import chain
from edge.members import chainwide
from edge.members import ledger as member_ledger
from edge.members import points as member_points
from edge.members import tiers as member_tiers
from edge.outbox import queue as outbox
from edge.pricing.engine import Quote, points_for_quote
from edge.promotions import repository as promotions
from edge.reports import rollups
from edge.sales.models import MEMBER_TENDERS, MemberSummary, SaleRequest, SaleResult, TenderIn
from edge.stock import ledger as stock
from edge.stock.ledger import Actor
from hq_sync.protocol import DeltaLine, DeltaTender, SaleDelta

POINT_VALUE_FEN = 1  # one point pays one fen
_result_encoder = msgspec.json.Encoder()


def _json(value: object) -> str:
    return _result_encoder.encode(value).decode()


def request_hash(req: msgspec.Struct) -> str:
    return hashlib.sha256(msgspec.json.encode(req, order="sorted")).hexdigest()


class Replay(msgspec.Struct, frozen=True):
    """A retried request: the stored response of the first commit."""

    body: bytes


def check_tenders(total: int, tenders: list[TenderIn], member_id: str | None) -> tuple[int, int]:
    """Validate tenders against the total; returns (tendered, change)."""
    tendered = sum(t.amount for t in tenders)
    cash = sum(t.amount for t in tenders if t.method == "cash")
    if tendered < total:
        raise ApiError(422, "tenders_short", f"tenders {tendered} do not cover the total {total}", total=total)
    if tendered - cash > total:
        raise ApiError(422, "overtendered", "only cash may exceed the total; other tenders must not", total=total)
    if member_id is None and any(t.method in MEMBER_TENDERS for t in tenders):
        raise ApiError(422, "member_required", "stored_value and points tenders need a member_id")
    return tendered, tendered - total


def replay_or_conflict(conn: sqlite3.Connection, table: str, key: str, id_value: str, digest: str) -> Replay | None:
    row = conn.execute(f"SELECT request_hash, response FROM {table} WHERE {key} = ?", (id_value,)).fetchone()
    if row is None:
        return None
    if row[0] != digest:
        raise ApiError(409, "id_conflict", f"{key} {id_value} was already used with a different body")
    return Replay(bytes(row[1]))


def _next_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(
        """INSERT INTO counters (name, value) VALUES (?, 1)
           ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value""",
        (name,),
    ).fetchone()
    return int(row[0])


def commit_sale(
    conn: sqlite3.Connection,
    req: SaleRequest,
    digest: str,
    quote: Quote,
    actor: Actor,
    at: str,
    today: str,
    store_code: str,
    exchange_credit: int = 0,
) -> Replay | bytes:
    """Commit a sale. `exchange_credit` (from a return in the same exchange) pays part of it."""
    sale_id = str(req.sale_id)
    replay = replay_or_conflict(conn, "sales", "sale_id", sale_id, digest)
    if replay is not None:
        return replay
    tendered, change = check_tenders(quote.total - exchange_credit, req.tenders, req.member_id)
    tenders = [DeltaTender(t.method, t.amount, t.reference) for t in req.tenders]
    if exchange_credit:
        tenders.append(DeltaTender("exchange", exchange_credit))
    receipt_no = f"{store_code}-{_next_counter(conn, 'receipt'):08d}"

    points_redeemed = sum(t.amount for t in req.tenders if t.method == "points") // POINT_VALUE_FEN
    value_spent = sum(t.amount for t in req.tenders if t.method == "stored_value")
    member: MemberSummary | None = None
    points_earned = points_reward = 0
    if req.member_id is not None:
        tier = quote.tier or "regular"
        # Each line's net at its tier x promotion multiplier; the part paid with points earns none.
        points_earned = points_for_quote(quote, points_redeemed * POINT_VALUE_FEN)
        try:
            if value_spent:
                member_ledger.post(conn, "value", req.member_id, -value_spent, "spend", sale_id, actor, at)
            if points_redeemed:
                member_ledger.post(conn, "points", req.member_id, -points_redeemed, "redeem", sale_id, actor, at)
            points_reward = member_points.record_rewards(conn, sale_id, quote)  # 积分兑换 lines
            if points_reward:
                member_ledger.post(conn, "points", req.member_id, -points_reward, "reward", sale_id, actor, at)
        except member_ledger.Insufficient as exc:
            code = "insufficient_balance" if exc.ledger == "value" else "insufficient_points"
            raise ApiError(402, code, f"member {req.member_id} has {exc.available}, the tender needs {exc.wanted}",
                           available=exc.available) from None
        if points_earned:
            member_ledger.post(conn, "points", req.member_id, points_earned, "earn", sale_id, actor, at)
        member = chainwide.summary(conn, req.member_id, tier,
                                   unsent=(-value_spent, points_earned - points_redeemed - points_reward))

    appended = chain.append(conn, "sale", sale_id, at, {
        "receipt_no": receipt_no, "till_id": req.till_id, "user_id": actor.user_id, "member_id": req.member_id,
        "total": quote.total, "tax": quote.tax, "change": change,
        "lines": [[ln.sku, ln.qty, ln.weight_g, ln.net] for ln in quote.lines],
        "tenders": [[t.method, t.amount] for t in tenders],
        **({"points_reward": points_reward} if points_reward else {}),
    })
    result = SaleResult(
        sale_id=sale_id, receipt_no=receipt_no, till_id=req.till_id, created_at=at, lines=quote.lines,
        subtotal=quote.subtotal, discount=quote.discount, total=quote.total, tax=quote.tax, tenders=req.tenders,
        tendered=tendered, change=change, points_earned=points_earned, points_redeemed=points_redeemed,
        member=member, journal_seq=appended.seq, journal_hash=appended.hash, exchange_credit=exchange_credit,
        points_reward=points_reward,
    )
    body = _result_encoder.encode(result)
    conn.execute(
        """INSERT INTO sales (sale_id, receipt_no, till_id, user_id, member_id, subtotal, discount, total, tax,
               tendered, change, points_earned, request_hash, response, journal_seq, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (sale_id, receipt_no, req.till_id, actor.user_id, req.member_id, quote.subtotal, quote.discount,
         quote.total, quote.tax, tendered, change, points_earned, digest, body, appended.seq, at),
    )
    promotions.record_sale(conn, sale_id, quote, req.member_id, at)  # usage, limits, coupon redemptions
    # The stock of all lines in a few statements (stock.sell), then the lines in one executemany.
    splits = stock.sell(conn, [(ln.sku, ln.weight_g if ln.unit == "kg" and ln.weight_g is not None else ln.qty)
                               for ln in quote.lines], today, at, actor, sale_id)
    conn.executemany(
        """INSERT INTO sale_lines (sale_id, line_no, sku, barcode, qty, weight_g, unit_price, gross, discount,
               net, tax, tax_rate_bp, applied, batches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [(sale_id, line.line_no, line.sku, line.barcode, line.qty, line.weight_g, line.unit_price, line.gross,
          line.discount, line.net, line.tax, line.tax_rate_bp, _json(line.applied), _json(parts))
         for line, parts in zip(quote.lines, splits, strict=True)],
    )
    rollups.add_sold_lines(conn, [(at, ln.sku, ln.qty, ln.weight_g, ln.net) for ln in quote.lines])
    conn.executemany("INSERT INTO sale_tenders (sale_id, tender_no, method, amount, reference) VALUES (?, ?, ?, ?, ?)",
                     [(sale_id, n, t.method, t.amount, t.reference) for n, t in enumerate(tenders, start=1)])
    referrals.on_sale(conn, sale_id, req.member_id, quote.total, at)  # standalone: B's first purchase rewards A
    outbox.append(conn, SaleDelta(
        sale_id=sale_id, receipt_no=receipt_no, till_id=req.till_id, user_id=actor.user_id, at=at,
        lines=[DeltaLine(line_no=ln.line_no, sku=ln.sku, qty=ln.qty, unit_price=ln.unit_price, gross=ln.gross,
                         discount=ln.discount, net=ln.net, tax=ln.tax, weight_g=ln.weight_g,
                         rules=[(a.rule_id, a.amount) for a in ln.applied]) for ln in quote.lines],
        tenders=tenders,
        subtotal=quote.subtotal, discount=quote.discount, total=quote.total, tax=quote.tax, change=change,
        journal_seq=appended.seq, member_id=req.member_id, points_earned=points_earned,
        points_redeemed=points_redeemed, value_spent=value_spent, points_reward=points_reward,
        coupons=[u.coupon for u in quote.uses if u.coupon is not None],
    ), sale_id, at)
    member_tiers.after_sale(conn, req.member_id, today, at)  # a standalone hub's upgrade, at once
    return body
