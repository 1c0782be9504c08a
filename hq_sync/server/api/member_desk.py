"""The members desk over the API (the console's Members page uses the same service functions):
search (`GET /hq/v1/members?q=`), a member's chain-wide overview with history across stores
(`GET /hq/v1/members/{id}/overview`) and manual adjustments (`POST /hq/v1/members/{id}/adjustments`).
Masking, the record of unmasked views, region scope and the adjustment rules live in
service/member_desk.py."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter

from hq_sync.server.api.openapi import with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response
from hq_sync.server.service import member_desk
from hq_sync.server.service.errors import now_text


@get("/hq/v1/members")
async def member_search(request: Request[Any, Any, Any],
                        q: Annotated[str, Parameter(max_length=64)] = "",
                        limit: Annotated[int, Parameter(ge=1, le=member_desk.SEARCH_LIMIT)] =
                        member_desk.SEARCH_LIMIT) -> Response[bytes]:
    who = acting(request, "members.read")
    found = await in_thread(member_desk.search, hq_of(request).db, who, q, now_text(), limit, "api")
    return json_response({"members": found})


@get("/hq/v1/members/{member_id:str}/overview")
async def member_overview(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    who = acting(request, "members.read")
    view = await in_thread(member_desk.detail, hq_of(request).db, who, member_id[:64], now_text(),
                           member_desk.HISTORY_LIMIT, "api")
    return json_response(view)


class AdjustmentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    adjustment_id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    ledger: str
    delta: Annotated[int, msgspec.Meta(ge=-member_desk.MAX_ADJUST, le=member_desk.MAX_ADJUST)]
    reason: Annotated[str, msgspec.Meta(max_length=member_desk.MAX_REASON)]


@post("/hq/v1/members/{member_id:str}/adjustments", operation_class=with_body(AdjustmentIn))
async def member_adjustment(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    """`{"adjustment_id", "ledger": "value"|"points", "delta", "reason"}` → 201 (200 when the same id
    was booked already); 409 `escrow_held` beyond what no store holds, `insufficient_*` beyond the balance."""
    who = acting(request, "members.write")
    req = await decode(request, AdjustmentIn)
    adj = member_desk.Adjustment(req.adjustment_id, req.ledger, req.delta, req.reason)
    done = await in_thread(member_desk.adjust, hq_of(request).db, who, member_id[:64], adj, now_text())
    return json_response(done, 200 if done["repeated"] else 201)


ROUTES = [member_search, member_overview, member_adjustment]
