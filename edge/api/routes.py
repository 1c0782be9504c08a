"""Till API routes: auth, catalog, quote, sales, returns, members, stock, journal.

Each route names its permission in `opt`; `permission_guard` enforces it. Writes go through the
hub's single writer; reads use this thread's read connection.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import Parameter
from msgspec import Meta

from edge import __version__
from edge.api.engage_routes import ENGAGE_ROUTES
from edge.api.eod_routes import EOD_ROUTES
from edge.api.member_routes import MEMBER_RULE_ROUTES
from edge.api.openapi import body_operation
from edge.api.privacy_routes import PRIVACY_ROUTES, audit_read
from edge.api.report_routes import REPORT_ROUTES
from edge.api.setup_routes import SETUP_ROUTES
from edge.api.shift_routes import SHIFT_ROUTES
from edge.api.statement_routes import STATEMENT_ROUTES
from edge.api.stocktake_routes import STOCKTAKE_ROUTES
from edge.api.support import actor_for, actor_of, claims_of, decode_body, decode_bytes, may, raw_json
from edge.api.sync_routes import SYNC_ROUTES
from edge.api.transfer_routes import TRANSFER_ROUTES
from edge.api.user_routes import USER_ROUTES
from edge.auth.login import LoginRequest, LoginResult, authenticate
from edge.auth.tokens import Claims
from edge.care.health import Component, components
from edge.catalog.models import Category, Item, ItemPage, LookupResult
from edge.catalog.repository import item_by_sku, lookup_barcode, search_items
from edge.device_link import receipts
from edge.device_link.link import sale_committed
from edge.device_link.routes import DEVICE_ROUTES
from edge.errors import ApiError
from edge.hub import Hub
from edge.journal import chain
from edge.members import chainwide
from edge.members.models import CreateMemberRequest, Member
from edge.members.service import commit_topup, create_member, find_member
from edge.pricing.engine import Quote
from edge.pricing.price_lists import PriceBoard, local_edit_blocked, set_local_price
from edge.promotions import repository as promotions
from edge.promotions.rules import Promotion, promotion_encoder
from edge.sales.basket import quote_lines
from edge.sales.checkout import Replay, commit_sale, request_hash
from edge.sales.exchanges import commit_exchange, parts_of
from edge.sales.models import (
    ExchangeRequest,
    LineIn,
    MemberSummary,
    QuoteRequest,
    QuoteResult,
    ReturnRequest,
    SaleRequest,
    TopupRequest,
)
from edge.sales.returns import commit_return
from edge.stock.models import AdjustRequest, Alert, ReceiveRequest, StockView
from edge.stock.service import adjust, receive, stock_view
from edge.storage.db import read_snapshot
from hq_sync import directory
from hq_sync.agent import authorize_tenders, spend_refusal
from hq_sync.coupons import reserve_coupons


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


# -- health and auth ---------------------------------------------------------------------------------

class Health(msgspec.Struct):
    status: str
    store_id: str
    version: str
    components: dict[str, Component] = {}  # broker, disk, database, clock, hq, devices (edge/care/health.py)


@get("/healthz", sync_to_thread=False)
def healthz(request: Request[Any, Any, Any], hub: Hub) -> Health:
    hub.db.reader().execute("SELECT 1").fetchone()
    return Health(status="ok", store_id=hub.store_id, version=__version__,
                  components=components(request.app.state, hub))


@post("/api/v1/auth/login", status_code=200, operation_class=body_operation(LoginRequest))
async def login(request: Request[Any, Any, Any], hub: Hub) -> LoginResult:
    return authenticate(hub, await decode_body(request, LoginRequest))


class Me(msgspec.Struct):
    user_id: str
    username: str
    role: str
    till_id: str | None


@get("/api/v1/me", opt=_perm("items.read"), sync_to_thread=False)
def me(request: Request[Any, Any, Any]) -> Me:
    c = claims_of(request)
    return Me(c.user_id, c.username, c.role, c.till_id)


# -- catalog -------------------------------------------------------------------------------------------

def _prices_now(hub: Hub) -> PriceBoard:
    """Prices in force now for anyone (no tier): what a shelf label and a lookup show."""
    return PriceBoard(hub.store_id, None, hub.clock.now())


@get("/api/v1/items", opt=_perm("items.read"), sync_to_thread=False)
def list_items(
    hub: Hub,
    text: Annotated[str, Parameter(query="query", max_length=100)] = "",
    category: Annotated[str | None, Parameter(max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
) -> ItemPage:
    conn = hub.db.reader()
    items, total = search_items(conn, text.strip(), limit, offset, category)
    board = _prices_now(hub)
    return ItemPage(items=[board.apply(conn, i)[0] for i in items], total=total, limit=limit, offset=offset)


@get("/api/v1/items/lookup", opt=_perm("items.read"), sync_to_thread=False)
def lookup(hub: Hub, barcode: Annotated[str, Parameter(min_length=1, max_length=64)]) -> LookupResult:
    reader = hub.db.reader()
    with read_snapshot(reader):
        return lookup_barcode(reader, barcode, hub.config.barcode_layout, _prices_now(hub), hub.scans)


@get("/api/v1/items/{sku:str}", opt=_perm("items.read"), sync_to_thread=False)
def get_item(hub: Hub, sku: str) -> Item:
    conn = hub.db.reader()
    item = item_by_sku(conn, sku)
    if item is None:
        raise ApiError(404, "unknown_item", f"no item with sku {sku[:64]}")
    return _prices_now(hub).apply(conn, item)[0]


class CategoryList(msgspec.Struct):
    categories: list[Category]


@get("/api/v1/categories", opt=_perm("items.read"), sync_to_thread=False)
def list_categories(hub: Hub) -> CategoryList:
    sql = "SELECT category_id, parent_id, name_zh, name_en FROM categories ORDER BY category_id"
    rows = hub.db.reader().execute(sql)
    return CategoryList([Category(*r) for r in rows])


class PriceChange(msgspec.Struct, frozen=True):
    price: Annotated[int, Meta(ge=0, le=100_000_000)]
    reason: Annotated[str, Meta(max_length=200)] = ""


@put("/api/v1/items/{sku:str}/price", opt=_perm("prices.write"), operation_class=body_operation(PriceChange))
async def set_price(request: Request[Any, Any, Any], hub: Hub, sku: str) -> Item:
    req = await decode_body(request, PriceChange)
    actor = actor_of(request)
    at = hub.clock.stamp()

    now = hub.clock.now()

    def write(conn: Any) -> None:
        row = conn.execute("SELECT price FROM items WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise ApiError(404, "unknown_item", f"no item with sku {sku[:64]}")
        locked_by = local_edit_blocked(conn, sku, hub.store_id, now)
        if locked_by is not None:
            raise ApiError(403, "price_locked", f"HQ price list {locked_by} fixes the price of {sku}; "
                           "local edits are not allowed", list_id=locked_by)
        set_local_price(conn, sku, req.price, hub.store_id, now)  # where an HQ list allows local edits
        conn.execute("UPDATE items SET price = ?, updated_at = ? WHERE sku = ?", (req.price, at, sku))
        conn.execute(
            "INSERT INTO audit (at, user_id, till_id, action, target, detail) VALUES (?, ?, ?, 'price.set', ?, ?)",
            (at, actor.user_id, actor.till_id, sku,
             msgspec.json.encode({"old": row[0], "new": req.price, "reason": req.reason}).decode()))

    await hub.db.write(write)
    item = item_by_sku(hub.db.reader(), sku)
    assert item is not None
    return item


# -- quote, sale, return --------------------------------------------------------------------------------

def _quote(hub: Hub, reader: Any, lines: list[LineIn], member_id: str | None, coupon_codes: list[str]) -> Quote:
    """Quote and sale share this: prices in force and promotions running now, the cached rule book,
    all read from one snapshot."""
    with read_snapshot(reader):
        return quote_lines(reader, hub.config.barcode_layout, lines, member_id, coupon_codes,
                           book=hub.promotions.book(reader), at=hub.clock.now(), store_id=hub.store_id,
                           scan_cache=hub.scans)


def _member_summary(hub: Hub, member_id: str | None) -> MemberSummary | None:
    if member_id is None:
        return None
    m = find_member(hub.db.reader(), member_id=member_id, show_phone=False)
    return MemberSummary(m.member_id, m.tier, m.points, m.balance, m.balance_as_of, m.spendable_here) if m else None


@post("/api/v1/quote", opt=_perm("quote"), status_code=200, operation_class=body_operation(QuoteRequest))
async def quote(request: Request[Any, Any, Any], hub: Hub) -> QuoteResult:
    req = await decode_body(request, QuoteRequest)
    member_id = await directory.ensure_member(request.app.state, hub, req.member_id)  # aliases; HQ on a miss
    if member_id != req.member_id:
        req = msgspec.structs.replace(req, member_id=member_id)
    q = _quote(hub, hub.db.reader(), req.lines, req.member_id, req.coupon_codes)
    return QuoteResult(lines=q.lines, subtotal=q.subtotal, discount=q.discount, total=q.total, tax=q.tax,
                       points_earned=q.points_earned, member=_member_summary(hub, req.member_id), hints=q.hints)


@post("/api/v1/sales", opt=_perm("sales.create"), operation_class=body_operation(SaleRequest))
async def create_sale(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    return raw_json(await sell(request.app.state, hub, claims_of(request), await request.body()), 201)


async def sell(state: Any, hub: Hub, claims: Claims, body: bytes) -> bytes:
    """POST /api/v1/sales once the caller is known to hold `sales.create`: the response body (201), or
    an ApiError. Litestar's route and the fast path below it (edge/api/sale_fast_path.py) both call it."""
    req = decode_bytes(body, SaleRequest)
    digest = request_hash(req)
    reader = hub.db.reader()
    prior = reader.execute("SELECT request_hash, response FROM sales WHERE sale_id = ?", (str(req.sale_id),)).fetchone()
    if prior is not None:  # fast path for a retry; the writer checks again
        if prior[0] != digest:
            raise ApiError(409, "id_conflict", f"sale_id {req.sale_id} was already used with a different body")
        return bytes(prior[1])
    member_id = await directory.ensure_member(state, hub, req.member_id)  # aliases; HQ on a miss
    if member_id != req.member_id:  # the digest stays that of the body the till sent
        req = msgspec.structs.replace(req, member_id=member_id)
    q = _quote(hub, reader, req.lines, req.member_id, req.coupon_codes)
    checks = await authorize_tenders(state, req.member_id, req.tenders, str(req.sale_id))  # HQ escrow
    await reserve_coupons(state, reader, req.coupon_codes, str(req.sale_id))  # chain coupons: HQ's use
    actor = actor_for(claims, req.till_id)
    at, today = hub.clock.stamp(), hub.clock.today()
    try:
        writer = hub.sale_writer  # the sale-writer process on the second core, once up (edge/sales/sale_writer.py)
        result = None if writer is None else await writer.commit(req, digest, q, actor, at, today, hub.store_code)
        if result is None:
            if writer is not None:
                writer.want()
            result = await hub.db.write(lambda conn: commit_sale(conn, req, digest, q, actor, at, today,
                                                                 hub.store_code),
                                        replayable=True)  # touches nothing but the database: no savepoint
    except ApiError as exc:
        raise spend_refusal(checks, exc) from None  # offline_limit / held_elsewhere on a paired hub
    if isinstance(result, Replay):
        return result.body
    sale_committed(state, req.till_id, result)  # receipt and drawer, in the background
    return result


@get("/api/v1/sales/{sale_id:uuid}", opt=_perm("sales.read"), sync_to_thread=False)
def get_sale(hub: Hub, sale_id: uuid.UUID) -> Response[bytes]:
    row = hub.db.reader().execute("SELECT response FROM sales WHERE sale_id = ?", (str(sale_id),)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_sale", f"no sale {sale_id}")
    return raw_json(bytes(row[0]))


@post("/api/v1/returns", opt=_perm("returns.create"), operation_class=body_operation(ReturnRequest))
async def create_return(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, ReturnRequest)
    digest = request_hash(req)
    actor = actor_of(request, req.till_id)
    at = hub.clock.stamp()
    clawback = hub.config.return_clawback
    result = await hub.db.write(lambda conn: commit_return(conn, req, digest, actor, at, clawback=clawback))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@post("/api/v1/exchanges", opt=_perm("returns.create"), operation_class=body_operation(ExchangeRequest))
async def create_exchange(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, ExchangeRequest)
    if not may(request, "sales.create"):
        raise ApiError(403, "forbidden", f"role {claims_of(request).role} may not sales.create")
    digest = request_hash(req)
    _, sale_req = parts_of(req)
    reader = hub.db.reader()
    member_id = req.member_id
    if member_id is None:
        row = reader.execute("SELECT member_id FROM sales WHERE sale_id = ?", (str(req.sale_id),)).fetchone()
        member_id = row[0] if row else None
    member_id = chainwide.resolve(reader, member_id) if member_id is not None else None
    if req.member_id is not None and member_id != req.member_id:  # an id HQ merged: the member it became
        req = msgspec.structs.replace(req, member_id=member_id)
    q = _quote(hub, reader, sale_req.lines, member_id, [])
    checks = await authorize_tenders(request.app.state, member_id, req.tenders, str(req.exchange_id))  # HQ escrow
    actor = actor_of(request, req.till_id)
    at, today = hub.clock.stamp(), hub.clock.today()
    try:
        result = await hub.db.write(lambda conn: commit_exchange(conn, req, digest, q, actor, at, today,
                                                                 hub.store_code))
    except ApiError as exc:
        raise spend_refusal(checks, exc) from None
    if not isinstance(result, Replay):
        sale_committed(request.app.state, req.till_id, receipts.exchange_sale(result))  # prints like a sale
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


# -- promotions (created locally for now; HQ pushes them once sync exists) ------------------------------

@post("/api/v1/promotions", opt=_perm("promotions.write"), operation_class=body_operation(Promotion))
async def promotion_create(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    promo = await decode_body(request, Promotion)
    actor, at = actor_of(request), hub.clock.stamp()
    await hub.db.write(lambda conn: promotions.create_promotion(conn, promo, actor.user_id, at))
    return raw_json(promotion_encoder.encode(promo), 201)


@get("/api/v1/promotions", opt=_perm("items.read"), sync_to_thread=False)
def promotion_list(hub: Hub) -> Response[bytes]:
    reader = hub.db.reader()
    body = {"version": promotions.version(reader), "promotions": promotions.active_promotions(reader)}
    return raw_json(promotion_encoder.encode(body))


@post("/api/v1/coupons", opt=_perm("promotions.write"), operation_class=body_operation(promotions.Coupon))
async def coupon_create(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    coupon = await decode_body(request, promotions.Coupon)
    at = hub.clock.stamp()
    await hub.db.write(lambda conn: promotions.create_coupon(conn, coupon, at))
    return raw_json(promotion_encoder.encode(coupon), 201)


# -- members ------------------------------------------------------------------------------------------

async def _audited(request: Request[Any, Any, Any], hub: Hub, m: Member) -> Member:
    """An unmasked answer is audited before it leaves (edge/members/privacy.py)."""
    if not m.phone_masked and m.phone is not None:
        await audit_read(request, hub, [m.member_id])
    return m


@get("/api/v1/members/lookup", opt=_perm("members.read"))
async def member_lookup(
    request: Request[Any, Any, Any], hub: Hub,
    phone: Annotated[str | None, Parameter(max_length=32)] = None,
    card: Annotated[str | None, Parameter(max_length=32)] = None,
) -> Member:
    """A member by phone or card. On a paired hub a miss asks HQ, a hit refreshes the chain-wide balance
    (hq_sync/directory.py)."""
    if (phone is None) == (card is None):
        raise ApiError(400, "invalid_query", "look up by exactly one of phone or card")
    show = may(request, "members.phone")
    m = find_member(hub.db.reader(), phone=phone, card=card, show_phone=show)
    if m is None:
        found = await directory.lookup(request.app.state, hub, phone=phone, card=card, known=False)
        m = find_member(hub.db.reader(), member_id=found, show_phone=show) if found else None
    else:
        await directory.lookup(request.app.state, hub, member_id=m.member_id, known=True)
        m = find_member(hub.db.reader(), member_id=m.member_id, show_phone=show) or m
    if m is None:
        raise ApiError(404, "unknown_member", "no member with that phone or card")
    return await _audited(request, hub, m)


@get("/api/v1/members/{member_id:str}", opt=_perm("members.read"))
async def member_get(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Member:
    show = may(request, "members.phone")
    m = find_member(hub.db.reader(), member_id=member_id, show_phone=show)
    found = await directory.lookup(request.app.state, hub, member_id=m.member_id if m else member_id,
                                   known=m is not None)
    m = find_member(hub.db.reader(), member_id=found or member_id, show_phone=show)
    if m is None:
        raise ApiError(404, "unknown_member", f"no member {member_id[:64]}")
    return await _audited(request, hub, m)


@post("/api/v1/members", opt=_perm("members.create"), operation_class=body_operation(CreateMemberRequest))
async def member_create(request: Request[Any, Any, Any], hub: Hub) -> Member:
    req = await decode_body(request, CreateMemberRequest)
    if find_member(hub.db.reader(), phone=req.phone, show_phone=False) is None:
        await directory.refuse_known(request.app.state, hub, req.phone, req.card_no)  # signed up elsewhere?
    actor = actor_of(request)
    at = hub.clock.stamp()
    member_id = await hub.db.write(lambda conn: create_member(conn, req, actor, at, hub.store_id))
    m = find_member(hub.db.reader(), member_id=member_id, show_phone=may(request, "members.phone"))
    assert m is not None
    return await _audited(request, hub, m)


@post("/api/v1/members/{member_id:str}/topups", opt=_perm("members.topup"),
      operation_class=body_operation(TopupRequest))
async def member_topup(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Response[bytes]:
    req = await decode_body(request, TopupRequest)
    digest = request_hash(req)
    actor = actor_of(request, req.till_id)
    at = hub.clock.stamp()
    result = await hub.db.write(lambda conn: commit_topup(conn, member_id, req, digest, actor, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


# -- stock ----------------------------------------------------------------------------------------------

class AlertList(msgspec.Struct):
    alerts: list[Alert]


@get("/api/v1/stock/alerts", opt=_perm("stock.read"), sync_to_thread=False)
def stock_alerts(hub: Hub, kind: Literal["low", "high"] | None = None) -> AlertList:
    sql = "SELECT alert_id, sku, kind, on_hand, threshold, raised_at FROM stock_alerts WHERE cleared_at IS NULL"
    args: tuple[str, ...] = ()
    if kind:
        sql += " AND kind = ?"
        args = (kind,)
    return AlertList([Alert(*r) for r in hub.db.reader().execute(sql + " ORDER BY alert_id", args)])


@get("/api/v1/stock/{sku:str}", opt=_perm("stock.read"), sync_to_thread=False)
def stock_get(hub: Hub, sku: str) -> StockView:
    view = stock_view(hub.db.reader(), sku)
    if view is None:
        raise ApiError(404, "unknown_item", f"no item with sku {sku[:64]}")
    return view


@post("/api/v1/stock/receipts", opt=_perm("stock.receive"), operation_class=body_operation(ReceiveRequest))
async def stock_receive(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, ReceiveRequest)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    result = await hub.db.write(lambda conn: receive(conn, req, digest, actor, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@post("/api/v1/stock/adjustments", opt=_perm("stock.adjust"), operation_class=body_operation(AdjustRequest))
async def stock_adjust(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, AdjustRequest)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    result = await hub.db.write(lambda conn: adjust(conn, req, digest, actor, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


# -- journal ----------------------------------------------------------------------------------------------

@get("/api/v1/journal/verify", opt=_perm("journal.read"), sync_to_thread=True)
def journal_verify(hub: Hub) -> chain.Verdict:
    return chain.verify(hub.db.reader())


ROUTES = [healthz, login, me, list_items, list_categories, lookup, get_item, set_price, quote, create_sale, get_sale,
          create_return, create_exchange, member_lookup, member_get, member_create, member_topup, stock_alerts,
          stock_get, stock_receive, stock_adjust, journal_verify]
ROUTES += [promotion_create, promotion_list, coupon_create]
ROUTES += DEVICE_ROUTES
ROUTES += TRANSFER_ROUTES
ROUTES += SYNC_ROUTES
ROUTES += STOCKTAKE_ROUTES
ROUTES += EOD_ROUTES
ROUTES += SHIFT_ROUTES
ROUTES += USER_ROUTES
ROUTES += REPORT_ROUTES
ROUTES += MEMBER_RULE_ROUTES
ROUTES += ENGAGE_ROUTES
ROUTES += PRIVACY_ROUTES
ROUTES += STATEMENT_ROUTES
ROUTES += SETUP_ROUTES
