"""End of day (edge/eod): X report, opening floats, cash counts, Z reports, reconciliation anomalies.

A caller without eod.close (a cashier) sees and counts only the till in his token.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.shift_routes import print_z
from edge.api.support import actor_of, claims_of, decode_body, may, raw_json
from edge.eod import service
from edge.eod.days import parse_day
from edge.eod.models import CashCountRequest, TillFloatRequest, ZCloseRequest
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import Replay, request_hash

TillQuery = Annotated[str | None, Parameter(min_length=1, max_length=64)]
DayQuery = Annotated[str | None, Parameter(max_length=10)]


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _day(hub: Hub, day: str | None) -> str:
    return parse_day(day).isoformat() if day is not None else hub.clock.today()


def _own_till(request: Request[Any, Any, Any], till_id: str | None) -> str | None:
    """The till a caller may see: any for a manager; for a cashier his token's till, and only that."""
    if may(request, "eod.close"):
        return till_id
    own = claims_of(request).till_id
    if own is None:
        raise ApiError(403, "till_required", "log in at a till to see its end of day")
    if till_id is not None and till_id != own:
        raise ApiError(403, "till_mismatch", f"logged in at till {own}, not {till_id[:64]}")
    return own


@get("/api/v1/eod/x", opt=_perm("eod.read"), sync_to_thread=True)
def x_report(request: Request[Any, Any, Any], hub: Hub, day: DayQuery = None,
             till_id: TillQuery = None) -> Response[bytes]:
    till = _own_till(request, till_id)
    the_day, settings, at = _day(hub, day), service.Settings.of(hub.config), hub.clock.stamp()
    x = service.read(hub.db.reader(), lambda conn: service.x_report(conn, the_day, at, settings, till))
    return raw_json(service.encoder.encode(x))


@post("/api/v1/eod/floats", opt=_perm("eod.close"), status_code=200, operation_class=body_operation(TillFloatRequest))
async def set_float(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, TillFloatRequest)
    day, today, actor, at = _day(hub, req.day), hub.clock.today(), actor_of(request), hub.clock.stamp()
    result = await hub.db.write(lambda conn: service.set_float(conn, day, today, req.till_id, req.amount, actor, at))
    return raw_json(service.encoder.encode(result))


@post("/api/v1/eod/cash-counts", opt=_perm("eod.read"), operation_class=body_operation(CashCountRequest))
async def count_cash(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, CashCountRequest)
    _own_till(request, req.till_id)
    day, today, at, settings = _day(hub, req.day), hub.clock.today(), hub.clock.stamp(), service.Settings.of(hub.config)
    digest, actor = request_hash(req), actor_of(request)
    result = await hub.db.write(lambda conn: service.count_cash(conn, req, digest, day, today, actor, at, settings))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@post("/api/v1/eod/z", opt=_perm("eod.close"), operation_class=body_operation(ZCloseRequest))
async def close_day(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    body = await request.body()
    req = await decode_body(request, ZCloseRequest) if body.strip() else ZCloseRequest()
    day, today, actor, at, settings = _day(hub, req.day), hub.clock.today(), actor_of(request), hub.clock.stamp(), \
        service.Settings.of(hub.config)
    result = await hub.db.write(lambda conn: service.close_day(conn, day, today, actor, at, settings))
    print_z(request, hub, result, req.till_id, f"z/{day}/close")  # on the till's receipt printer
    return raw_json(result, 201)


@get("/api/v1/eod/z", opt=_perm("reports.read"), sync_to_thread=False)
def z_list(hub: Hub, limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
           offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0) -> Response[bytes]:
    page = service.read(hub.db.reader(), lambda conn: service.z_list(conn, limit, offset))
    return raw_json(service.encoder.encode(page))


@get("/api/v1/eod/z/{z_no:int}", opt=_perm("reports.read"), sync_to_thread=False)
def z_get(hub: Hub, z_no: Annotated[int, Parameter(ge=1, le=2**62)]) -> Response[bytes]:
    body = service.z_body(hub.db.reader(), z_no)
    if body is None:
        raise ApiError(404, "unknown_z_report", f"no Z report {z_no}")
    return raw_json(body)


@get("/api/v1/eod/anomalies", opt=_perm("reports.read"), sync_to_thread=True)
def anomaly_list(hub: Hub, day: DayQuery = None) -> Response[bytes]:
    the_day, settings, at = _day(hub, day), service.Settings.of(hub.config), hub.clock.stamp()
    found = service.read(hub.db.reader(), lambda conn: service.anomaly_report(conn, the_day, at, settings))
    return raw_json(service.encoder.encode(found))


EOD_ROUTES = [x_report, set_float, count_cash, close_day, z_list, z_get, anomaly_list]
