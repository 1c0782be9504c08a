"""The reference HQ as a Litestar app: the admin API of CONTRACT.md and the sync endpoints for hubs.

Admin calls carry `Authorization: Bearer <token>` from `POST /hq/v1/auth/login`. Hub calls carry
the store's Ed25519 signature over method, path, time and body (`hq_sync.wire.sign_request`); a
request signed by any other key than the one registered at pairing is refused (401).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Litestar, Request, Response, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from hq_sync.server import coupons, service, transfers
from hq_sync.server.db import HqDb, open_db
from hq_sync.server.ingest import ingest
from hq_sync.server.schema import create_schema
from hq_sync.server.service import HqError, now_text
from hq_sync.wire import (
    REQUEST_SKEW_S,
    AuthorizeRequest,
    CouponReserve,
    DigestReport,
    PairRequest,
    StockReport,
    b64,
    batch_decoder,
    decompress,
    feed_page_encoder,
    request_message,
    unb64,
    verify,
)

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
MSGPACK = "application/msgpack"


class FeedSignal:
    """Wakes long-polling feed requests when something is appended (appends happen in worker threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self.event is not None:
            self.event.set()
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self.event
        if event is None:
            await asyncio.sleep(timeout)
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass


class Hq:
    """HQ's resources: the database, its key, the feed signal."""

    def __init__(self, db_url: str, demo: bool = False) -> None:
        self.db: HqDb = open_db(db_url)
        create_schema(self.db)
        if demo:
            service.seed_demo(self.db, now_text())
        self.demo = service.is_demo(self.db)
        self.private_key, self.public_key = service.hq_key(self.db)
        self.signal = FeedSignal()
        self._keys: dict[str, bytes] = {}

    def store_key(self, store_id: str) -> bytes | None:
        key = self._keys.get(store_id)
        if key is None:
            key = service.store_key(self.db, store_id)
            if key is not None:
                self._keys[store_id] = key
        return key

    def forget_key(self, store_id: str) -> None:
        self._keys.pop(store_id, None)

    def close(self) -> None:
        self.db.close()


def _hq(request: Request[Any, Any, Any]) -> Hq:
    return request.app.state.hq  # type: ignore[no-any-return]


def _json_response(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def _admin(request: Request[Any, Any, Any]) -> str:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        raise HqError(401, "unauthenticated", "Authorization: Bearer <token> from POST /hq/v1/auth/login")
    user = service.check_token(_hq(request).db, auth[7:].strip())
    if user is None:
        raise HqError(401, "unauthenticated", "token unknown or expired")
    return user


def _store(request: Request[Any, Any, Any], body: bytes) -> str:
    """The store whose key signed this request, or 401."""
    store_id = request.headers.get("x-backroom-store", "")
    try:
        at = int(request.headers.get("x-backroom-time", ""))
        signature = unb64(request.headers.get("x-backroom-signature", ""))
    except ValueError:
        raise HqError(401, "unsigned", "store requests carry X-Backroom-Store, -Time and -Signature") from None
    if abs(time.time() - at) > REQUEST_SKEW_S:
        raise HqError(401, "stale_request", "the request's time is too far from HQ's clock")
    key = _hq(request).store_key(store_id)
    if key is None:
        raise HqError(401, "not_paired", f"store {store_id[:64]} is not paired")
    query = request.scope.get("query_string", b"").decode()
    target = request.scope["path"] + (f"?{query}" if query else "")
    if not verify(key, signature, request_message(request.method, target, at, body)):
        raise HqError(401, "bad_signature", "the request is not signed by this store's key")
    return store_id


async def _decode(request: Request[Any, Any, Any], type_: type[Any]) -> Any:
    return _decode_bytes(await request.body(), type_)


def _decode_bytes(body: bytes, type_: type[Any]) -> Any:
    """Strict JSON into `type_`; a mismatch is a 400 naming the field (bodies a store signed are
    read as bytes first, to check the signature over exactly them)."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise HqError(400, "invalid_field", str(exc)) from None


def _thread(fn: Any, *args: Any) -> Any:
    return anyio.to_thread.run_sync(fn, *args)


# -- health and admin ------------------------------------------------------------------------------------

@get("/healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[bytes]:
    hq = _hq(request)
    return _json_response({"status": "ok", "role": "hq", "db": hq.db.dialect, "demo": hq.demo,
                           "public_key": b64(hq.public_key)})


class Login(msgspec.Struct, frozen=True):
    username: str
    password: str


@post("/hq/v1/auth/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = await _decode(request, Login)
    token, role, expires = await _thread(service.login, _hq(request).db, req.username, req.password)
    return _json_response({"token": token, "role": role,
                           "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires))})


class PriceIn(msgspec.Struct, frozen=True):
    price: int
    stores: list[str] | None = None
    effective_at: str | None = None


class PricesIn(msgspec.Struct, frozen=True):
    prices: list[tuple[str, int]]
    stores: list[str] | None = None
    effective_at: str | None = None


@put("/hq/v1/prices/{sku:str}")
async def set_price(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    _admin(request)
    req = await _decode(request, PriceIn)
    hq = _hq(request)
    seqs = await _thread(service.set_prices, hq.db, hq.private_key, [(sku, req.price)], req.stores, req.effective_at,
                         now_text())
    hq.signal.notify()
    return _json_response({"sku": sku, "price": req.price, "stores": req.stores or ["*"], "feed_seqs": seqs})


@post("/hq/v1/prices", status_code=200)
async def set_prices(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Many prices at once (`{"prices": [[sku, price], ...]}`): how a chain-wide price change goes out."""
    _admin(request)
    req = await _decode(request, PricesIn)
    hq = _hq(request)
    seqs = await _thread(service.set_prices, hq.db, hq.private_key, req.prices, req.stores, req.effective_at,
                         now_text())
    hq.signal.notify()
    return _json_response({"count": len(req.prices), "feed_seqs": seqs})


@post("/hq/v1/promotions")
async def create_promotion(request: Request[Any, Any, Any]) -> Response[bytes]:
    _admin(request)
    hq = _hq(request)
    out = await _thread(service.put_promotion, hq.db, hq.private_key, await request.body(), now_text())
    hq.signal.notify()
    return _json_response(out, 201)


@post("/hq/v1/coupons")
async def create_coupon(request: Request[Any, Any, Any]) -> Response[bytes]:
    _admin(request)
    hq = _hq(request)
    coupon = await _decode(request, coupons.CouponIn)
    out = await _thread(coupons.create, hq.db, hq.private_key, coupon, now_text())
    hq.signal.notify()
    return _json_response(out, 201)


@get("/hq/v1/coupons/{code:str}")
async def coupon_view(request: Request[Any, Any, Any], code: str) -> Response[bytes]:
    _admin(request)
    return _json_response(await _thread(coupons.view, _hq(request).db, code))


@post("/hq/v1/sync/coupons/reserve", status_code=200)
async def sync_coupon_reserve(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = _store(request, body)
    req = _decode_bytes(body, CouponReserve)
    return _json_response(await _thread(coupons.reserve, _hq(request).db, store_id, req, now_text()))


@get("/hq/v1/members/{member_id:str}")
async def member(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    _admin(request)
    return _json_response(await _thread(service.member_view, _hq(request).db, member_id))


class GrantIn(msgspec.Struct, frozen=True):
    store_id: str
    amount: int
    ledger: str = "value"


@post("/hq/v1/members/{member_id:str}/escrow")
async def member_grant(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Set aside part of a member's balance for a store to spend offline."""
    _admin(request)
    req = await _decode(request, GrantIn)
    if req.ledger not in ("value", "points"):
        raise HqError(422, "bad_ledger", "ledger is value or points")
    hq = _hq(request)
    g = await _thread(service.grant, hq.db, hq.private_key, member_id, req.store_id, req.ledger, req.amount,
                      now_text())
    hq.signal.notify()
    return _json_response(msgspec.to_builtins(g), 201)


class ReclaimIn(msgspec.Struct, frozen=True):
    ledger: str = "value"
    amount: int | None = None


@post("/hq/v1/members/{member_id:str}/reclaim", status_code=200)
async def member_reclaim(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    _admin(request)
    req = await _decode(request, ReclaimIn)
    hq = _hq(request)
    asked = await _thread(service.reclaim, hq.db, hq.private_key, member_id, req.ledger, req.amount, now_text())
    hq.signal.notify()
    return _json_response({"member_id": member_id, "asked": asked})


@get("/hq/v1/stores")
async def stores(request: Request[Any, Any, Any]) -> Response[bytes]:
    _admin(request)
    return _json_response({"stores": await _thread(service.list_stores, _hq(request).db)})


@get("/hq/v1/stores/{store_id:str}/quarantine")
async def store_quarantine(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    _admin(request)
    return _json_response({"store_id": store_id, "deltas": await _thread(service.quarantine, _hq(request).db,
                                                                         store_id)})


@get("/hq/v1/stores/{store_id:str}/digests")
async def store_digests(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    _admin(request)
    return _json_response({"store_id": store_id, "days": await _thread(service.digest_checks, _hq(request).db,
                                                                       store_id)})


@post("/hq/v1/stores/{store_id:str}/pair-code")
async def pair_code(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    _admin(request)
    code = await _thread(service.make_pair_code, _hq(request).db, store_id)
    return _json_response({"store_id": store_id, "code": code}, 201)


@get("/hq/v1/reports/{by:str}")
async def reports(request: Request[Any, Any, Any], by: str) -> Response[bytes]:
    _admin(request)
    return _json_response({"report": by, "rows": await _thread(service.report, _hq(request).db, by)})


@get("/hq/v1/transfers")
async def transfer_list(request: Request[Any, Any, Any],
                        in_state: Annotated[str | None, Parameter(query="state")] = None) -> Response[bytes]:
    _admin(request)
    return _json_response({"transfers": await _thread(transfers.list_transfers, _hq(request).db, in_state)})


@get("/hq/v1/stores/{store_id:str}/stock/{sku:str}")
async def store_stock(request: Request[Any, Any, Any], store_id: str, sku: str) -> Response[bytes]:
    _admin(request)
    return _json_response(await _thread(transfers.store_stock, _hq(request).db, store_id, sku))


# -- hub endpoints -----------------------------------------------------------------------------------------

@post("/hq/v1/sync/pair", status_code=200)
async def sync_pair(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = await _decode(request, PairRequest)
    hq = _hq(request)
    result = await _thread(service.pair, hq.db, req, hq.private_key, hq.public_key, hq.demo, now_text())
    hq.forget_key(req.store_id)
    hq.signal.notify()
    return _json_response(msgspec.to_builtins(result))


@post("/hq/v1/sync/batches", status_code=200)
async def sync_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = _store(request, body)
    try:
        batch = batch_decoder.decode(decompress(body, request.headers.get("content-encoding")))
    except (ValueError, msgspec.DecodeError) as exc:
        raise HqError(400, "bad_batch", f"the batch does not decode: {exc}"[:300]) from None
    if batch.store_id != store_id:
        raise HqError(403, "wrong_store", "a store may only send its own batches")
    hq = _hq(request)
    ack = await _thread(ingest, hq.db, batch, now_text())
    if any(row.kind.startswith("transfer_") for row in batch.rows):
        hq.signal.notify()  # a transfer step was routed onto another store's feed
    return _json_response(msgspec.to_builtins(ack))


@get("/hq/v1/sync/state")
async def sync_state(request: Request[Any, Any, Any]) -> Response[bytes]:
    store_id = _store(request, b"")
    acked = await _thread(service.store_acked, _hq(request).db, store_id)
    return _json_response({"store_id": store_id, "acked": acked})


@get("/hq/v1/sync/feed")
async def sync_feed(request: Request[Any, Any, Any], after: Annotated[int, Parameter(ge=0)] = 0,
                    wait: Annotated[float, Parameter(ge=0, le=60)] = 0,
                    limit: Annotated[int, Parameter(ge=1, le=1000)] = 200) -> Response[bytes]:
    """The store's feed after `after`; with `wait`, held open until something arrives (long-poll)."""
    store_id = _store(request, b"")
    hq = _hq(request)
    deadline = time.monotonic() + wait
    while True:
        page = await _thread(service.read_feed, hq.db, store_id, after, limit)
        remaining = deadline - time.monotonic()
        if page.entries or remaining <= 0:
            return Response(feed_page_encoder.encode(page), media_type=MSGPACK)
        await hq.signal.wait(min(remaining, 1.0))


@post("/hq/v1/sync/authorize", status_code=200)
async def sync_authorize(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = _store(request, body)
    req = _decode_bytes(body, AuthorizeRequest)
    hq = _hq(request)
    try:
        g = await _thread(service.authorize, hq.db, hq.private_key, store_id, req, now_text())
    finally:
        hq.signal.notify()
    return _json_response(msgspec.to_builtins(g))


@post("/hq/v1/sync/digests", status_code=200)
async def sync_digests(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = _store(request, body)
    report = _decode_bytes(body, DigestReport)
    verdict = await _thread(service.check_digests, _hq(request).db, store_id, report.rows, report.upto, now_text())
    return _json_response(msgspec.to_builtins(verdict))


@post("/hq/v1/sync/stock", status_code=200)
async def sync_stock_report(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = _store(request, body)
    report = _decode_bytes(body, StockReport)
    count = await _thread(transfers.put_stock_report, _hq(request).db, store_id, report)
    return _json_response({"store_id": store_id, "levels": count})


@get("/hq/v1/sync/stock/{sku:str}")
async def sync_stock_lookup(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    """Every store's on-hand of a sku from HQ's snapshot, for a store's cross-store lookup."""
    _store(request, b"")
    return _json_response({"sku": sku, "stores": await _thread(transfers.stock_levels, _hq(request).db, sku)})


# -- the app ---------------------------------------------------------------------------------------------------

def _hq_error(_: Request[Any, Any, Any], exc: HqError) -> Response[bytes]:
    return _json_response({"code": exc.code, "message": exc.message, **exc.extra}, exc.status)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return _json_response({"code": "bad_request" if exc.status_code == 400 else "error", "message": exc.detail},
                          exc.status_code)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json_response({"code": "internal", "message": "internal error; nothing was committed"}, 500)


def create_hq_app(db_url: str, demo: bool = False) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        hq = Hq(db_url, demo)
        hq.signal.bind()
        app.state.hq = hq
        try:
            yield
        finally:
            hq.close()

    return Litestar(
        route_handlers=[healthz, login, set_price, set_prices, create_promotion, member, member_grant, member_reclaim,
                        stores, store_quarantine, store_digests, pair_code, reports, sync_pair, sync_batch, sync_state,
                        sync_feed, sync_authorize, sync_digests, transfer_list, store_stock, sync_stock_report,
                        sync_stock_lookup, create_coupon, coupon_view, sync_coupon_reserve],
        lifespan=[lifespan],
        exception_handlers={HqError: _hq_error, HTTPException: _http_error, Exception: _internal},
        request_max_body_size=64 * 1024 * 1024,
        debug=False,
    )
