"""The admin API (`/hq/v1/...`, bearer tokens from `POST /hq/v1/auth/login`): prices, promotions,
coupons, members and escrow, stores, reports, transfers."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import Parameter

from hq_sync.server.api.support import decode, hq_of, in_thread, json_response, require_admin
from hq_sync.server.service import auth, catalog, coupons, digests, members, reports, stores, transfers
from hq_sync.server.service.errors import HqError, now_text
from hq_sync.wire import b64

log = logging.getLogger(__name__)


# -- health and admin ------------------------------------------------------------------------------------

@get("/healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[bytes]:
    hq = hq_of(request)
    return json_response({"status": "ok", "role": "hq", "db": hq.db.dialect, "demo": hq.demo,
                          "public_key": b64(hq.public_key)})


class Login(msgspec.Struct, frozen=True):
    username: str
    password: str


@post("/hq/v1/auth/login", status_code=200)
async def login(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = await decode(request, Login)
    token, role, expires = await in_thread(auth.login, hq_of(request).db, req.username, req.password)
    return json_response({"token": token, "role": role,
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
    require_admin(request)
    req = await decode(request, PriceIn)
    hq = hq_of(request)
    seqs = await in_thread(catalog.set_prices, hq.db, hq.private_key, [(sku, req.price)], req.stores, req.effective_at,
                           now_text())
    hq.signal.notify()
    return json_response({"sku": sku, "price": req.price, "stores": req.stores or ["*"], "feed_seqs": seqs})


@post("/hq/v1/prices", status_code=200)
async def set_prices(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Many prices at once (`{"prices": [[sku, price], ...]}`): how a chain-wide price change goes out."""
    require_admin(request)
    req = await decode(request, PricesIn)
    hq = hq_of(request)
    seqs = await in_thread(catalog.set_prices, hq.db, hq.private_key, req.prices, req.stores, req.effective_at,
                           now_text())
    hq.signal.notify()
    return json_response({"count": len(req.prices), "feed_seqs": seqs})


@post("/hq/v1/promotions")
async def create_promotion(request: Request[Any, Any, Any]) -> Response[bytes]:
    require_admin(request)
    hq = hq_of(request)
    out = await in_thread(catalog.put_promotion, hq.db, hq.private_key, await request.body(), now_text())
    hq.signal.notify()
    return json_response(out, 201)


@post("/hq/v1/coupons")
async def create_coupon(request: Request[Any, Any, Any]) -> Response[bytes]:
    require_admin(request)
    hq = hq_of(request)
    coupon = await decode(request, coupons.CouponIn)
    out = await in_thread(coupons.create, hq.db, hq.private_key, coupon, now_text())
    hq.signal.notify()
    return json_response(out, 201)


@get("/hq/v1/coupons/{code:str}")
async def coupon_view(request: Request[Any, Any, Any], code: str) -> Response[bytes]:
    require_admin(request)
    return json_response(await in_thread(coupons.view, hq_of(request).db, code))



@get("/hq/v1/members/{member_id:str}")
async def member(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    require_admin(request)
    return json_response(await in_thread(members.member_view, hq_of(request).db, member_id))


class GrantIn(msgspec.Struct, frozen=True):
    store_id: str
    amount: int
    ledger: str = "value"


@post("/hq/v1/members/{member_id:str}/escrow")
async def member_grant(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Set aside part of a member's balance for a store to spend offline."""
    require_admin(request)
    req = await decode(request, GrantIn)
    if req.ledger not in ("value", "points"):
        raise HqError(422, "bad_ledger", "ledger is value or points")
    hq = hq_of(request)
    g = await in_thread(members.grant, hq.db, hq.private_key, member_id, req.store_id, req.ledger, req.amount,
                        now_text())
    hq.signal.notify()
    return json_response(msgspec.to_builtins(g), 201)


class ReclaimIn(msgspec.Struct, frozen=True):
    ledger: str = "value"
    amount: int | None = None


@post("/hq/v1/members/{member_id:str}/reclaim", status_code=200)
async def member_reclaim(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    require_admin(request)
    req = await decode(request, ReclaimIn)
    hq = hq_of(request)
    asked = await in_thread(members.reclaim, hq.db, hq.private_key, member_id, req.ledger, req.amount, now_text())
    hq.signal.notify()
    return json_response({"member_id": member_id, "asked": asked})


@get("/hq/v1/stores")
async def store_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    require_admin(request)
    return json_response({"stores": await in_thread(stores.list_stores, hq_of(request).db)})


@get("/hq/v1/stores/{store_id:str}/quarantine")
async def store_quarantine(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    require_admin(request)
    return json_response({"store_id": store_id, "deltas": await in_thread(stores.quarantine, hq_of(request).db,
                                                                          store_id)})


@get("/hq/v1/stores/{store_id:str}/digests")
async def store_digests(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    require_admin(request)
    return json_response({"store_id": store_id, "days": await in_thread(digests.digest_checks, hq_of(request).db,
                                                                        store_id)})


@post("/hq/v1/stores/{store_id:str}/pair-code")
async def pair_code(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    require_admin(request)
    code = await in_thread(stores.make_pair_code, hq_of(request).db, store_id)
    return json_response({"store_id": store_id, "code": code}, 201)


@get("/hq/v1/reports/{by:str}")
async def report_rows(request: Request[Any, Any, Any], by: str) -> Response[bytes]:
    require_admin(request)
    return json_response({"report": by, "rows": await in_thread(reports.report, hq_of(request).db, by)})


@get("/hq/v1/transfers")
async def transfer_list(request: Request[Any, Any, Any],
                        in_state: Annotated[str | None, Parameter(query="state")] = None) -> Response[bytes]:
    require_admin(request)
    return json_response({"transfers": await in_thread(transfers.list_transfers, hq_of(request).db, in_state)})


@get("/hq/v1/stores/{store_id:str}/stock/{sku:str}")
async def store_stock(request: Request[Any, Any, Any], store_id: str, sku: str) -> Response[bytes]:
    require_admin(request)
    return json_response(await in_thread(transfers.store_stock, hq_of(request).db, store_id, sku))




ROUTES = [
    healthz, login, set_price, set_prices, create_promotion, create_coupon, coupon_view, member, member_grant,
    member_reclaim, store_list, store_quarantine, store_digests, pair_code, report_rows, transfer_list,
    store_stock,
]
