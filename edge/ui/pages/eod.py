"""The end-of-day page (交班 / 日结): the day's X report for the store and per till, cash counts,
opening floats, reconciliation anomalies, closing the day with a Z report, and the Z history.

Every action calls the same edge/eod service functions as /api/v1/eod. A cashier (eod.read without
eod.close) sees and counts only the till his login is bound to, and never the store totals. A cash
count carries a client UUID drawn into its form, so a double tap books one count.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter

from edge.api.shift_routes import print_z
from edge.eod import service
from edge.eod.days import parse_day
from edge.eod.models import (
    DENOMINATIONS,
    TENDER_METHODS,
    AfterClose,
    Anomaly,
    AnomalyReport,
    CashCount,
    CashCountRequest,
    Figures,
    TillFloatRequest,
    XReport,
    ZList,
    ZReport,
)
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import Replay, request_hash
from edge.stock.ledger import Actor
from edge.ui.nav import N_
from edge.ui.pages import shift_view
from edge.ui.session import page
from edge.ui.view import UiView, page_offset

Z_PAGE_SIZE = 20
MAX_FEN = 100_000_000  # as the eod models allow
MAX_PIECES = 100_000
# The notes and coins a drawer is counted in (fen), largest first: ¥100 … ¥0.1.
COUNT_FACES = (10000, 5000, 2000, 1000, 500, 100, 50, 10)
assert set(COUNT_FACES) <= set(DENOMINATIONS)

METHODS = {
    "cash": N_("Cash"),
    "card": N_("Bank card"),
    "alipay": N_("Alipay"),
    "wechat": N_("WeChat Pay"),
    "unionpay": N_("UnionPay"),
    "stored_value": N_("Stored value card"),
    "points": N_("Points"),
    "exchange": N_("Exchange credit"),
}
SEVERITIES = {"critical": N_("Critical"), "warning": N_("Warning"), "info": N_("Info")}
KINDS = {
    "cash_variance": N_("Cash over or short"),
    "missing_reference": N_("Payment without a reference"),
    "duplicate_reference": N_("Payment reference used twice"),
    "refund_method_mismatch": N_("Refund to another payment method"),
    "drawer_negative": N_("Drawer below zero"),
    "change_without_cash": N_("Change without cash"),
    "missing_cash_count": N_("Cash not counted"),
    "shift_variance": N_("Shift over or short"),
    "outside_shift": N_("Sales outside a shift"),
}

_YUAN = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$")


def yuan_to_fen(text: str) -> int | None:
    """'619.9' -> 61990; None for anything that is not a plain non-negative amount with at most two
    decimals (signs, exponents, grouping, words). Exact: Decimal, never float."""
    cleaned = text.strip().removeprefix("¥").strip()
    return int(Decimal(cleaned) * 100) if _YUAN.match(cleaned) else None


def _back(day: str) -> str:
    return f"/ui/eod?day={day}"


def _own_till(ui: UiView) -> str | None:
    """None for a manager (every till); a cashier's login till. Raises for a cashier without one."""
    if ui.may("eod.close"):
        return None
    till = ui.claims.till_id if ui.claims else None
    if till is None:
        raise ApiError(403, "till_required", "log in at a till to see its end of day")
    return till


def _user_names(hub: Hub, user_ids: set[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    marks = ", ".join("?" * len(user_ids))
    rows = hub.db.reader().execute(
        f"SELECT user_id, coalesce(nullif(display_name, ''), username) FROM users WHERE user_id IN ({marks})",
        sorted(user_ids))
    return {r[0]: r[1] for r in rows}


# -- words for figures ---------------------------------------------------------------------------------------

def variance_text(ui: UiView, variance: int) -> str:
    """Over, short or exact, in words (the colour of the tag only repeats it)."""
    if variance < 0:
        return ui._("Short by %(amount)s") % {"amount": ui.fmt.money(-variance)}
    if variance > 0:
        return ui._("Over by %(amount)s") % {"amount": ui.fmt.money(variance)}
    return ui._("Exact")


def anomaly_text(ui: UiView, a: Anomaly) -> str:
    """The anomaly told from its kind and fields, in the reader's language."""
    _ = ui._
    values = {"till": a.till_id or "—", "amount": ui.fmt.money(abs(a.amount) if a.amount is not None else None),
              "n": len(a.refs)}
    if a.kind == "cash_variance":
        text = _("Till %(till)s: cash short by %(amount)s.") if (a.amount or 0) < 0 \
            else _("Till %(till)s: cash over by %(amount)s.")
    elif a.kind == "missing_reference":
        text = _("Till %(till)s: a payment of %(amount)s by card or wallet has no payment reference.")
    elif a.kind == "duplicate_reference":
        text = _("One payment reference is on %(n)s sales; check that the money came in once per sale.")
    elif a.kind == "refund_method_mismatch":
        text = _("Till %(till)s: %(amount)s refunded to a payment method that did not pay for the sale.")
    elif a.kind == "drawer_negative":
        values["amount"] = ui.fmt.money(a.amount)
        text = _("Till %(till)s: cash refunds took the drawer to %(amount)s, more than the float and the cash taken.")
    elif a.kind == "change_without_cash":
        text = _("Till %(till)s: %(amount)s change given without that much cash tendered.")
    elif a.kind == "missing_cash_count":
        text = _("Till %(till)s sold on this day but its cash has not been counted (expected %(amount)s).")
    elif a.kind == "shift_variance":
        text = _("Till %(till)s: a shift closed short by %(amount)s.") if (a.amount or 0) < 0 \
            else _("Till %(till)s: a shift closed over by %(amount)s.")
    elif a.kind == "outside_shift":
        text = _("Till %(till)s: %(n)s sales (%(amount)s) were made while no shift was open there; they are in no "
                 "shift report.")
    else:
        return a.message
    return text % values


def _columns(x: XReport, own_till: str | None, ui: UiView) -> list[tuple[str, Figures]]:
    """(heading, figures) columns of the figure tables: the store first (managers), then each till."""
    _ = ui._
    cols: list[tuple[str, Figures]] = []
    if own_till is None and x.store is not None:
        cols.append((_("Store"), x.store))
    for t in x.tills:
        cols.append((_("Till %(till)s") % {"till": t.till_id} if t.till_id else _("Office (no till)"), t))
    return cols


def _by_method(cols: list[tuple[str, Figures]], attr: str) -> list[tuple[str, list[int]]]:
    """Rows (method, amount per column) of a by-method dict, only methods used in some column."""
    order = [*TENDER_METHODS, "exchange"]
    used = {m for _, f in cols for m, amount in getattr(f, attr).items() if amount}
    methods = [m for m in order if m in used] + sorted(used - set(order))
    return [(m, [getattr(f, attr).get(m, 0) for _, f in cols]) for m in methods]


def _report_context(ui: UiView, x: XReport, own_till: str | None) -> dict[str, Any]:
    _ = ui._
    cols = _columns(x, own_till, ui)
    chart_figures = x.store if own_till is None else (x.tills[0] if x.tills else None)
    tender_rows = [(_(METHODS.get(m, m)), amount, ui.fmt.money(amount))
                   for m, amount in (chart_figures.tenders.items() if chart_figures else []) if amount]
    return {
        "x": x,
        "cols": cols,
        "tenders": _by_method(cols, "tenders"),
        "refunds": _by_method(cols, "refunds"),
        "topups": _by_method(cols, "topups_by_method"),
        "methods": {k: _(v) for k, v in METHODS.items()},
        "tender_chart": tender_rows,
        "tender_desc": "; ".join(f"{label}: {text}" for label, _v, text in tender_rows),
        "variance_text": lambda v: variance_text(ui, v),
    }


# -- pages ---------------------------------------------------------------------------------------------------

@get("/ui/eod", opt=page("eod.read"), sync_to_thread=True)
def eod_page(request: Request[Any, Any, Any], hub: Hub, day: str = "", z_offset: str = "0") -> Response[str]:
    ui = UiView(request)
    _ = ui._
    the_day, today, at = hub.clock.day_or_today(day), hub.clock.today(), hub.clock.stamp()
    settings = service.Settings.of(hub.config)
    try:
        own_till = _own_till(ui)
    except ApiError:
        return ui.render("error.html", status=403, title=_("Not allowed"),
                         message=_("Log in with your PIN at a till to see its end of day."))
    reports_read = ui.may("reports.read")
    z_start = page_offset(z_offset)

    def read(conn: Any) -> tuple[XReport, ZReport | None, AnomalyReport | None, ZList | None, AfterClose | None]:
        x = service.x_report(conn, the_day, at, settings, own_till)
        z = service.stored_z(conn, the_day) if x.closed else None
        found = service.anomaly_report(conn, the_day, at, settings) if reports_read else None
        history = service.z_list(conn, Z_PAGE_SIZE, z_start) if reports_read else None
        late = service.after_close(conn, z) if z is not None and reports_read else None
        return x, z, found, history, late

    x, z, found, history, late = service.read(hub.db.reader(), read)
    names = _user_names(hub, ({z.closed_by} if z else set())
                        | {s.closed_by for s in (history.z_reports if history else [])})
    tills = sorted({t.till_id for t in x.tills if t.till_id} | {t for t in hub.config.tills if t != "*"})
    uncounted = [t.till_id for t in x.tills if t.till_id and t.count is None]
    counts = [t.count for t in x.tills if t.count is not None]
    return ui.render(
        "eod/index.html", title=_("End of day"), day=the_day, today=today, is_today=the_day == today,
        future=the_day > today, own_till=own_till, z=z, names=names, tills=tills, uncounted=uncounted,
        counts=counts, anomalies=found.anomalies if found is not None else None, history=history, late=late,
        z_offset=z_start, z_limit=Z_PAGE_SIZE, z_base=f"/ui/eod?day={the_day}&z_",
        count_id=uuid.uuid4(), faces=[(face, f"¥{Decimal(face) / 100}") for face in COUNT_FACES],
        kinds={k: _(v) for k, v in KINDS.items()}, severities={k: _(v) for k, v in SEVERITIES.items()},
        anomaly_text=lambda a: anomaly_text(ui, a), default_float=ui.fmt.money(settings.till_float),
        **shift_view.context(ui, hub, the_day, own_till), **_report_context(ui, x, own_till))


@get("/ui/eod/z/{z_no:int}", opt=page("reports.read"), sync_to_thread=False)
def z_page(request: Request[Any, Any, Any], hub: Hub,
           z_no: Annotated[int, Parameter(ge=1, le=2**62)]) -> Response[str]:
    ui = UiView(request)
    _ = ui._
    body = service.z_body(hub.db.reader(), z_no)
    if body is None:
        return ui.render("error.html", status=404, title=_("Not found"),
                         message=_("There is no Z report no. %(z_no)s.") % {"z_no": z_no})
    z = msgspec.json.decode(body, type=ZReport)
    names = _user_names(hub, {z.closed_by} | {c.user_id for c in z.counts})
    return ui.render(
        "eod/z.html", title=_("Z report no. %(z_no)s") % {"z_no": z.z_no}, z=z, names=names,
        kinds={k: _(v) for k, v in KINDS.items()}, severities={k: _(v) for k, v in SEVERITIES.items()},
        anomalies=z.anomalies, anomaly_text=lambda a: anomaly_text(ui, a), **_report_context(ui, z.x, None))


# -- actions -------------------------------------------------------------------------------------------------

def _form_day(hub: Hub, form: dict[str, str]) -> str:
    text = form.get("day", "").strip()
    return parse_day(text).isoformat() if text else hub.clock.today()


def _denominations(ui: UiView, form: dict[str, str]) -> dict[str, int] | str | None:
    """The pieces per face from the form (None when no field was filled), or an error text."""
    pieces: dict[str, int] = {}
    for face in COUNT_FACES:
        text = form.get(f"d{face}", "").strip()
        if not text:
            continue
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_PIECES:
            return ui._("Enter how many of each note or coin as a whole number from 0 to %(max)s.") % {
                "max": ui.fmt.number(MAX_PIECES)}
        if int(text):
            pieces[str(face)] = int(text)
    filled = any(form.get(f"d{face}", "").strip() for face in COUNT_FACES)
    return pieces if filled else None


@post("/ui/eod/cash-counts", opt=page("eod.read"))
async def eod_count(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    day_text = hub.clock.day_or_today(form.get("day", "").strip())
    back = _back(day_text)
    try:
        day = _form_day(hub, form)
        own_till = _own_till(ui)
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    till = own_till or form.get("till_id", "").strip()
    pieces = _denominations(ui, form)
    if isinstance(pieces, str):
        return ui.redirect(back, error=pieces)
    total_text = form.get("counted", "").strip()
    counted = yuan_to_fen(total_text) if total_text else None
    if total_text and (counted is None or counted > MAX_FEN):
        return ui.redirect(back, error=_("Enter the counted cash in yuan, 0 or more and with at most two decimals "
                                         "(for example 619.90)."))
    if pieces is not None:
        summed = sum(int(face) * n for face, n in pieces.items())
        counted = summed if counted is None else counted  # both given: the service checks they agree
    if counted is None:
        return ui.redirect(back, error=_("Enter the counted total, or how many of each note and coin."))
    try:
        req = msgspec.convert({"count_id": form.get("count_id", ""), "till_id": till, "counted": counted,
                               "denominations": pieces, "day": day}, CashCountRequest)
    except msgspec.ValidationError:
        return ui.redirect(back, error=_("Choose the till, and reload the page if this repeats."))
    actor = Actor(user_id=ui.claims.user_id if ui.claims else "", till_id=own_till)
    today, at, digest = hub.clock.today(), hub.clock.stamp(), request_hash(req)
    settings = service.Settings.of(hub.config)
    try:
        result = await hub.db.write(
            lambda conn: service.count_cash(conn, req, digest, day, today, actor, at, settings))
    except ApiError as exc:
        if exc.code == "id_conflict":
            return ui.redirect(back, error=_("This count form was already sent with other figures. "
                                             "Count again in the fresh form below."))
        return ui.redirect(back, error=ui.problem(exc))
    done = msgspec.json.decode(result.body if isinstance(result, Replay) else result, type=CashCount)
    return ui.redirect(back, notice=_("Till %(till)s counted %(counted)s, expected %(expected)s: %(variance)s.") % {
        "till": done.till_id, "counted": ui.fmt.money(done.counted), "expected": ui.fmt.money(done.expected),
        "variance": variance_text(ui, done.variance)})


@post("/ui/eod/floats", opt=page("eod.close"))
async def eod_float(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = _back(hub.clock.day_or_today(form.get("day", "").strip()))
    amount = yuan_to_fen(form.get("amount", ""))
    if amount is None or amount > MAX_FEN:
        return ui.redirect(back, error=_("Enter the opening float in yuan, 0 or more and with at most two decimals "
                                         "(for example 500)."))
    try:
        day = _form_day(hub, form)
        req = msgspec.convert({"till_id": form.get("till_id", "").strip(), "amount": amount}, TillFloatRequest)
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    except msgspec.ValidationError:
        return ui.redirect(back, error=_("Enter the till the float is for."))
    actor = Actor(user_id=ui.claims.user_id if ui.claims else "", till_id=None)
    today, at = hub.clock.today(), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: service.set_float(conn, day, today, req.till_id, req.amount, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return ui.redirect(back, notice=_("Opening float of till %(till)s set to %(amount)s.") % {
        "till": req.till_id, "amount": ui.fmt.money(req.amount)})


@post("/ui/eod/close", opt=page("eod.close"))
async def eod_close(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = _back(hub.clock.day_or_today(form.get("day", "").strip()))
    actor = Actor(user_id=ui.claims.user_id if ui.claims else "", till_id=None)
    today, at, settings = hub.clock.today(), hub.clock.stamp(), service.Settings.of(hub.config)
    try:
        day = _form_day(hub, form)
        body = await hub.db.write(lambda conn: service.close_day(conn, day, today, actor, at, settings))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    z = msgspec.json.decode(body, type=ZReport)
    print_z(request, hub, body, None, f"z/{day}/close")  # on the tablet user's till printer, else the "*" pairing
    return ui.redirect(back, notice=_("The day is closed: Z report no. %(z_no)s.") % {"z_no": z.z_no})


ROUTES: list[Any] = [eod_page, z_page, eod_count, eod_float, eod_close]
