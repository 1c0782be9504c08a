"""The Shifts view of the end-of-day page (交接班): the day's shifts with their drawers, and the forms to open a
shift, record a pay-out (支出) or a safe drop (投库) and close a shift with the counted cash.

Every action calls the same edge/eod/shifts.py functions as /api/v1/shifts, with the same roles: a cashier
opens, pays out of and closes his own shift at the till of his login and sees that till's shifts; a manager
works with every till and records safe drops. Each form carries a client UUID, so a double tap books once.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, post

from edge.api.shift_routes import print_shift
from edge.eod import shifts
from edge.eod.shift_models import DropRequest, PayoutRequest, Shift, ShiftCloseRequest, ShiftOpenRequest
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import Replay, request_hash
from edge.stock.ledger import Actor
from edge.ui.pages.eod import MAX_FEN, variance_text, yuan_to_fen
from edge.ui.session import page
from edge.ui.view import UiView

BACK = "/ui/eod#eod-shifts"


def _actor(ui: UiView) -> Actor:
    return Actor(user_id=ui.claims.user_id if ui.claims else "", till_id=ui.claims.till_id if ui.claims else None)


def _amount(form: dict[str, str], name: str) -> int | None:
    value = yuan_to_fen(form.get(name, ""))
    return value if value is not None and value <= MAX_FEN else None


def _shift_id(form: dict[str, str]) -> str | None:
    try:
        return str(uuid.UUID(form.get("shift_id", "").strip()))
    except ValueError:
        return None


@post("/ui/eod/shifts", opt=page("eod.read"))
async def shift_open(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    actor = _actor(ui)
    till = actor.till_id if not ui.may("eod.close") or actor.till_id else form.get("till_id", "").strip()
    if not till:
        return ui.redirect(BACK, error=_("Log in with your PIN at a till to open a shift there."))
    float_text = form.get("opening_float", "").strip()
    opening = _amount(form, "opening_float") if float_text else None
    if float_text and opening is None:
        return ui.redirect(BACK, error=_("Enter the opening float in yuan, 0 or more and with at most two decimals "
                                         "(for example 500)."))
    try:
        req = msgspec.convert({"shift_id": form.get("form_id", ""), "till_id": till, "opening_float": opening},
                              ShiftOpenRequest)
    except msgspec.ValidationError:
        return ui.redirect(BACK, error=_("Enter the till the shift is for."))
    digest, at, default_float = request_hash(req), hub.clock.stamp(), hub.config.till_float
    try:
        result = await hub.db.write(lambda conn: shifts.open_shift(conn, req, digest, default_float, actor, at))
    except ApiError as exc:
        if exc.code == "shift_open":
            return ui.redirect(BACK, error=_("Till %(till)s already has an open shift: close it first.") % {
                "till": till})
        return ui.redirect(BACK, error=ui.problem(exc))
    shift = shifts.decode(result.body if isinstance(result, Replay) else result)
    return ui.redirect(BACK, notice=_("Shift opened at till %(till)s with a float of %(amount)s.") % {
        "till": shift.till_id, "amount": ui.fmt.money(shift.opening_float)})


async def _move(request: Request[Any, Any, Any], hub: Hub, kind: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    shift_id, amount = _shift_id(form), _amount(form, "amount")
    if shift_id is None:
        return ui.redirect(BACK, error=_("Choose the shift, and reload the page if this repeats."))
    if not amount:
        return ui.redirect(BACK, error=_("Enter the amount in yuan, more than 0 and with at most two decimals."))
    reason = form.get("reason", "").strip()
    try:
        req: PayoutRequest | DropRequest
        if kind == "payout":
            req = msgspec.convert({"payout_id": form.get("form_id", ""), "amount": amount, "reason": reason},
                                  PayoutRequest)
        else:
            req = msgspec.convert({"drop_id": form.get("form_id", ""), "amount": amount, "reason": reason},
                                  DropRequest)
    except msgspec.ValidationError:
        return ui.redirect(BACK, error=_("Enter a reason of at most 200 characters."))
    actor, manager, digest, at = _actor(ui), ui.may("eod.close"), request_hash(req), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: shifts.record_move(conn, shift_id, "payout" if kind == "payout" else "drop",
                                                           req, digest, actor, manager or kind == "drop", at))
    except ApiError as exc:
        if exc.code == "drawer_short":
            return ui.redirect(BACK, error=_("The drawer should hold only %(amount)s.") % {
                "amount": ui.fmt.money(int(exc.extra.get("expected", 0)))})
        return ui.redirect(BACK, error=ui.problem(exc))
    text = _("Pay-out of %(amount)s recorded.") if kind == "payout" else _("Safe drop of %(amount)s recorded.")
    return ui.redirect(BACK, notice=text % {"amount": ui.fmt.money(amount)})


@post("/ui/eod/shifts/payouts", opt=page("eod.read"))
async def shift_payout(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    return await _move(request, hub, "payout")


@post("/ui/eod/shifts/drops", opt=page("eod.close"))
async def shift_drop(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    return await _move(request, hub, "drop")


@post("/ui/eod/shifts/close", opt=page("eod.read"))
async def shift_close(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    shift_id, counted = _shift_id(form), _amount(form, "counted")
    if shift_id is None:
        return ui.redirect(BACK, error=_("Choose the shift, and reload the page if this repeats."))
    if counted is None:
        return ui.redirect(BACK, error=_("Enter the counted cash in yuan, 0 or more and with at most two decimals "
                                         "(for example 619.90)."))
    req = ShiftCloseRequest(counted=counted)
    actor, manager, digest, at = _actor(ui), ui.may("eod.close"), request_hash(req), hub.clock.stamp()
    try:
        result = await hub.db.write(lambda conn: shifts.close_shift(conn, shift_id, req, digest, actor, manager, at))
    except ApiError as exc:
        if exc.code == "shift_closed":
            return ui.redirect(BACK, error=_("This shift is already closed."))
        return ui.redirect(BACK, error=ui.problem(exc))
    body = result.body if isinstance(result, Replay) else result
    if not isinstance(result, Replay):
        print_shift(request, hub, body, f"shift/{shift_id}/close")  # on the till's receipt printer
    shift: Shift = shifts.decode(body)
    return ui.redirect(BACK, notice=_("Shift at till %(till)s closed: counted %(counted)s, expected %(expected)s: "
                                      "%(variance)s.") % {
        "till": shift.till_id, "counted": ui.fmt.money(shift.counted),
        "expected": ui.fmt.money(shift.figures.cash.expected), "variance": variance_text(ui, shift.variance or 0)})


ROUTES: list[Any] = [shift_open, shift_payout, shift_drop, shift_close]
