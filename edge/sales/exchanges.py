"""Exchanges (换货): a return and a replacement sale committed as one transaction.

The return and the sale keep their own ids — derived from the exchange id with UUIDv5, so a
retried exchange finds both again — and their own journal records and outbox deltas. The credit
moves between them as refund method / tender `exchange`.
"""

from __future__ import annotations

import sqlite3
import uuid

import msgspec

from edge.errors import ApiError
from edge.pricing.engine import Quote
from edge.sales.checkout import Replay, commit_sale, replay_or_conflict, request_hash
from edge.sales.models import ExchangeRequest, ExchangeResult, ReturnRequest, ReturnResult, SaleRequest, SaleResult
from edge.sales.returns import commit_return
from edge.stock.ledger import Actor

_encoder = msgspec.json.Encoder()


def parts_of(req: ExchangeRequest) -> tuple[ReturnRequest, SaleRequest]:
    return_req = ReturnRequest(return_id=uuid.uuid5(req.exchange_id, "return"), sale_id=req.sale_id,
                               lines=req.return_lines, refund_method=req.refund_method, till_id=req.till_id,
                               reason=req.reason)
    sale_req = SaleRequest(sale_id=uuid.uuid5(req.exchange_id, "sale"), till_id=req.till_id, lines=req.lines,
                           tenders=req.tenders, member_id=req.member_id)
    return return_req, sale_req


def commit_exchange(conn: sqlite3.Connection, req: ExchangeRequest, digest: str, quote: Quote, actor: Actor,
                    at: str, today: str, store_code: str) -> Replay | bytes:
    rid = str(req.exchange_id)
    replay = replay_or_conflict(conn, "client_requests", "request_id", rid, digest)
    if replay is not None:
        return replay
    return_req, sale_req = parts_of(req)
    returned = commit_return(conn, return_req, request_hash(return_req), actor, at, exchange_total=quote.total)
    if isinstance(returned, Replay):  # the derived ids were used outside this exchange
        raise ApiError(409, "id_conflict", "this exchange's return was already committed on its own")
    ret = msgspec.json.decode(returned, type=ReturnResult)
    credit = min(ret.refund_total, quote.total)
    if quote.total > credit and not req.tenders:
        raise ApiError(422, "tenders_short", f"the credit {credit} leaves {quote.total - credit} to pay",
                       total=quote.total, credit=credit)
    if quote.total <= credit and req.tenders:
        raise ApiError(422, "overtendered", "the exchange credit covers the new lines; send no tenders")
    sold = commit_sale(conn, sale_req, request_hash(sale_req), quote, actor, at, today, store_code,
                       exchange_credit=credit)
    if isinstance(sold, Replay):
        raise ApiError(409, "id_conflict", "this exchange's sale was already committed on its own")
    sale = msgspec.json.decode(sold, type=SaleResult)
    body = _encoder.encode(ExchangeResult(exchange_id=rid, credit=credit, due=quote.total - credit,
                                          refunded=ret.refund_total - credit, returned=ret, sale=sale))
    conn.execute("INSERT INTO client_requests (request_id, kind, request_hash, response, created_at)"
                 " VALUES (?, 'exchange', ?, ?, ?)", (rid, digest, body, at))
    return body
