"""Cashier shifts (edge/eod/shifts.py): open, pay-outs, safe drops, close, read, print; and printing a Z.

Roles: a cashier (eod.read) opens a shift at the till of his login, records pay-outs in his own shift,
closes it and reads his till's shifts; a manager (eod.close) does all of it for any till and records
safe drops. A sales guide has neither permission.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.support import actor_of, claims_of, decode_body, may, raw_json
from edge.auth.tokens import Claims
from edge.device_link.link import print_document
from edge.eod import printouts, service, shifts
from edge.eod.days import parse_day
from edge.eod.models import ZReport
from edge.eod.shift_models import DropRequest, PayoutRequest, ShiftCloseRequest, ShiftOpenRequest
from edge.errors import ApiError
from edge.hub import Hub
from edge.lazy_import import LazyDecoder
from edge.sales.checkout import Replay, request_hash

TillQuery = Annotated[str | None, Parameter(min_length=1, max_length=64)]
DayQuery = Annotated[str | None, Parameter(max_length=10)]
ShiftId = uuid.UUID


class PrintRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    till_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class Printed(msgspec.Struct, frozen=True):
    printed: bool  # False: the till has no receipt printer, or devices are off on this hub
    till_id: str
    lines: list[str]


_z_decoder = LazyDecoder(lambda: msgspec.json.Decoder(ZReport))  # built on first use


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _manager(request: Request[Any, Any, Any]) -> bool:
    return may(request, "eod.close")


def _own_till(request: Request[Any, Any, Any]) -> str | None:
    """None for a manager (every till); a cashier's login till (he sees only that one)."""
    if _manager(request):
        return None
    own = claims_of(request).till_id
    if own is None:
        raise ApiError(403, "till_required", "log in at a till to work with its shifts")
    return own


def _store_name(hub: Hub) -> str:
    return hub.config.store_name or f"Backroom {hub.store_id}"


def _display_name(hub: Hub, user_id: str) -> str:
    row = hub.db.reader().execute("SELECT display_name FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return str(row[0]) if row is not None else ""


def print_shift(request: Request[Any, Any, Any], hub: Hub, body: bytes, key: str) -> Printed:
    shift = shifts.decode(body)
    lines = printouts.shift_lines(shift, _store_name(hub), _display_name(hub, shift.user_id))
    return Printed(print_document(request.app.state, shift.till_id, key, lines, f"shift {shift.shift_id}"),
                   shift.till_id, lines)


def print_z(request: Request[Any, Any, Any], hub: Hub, body: bytes, till_id: str | None, key: str) -> Printed:
    """Print a Z closing on `till_id`'s printer (else the caller's till, else the hub's "*" pairing)."""
    z = _z_decoder.decode(body)
    claims = request.scope.get("user")  # an API token's or a tablet session's claims
    till = till_id or (claims.till_id if isinstance(claims, Claims) else None) or "*"
    lines = printouts.z_lines(z, _store_name(hub), _display_name(hub, z.closed_by))
    return Printed(print_document(request.app.state, till, key, lines, f"Z{z.z_no}"), till, lines)


@post("/api/v1/shifts", opt=_perm("eod.read"), operation_class=body_operation(ShiftOpenRequest))
async def open_shift(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, ShiftOpenRequest)
    actor = actor_of(request, req.till_id)  # a PIN login opens only at its own till
    digest, at, default_float = request_hash(req), hub.clock.stamp(), hub.config.till_float
    result = await hub.db.write(lambda conn: shifts.open_shift(conn, req, digest, default_float, actor, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@get("/api/v1/shifts", opt=_perm("eod.read"), sync_to_thread=True)
def list_shifts(request: Request[Any, Any, Any], hub: Hub, day: DayQuery = None, till_id: TillQuery = None,
                status: Literal["open", "closed"] | None = None,
                limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
                offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0) -> Response[bytes]:
    own = _own_till(request)
    if own is not None and till_id is not None and till_id != own:
        raise ApiError(403, "till_mismatch", f"logged in at till {own}, not {till_id[:64]}")
    the_day = parse_day(day).isoformat() if day is not None else None
    at = hub.clock.stamp()
    page = service.read(hub.db.reader(), lambda conn: shifts.listing(
        conn, at, day=the_day, till_id=own or till_id, status=status, limit=limit, offset=offset))
    return raw_json(shifts.encoder.encode(page))


@get("/api/v1/shifts/{shift_id:uuid}", opt=_perm("eod.read"), sync_to_thread=True)
def get_shift(request: Request[Any, Any, Any], hub: Hub, shift_id: ShiftId) -> Response[bytes]:
    own, at = _own_till(request), hub.clock.stamp()
    shift = service.read(hub.db.reader(), lambda conn: shifts.get(conn, str(shift_id), at, own))
    return raw_json(shifts.encoder.encode(shift))


@post("/api/v1/shifts/{shift_id:uuid}/payouts", opt=_perm("eod.read"), operation_class=body_operation(PayoutRequest))
async def record_payout(request: Request[Any, Any, Any], hub: Hub, shift_id: ShiftId) -> Response[bytes]:
    req = await decode_body(request, PayoutRequest)
    actor, manager, digest, at = actor_of(request), _manager(request), request_hash(req), hub.clock.stamp()
    result = await hub.db.write(lambda conn: shifts.record_move(conn, str(shift_id), "payout", req, digest, actor,
                                                                manager, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@post("/api/v1/shifts/{shift_id:uuid}/drops", opt=_perm("eod.close"), operation_class=body_operation(DropRequest))
async def record_drop(request: Request[Any, Any, Any], hub: Hub, shift_id: ShiftId) -> Response[bytes]:
    req = await decode_body(request, DropRequest)
    actor, digest, at = actor_of(request), request_hash(req), hub.clock.stamp()
    result = await hub.db.write(lambda conn: shifts.record_move(conn, str(shift_id), "drop", req, digest, actor,
                                                                True, at))
    return raw_json(result.body if isinstance(result, Replay) else result, 201)


@post("/api/v1/shifts/{shift_id:uuid}/close", opt=_perm("eod.read"), status_code=200,
      operation_class=body_operation(ShiftCloseRequest))
async def close_shift(request: Request[Any, Any, Any], hub: Hub, shift_id: ShiftId) -> Response[bytes]:
    """Close with the counted cash; the report prints on the till's printer (not again on a retry)."""
    req = await decode_body(request, ShiftCloseRequest)
    actor, manager, digest, at = actor_of(request), _manager(request), request_hash(req), hub.clock.stamp()
    result = await hub.db.write(lambda conn: shifts.close_shift(conn, str(shift_id), req, digest, actor, manager,
                                                                at))
    if isinstance(result, Replay):
        return raw_json(result.body, 200)
    print_shift(request, hub, result, f"shift/{shift_id}/close")
    return raw_json(result, 200)


@post("/api/v1/shifts/{shift_id:uuid}/print", opt=_perm("eod.read"), status_code=200)
async def reprint_shift(request: Request[Any, Any, Any], hub: Hub, shift_id: ShiftId) -> Response[bytes]:
    """Print a shift's report (again) on its till's printer: the frozen report, or an open shift so far."""
    own, at = _own_till(request), hub.clock.stamp()
    shift = service.read(hub.db.reader(), lambda conn: shifts.get(conn, str(shift_id), at, own))
    printed = print_shift(request, hub, shifts.encoder.encode(shift), f"shift/{shift_id}/print/{uuid.uuid4()}")
    return raw_json(shifts.encoder.encode(printed))


@post("/api/v1/eod/z/{z_no:int}/print", opt=_perm("eod.close"), status_code=200,
      operation_class=body_operation(PrintRequest))
async def reprint_z(request: Request[Any, Any, Any], hub: Hub,
                    z_no: Annotated[int, Parameter(ge=1, le=1_000_000_000)]) -> Response[bytes]:
    raw = await request.body()
    req = await decode_body(request, PrintRequest) if raw.strip() else PrintRequest()
    body = service.z_body(hub.db.reader(), z_no)
    if body is None:
        raise ApiError(404, "unknown_z_report", f"no Z report {z_no}")
    printed = print_z(request, hub, body, req.till_id, f"z/{z_no}/print/{uuid.uuid4()}")
    return raw_json(shifts.encoder.encode(printed))


SHIFT_ROUTES = [open_shift, list_shifts, get_shift, record_payout, record_drop, close_shift, reprint_shift, reprint_z]
