"""The admin API (`/hq/v1/...`, bearer tokens from `POST /hq/v1/auth/login`): prices, promotions,
coupons, members and escrow, stores, reports, transfers."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, patch, post, put
from litestar.params import Parameter

from edge.promotions.rules import Promotion
from hq_sync.server.api.openapi import with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response
from hq_sync.server.service import auth, catalog, coupons, digests, members, merges, pii, reports, stores, transfers
from hq_sync.server.service.errors import HqError, now_text
from hq_sync.wire import b64

log = logging.getLogger(__name__)
MAX_PRICE = 10**10  # fen: ¥100,000,000 — anything above is a typo, not a price
MAX_AMOUNT = 10**12


# -- health and admin ------------------------------------------------------------------------------------

@get("/healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[bytes]:
    hq = hq_of(request)
    return json_response({"status": "ok", "role": "hq", "db": hq.db.dialect, "demo": hq.demo,
                          "public_key": b64(hq.public_key)})


class Login(msgspec.Struct, frozen=True):
    username: str
    password: str


@post("/hq/v1/auth/login", status_code=200, operation_class=with_body(Login))
async def login(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = await decode(request, Login)
    token, role, expires = await in_thread(auth.login, hq_of(request).db, req.username, req.password)
    return json_response({"token": token, "role": role,
                          "expires_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires))})


Fen = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE)]
StoreId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Targets = Annotated[list[StoreId], msgspec.Meta(max_length=10_000)]


class PriceIn(msgspec.Struct, frozen=True):
    price: Fen
    stores: Targets | None = None
    effective_at: str | None = None
    regions: Annotated[list[StoreId], msgspec.Meta(max_length=1000)] | None = None


class PricesIn(msgspec.Struct, frozen=True):
    prices: list[tuple[Sku, Fen]]
    stores: Targets | None = None
    effective_at: str | None = None
    regions: Annotated[list[StoreId], msgspec.Meta(max_length=1000)] | None = None


@put("/hq/v1/prices/{sku:str}", operation_class=with_body(PriceIn))
async def set_price(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    who = acting(request, "prices.write")
    req = await decode(request, PriceIn)
    hq = hq_of(request)
    seqs = await in_thread(catalog.set_prices, hq.db, who, hq.private_key, [(sku, req.price)], req.stores,
                           req.effective_at, now_text(), req.regions)
    hq.signal.notify()
    targets = await in_thread(catalog.feed_targets, hq.db, seqs)  # a region manager's: his stores, named or not
    return json_response({"sku": sku, "price": req.price, "stores": targets, "feed_seqs": seqs})


@post("/hq/v1/prices", status_code=200, operation_class=with_body(PricesIn))
async def set_prices(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Many prices at once (`{"prices": [[sku, price], ...]}`): how a chain-wide price change goes out."""
    who = acting(request, "prices.write")
    req = await decode(request, PricesIn)
    hq = hq_of(request)
    seqs = await in_thread(catalog.set_prices, hq.db, who, hq.private_key, req.prices, req.stores, req.effective_at,
                           now_text(), req.regions)
    hq.signal.notify()
    return json_response({"count": len(req.prices), "feed_seqs": seqs})


@post("/hq/v1/promotions", operation_class=with_body(Promotion))
async def create_promotion(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "promotions.write")
    hq = hq_of(request)
    out = await in_thread(catalog.put_promotion, hq.db, who, hq.private_key, await request.body(), now_text())
    hq.signal.notify()
    return json_response(out, 201)


@post("/hq/v1/coupons", operation_class=with_body(coupons.CouponIn))
async def create_coupon(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "coupons.write")
    hq = hq_of(request)
    coupon = await decode(request, coupons.CouponIn)
    out = await in_thread(coupons.create, hq.db, who, hq.private_key, coupon, now_text())
    hq.signal.notify()
    return json_response(out, 201)


@get("/hq/v1/coupons/{code:str}")
async def coupon_view(request: Request[Any, Any, Any], code: str) -> Response[bytes]:
    who = acting(request, "coupons.read")
    return json_response(await in_thread(coupons.view, hq_of(request).db, who, code))



@get("/hq/v1/members/{member_id:str}")
async def member(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    who = acting(request, "members.read")
    return json_response(await in_thread(members.member_view, hq_of(request).db, who, member_id))


@patch("/hq/v1/members/{member_id:str}", status_code=200, operation_class=with_body(members.MemberPatch))
async def member_edit(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Change a member's name, birthday, tier, tags, phone or card; every store gets it through the feed."""
    who = acting(request, "members.write")
    req = await decode(request, members.MemberPatch)
    hq = hq_of(request)
    out = await in_thread(members.edit_member, hq.db, who, hq.private_key, member_id, req, now_text())
    hq.signal.notify()
    return json_response(out)


class MergeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    member_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


@post("/hq/v1/members/{member_id:str}/merge", status_code=200, operation_class=with_body(MergeIn))
async def member_merge(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Merge `{"member_id": loser}` into this member (as a detected duplicate is merged)."""
    who = acting(request, "members.write")
    req = await decode(request, MergeIn)
    hq = hq_of(request)
    out = await in_thread(merges.merge_by_hand, hq.db, who, hq.private_key, member_id, req.member_id, now_text())
    hq.signal.notify()
    return json_response(out)


@get("/hq/v1/members/audit")
async def member_audit(
    request: Request[Any, Any, Any],
    member_id: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
) -> Response[bytes]:
    """Reads of members' unmasked personal data at HQ, exports and erasures, newest first."""
    acting(request, "audit.read")
    return json_response(await in_thread(pii.audit_page, hq_of(request).db, member_id, limit, offset))


@get("/hq/v1/members/{member_id:str}/export")
async def member_export(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Everything HQ holds about the member, as JSON (audited)."""
    who = acting(request, "members.privacy")
    return json_response(await in_thread(pii.export, hq_of(request).db, member_id[:64], who.username, now_text()))


@post("/hq/v1/members/{member_id:str}/erase", status_code=200)
async def member_erase(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Erase the member's phone, name, birthday, card and tags at HQ and, through the feed, at every
    store. Ledgers and sales stay under the member id."""
    who = acting(request, "members.privacy")
    hq = hq_of(request)
    result = await in_thread(pii.erase, hq.db, hq.private_key, member_id[:64], who, now_text())
    hq.signal.notify()
    return json_response(result)


class GrantIn(msgspec.Struct, frozen=True):
    store_id: StoreId
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)]
    ledger: str = "value"


@post("/hq/v1/members/{member_id:str}/escrow", operation_class=with_body(GrantIn))
async def member_grant(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """Set aside part of a member's balance for a store to spend offline."""
    who = acting(request, "members.escrow")
    req = await decode(request, GrantIn)
    if req.ledger not in ("value", "points"):
        raise HqError(422, "bad_ledger", "ledger is value or points")
    hq = hq_of(request)
    g = await in_thread(members.grant, hq.db, who, hq.private_key, member_id, req.store_id, req.ledger, req.amount,
                        now_text())
    hq.signal.notify()
    return json_response(msgspec.to_builtins(g), 201)


class ReclaimIn(msgspec.Struct, frozen=True):
    ledger: Literal["value", "points"] = "value"
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_AMOUNT)] | None = None


@post("/hq/v1/members/{member_id:str}/reclaim", status_code=200, operation_class=with_body(ReclaimIn))
async def member_reclaim(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    who = acting(request, "members.reclaim")
    req = await decode(request, ReclaimIn)
    hq = hq_of(request)
    asked = await in_thread(members.reclaim, hq.db, who, hq.private_key, member_id, req.ledger, req.amount, now_text())
    hq.signal.notify()
    return json_response({"member_id": member_id, "asked": asked})


@get("/hq/v1/stores")
async def store_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "stores.read")
    return json_response({"stores": await in_thread(stores.list_stores, hq_of(request).db, who)})


@get("/hq/v1/stores/{store_id:str}/quarantine")
async def store_quarantine(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    who = acting(request, "stores.read")
    return json_response({"store_id": store_id, "deltas": await in_thread(stores.quarantine, hq_of(request).db, who,
                                                                          store_id)})


@get("/hq/v1/stores/{store_id:str}/digests")
async def store_digests(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    who = acting(request, "stores.read")
    return json_response({"store_id": store_id, "days": await in_thread(digests.digest_checks, hq_of(request).db, who,
                                                                        store_id)})


@post("/hq/v1/stores/{store_id:str}/pair-code")
async def pair_code(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    who = acting(request, "stores.pair")
    code = await in_thread(stores.make_pair_code, hq_of(request).db, who, store_id)
    return json_response({"store_id": store_id, "code": code}, 201)


@put("/hq/v1/stores/{store_id:str}/profile", operation_class=with_body(stores.StoreProfile))
async def store_profile(request: Request[Any, Any, Any], store_id: str) -> Response[bytes]:
    """Name, region, timezone, address; fields left out stay as they are."""
    who = acting(request, "stores.manage")
    req = await decode(request, stores.StoreProfile)
    return json_response(await in_thread(stores.update_profile, hq_of(request).db, who, store_id, req, now_text()))


class ResolveIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


@post("/hq/v1/stores/{store_id:str}/quarantine/{seq:int}/resolve", status_code=200,
      operation_class=with_body(ResolveIn))
async def quarantine_resolve(request: Request[Any, Any, Any], store_id: str,
                             seq: Annotated[int, Parameter(ge=1, le=2**62)]) -> Response[bytes]:
    who = acting(request, "stores.manage")
    req = await decode(request, ResolveIn)
    return json_response(await in_thread(stores.resolve_quarantined, hq_of(request).db, who, store_id, seq,
                                         req.note.strip(), now_text()))


@get("/hq/v1/reports/{by:str}")
async def report_rows(request: Request[Any, Any, Any], by: str) -> Response[bytes]:
    who = acting(request, "reports.read")
    return json_response({"report": by, "rows": await in_thread(reports.report, hq_of(request).db, who, by)})


@get("/hq/v1/transfers")
async def transfer_list(request: Request[Any, Any, Any],
                        in_state: Annotated[str | None, Parameter(query="state")] = None) -> Response[bytes]:
    who = acting(request, "transfers.read")
    return json_response({"transfers": await in_thread(transfers.list_transfers, hq_of(request).db, who, in_state)})


@get("/hq/v1/stores/{store_id:str}/stock/{sku:str}")
async def store_stock(request: Request[Any, Any, Any], store_id: str, sku: str) -> Response[bytes]:
    who = acting(request, "stock.read")
    return json_response(await in_thread(transfers.store_stock, hq_of(request).db, who, store_id, sku))




ROUTES = [
    healthz, login, set_price, set_prices, create_promotion, create_coupon, coupon_view, member, member_edit,
    member_merge, member_audit, member_export, member_erase, member_grant,
    member_reclaim, store_list, store_quarantine, store_digests, pair_code, report_rows, transfer_list,
    store_stock, store_profile, quarantine_resolve,
]
