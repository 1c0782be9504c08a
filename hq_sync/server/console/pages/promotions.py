"""Promotions: the chain's list, a form for each rule kind the engine has (targets, schedule), a preview on a
sample basket with the hubs' engine and its explanations, stop early, and the chain-wide report per
promotion."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import N_
from hq_sync.server.console.pages.catalog import _stores_and_regions
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import promotions
from hq_sync.server.service.errors import HqError, now_text

KIND_LABELS = {
    "percent_off": N_("Percent off"), "amount_off": N_("Amount off"), "fixed_price": N_("Fixed price"),
    "buy_n_get_m": N_("Buy N get M"), "spend_get_off": N_("Spend X get Y off"),
    "points_multiplier": N_("Points multiplier"), "free_gift": N_("Free gift"),
}
STATE_LABELS = {"active": N_("Running"), "scheduled": N_("Scheduled"), "ended": N_("Ended"), "stopped": N_("Stopped")}
# form fields per kind: (name, label msgid, unit) — unit "yuan", "pct", "count", "sku" or "bool"
KIND_FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "percent_off": [("discount_pct", N_("Discount (%)"), "pct")],
    "amount_off": [("amount", N_("Amount off (yuan)"), "yuan")],
    "fixed_price": [("price", N_("Price (yuan)"), "yuan"), ("qty", N_("For how many units"), "count")],
    "buy_n_get_m": [("buy", N_("Buy (units)"), "count"), ("get", N_("Get (units)"), "count"),
                    ("discount_pct", N_("Off the units got (%, empty: free)"), "pct")],
    "spend_get_off": [("threshold", N_("Spend (yuan)"), "yuan"), ("off", N_("Get off (yuan)"), "yuan"),
                      ("repeat", N_("Every time the amount is reached again"), "bool"),
                      ("max_times", N_("At most this many times (empty: no limit)"), "count")],
    "points_multiplier": [("multiplier_pct", N_("Points (% of normal, 200 = double)"), "count")],
    "free_gift": [("gift_sku", N_("Gift SKU"), "sku"), ("qty", N_("Gift units"), "count")],
}


def _bad(field: str, text: str) -> HqError:
    return HqError(422, "invalid_field", f"{field}: {text[:40]!r} is not a valid value")


def _number(fields: dict[str, list[str]], name: str, unit: str) -> Any:
    raw = fields.get(name, [""])[-1].strip()
    if unit == "bool":
        return raw in ("1", "on", "true")
    if unit == "sku":
        return raw[:64]
    if not raw:
        return 0
    try:
        value = Decimal(raw[:16])
    except InvalidOperation:
        raise _bad(name, raw) from None
    scaled = value * (100 if unit in ("yuan", "pct") else 1)
    if not scaled.is_finite() or scaled != scaled.to_integral_value() or not 0 <= scaled <= 100_000_000:
        raise _bad(name, raw)
    return int(scaled)


def _words(fields: dict[str, list[str]], name: str) -> list[str]:
    return [w.strip()[:64] for w in fields.get(name, [""])[-1].replace("，", ",").split(",") if w.strip()][:500]


def form_of(fields: dict[str, list[str]]) -> promotions.PromotionForm:
    """The console's fields as a PromotionForm: money in yuan, percentages in %, lists comma-separated."""
    kind = fields.get("kind", [""])[-1]
    if kind not in KIND_FIELDS:
        raise HqError(422, "invalid_field", "kind: choose a rule kind")
    data: dict[str, Any] = {
        "rule_id": fields.get("rule_id", [""])[-1].strip()[:200], "name": fields.get("name", [""])[-1].strip()[:200],
        "name_en": fields.get("name_en", [""])[-1].strip()[:200], "kind": kind,
        "skus": _words(fields, "skus"), "categories": _words(fields, "categories"), "brands": _words(fields, "brands"),
        "tags": _words(fields, "tags"), "stores": [s[:64] for s in fields.get("store", [])][:2000],
        "regions": [r[:64] for r in fields.get("region", [])][:2000],
        "tiers": [t[:64] for t in fields.get("tier", [])][:50],
        "starts_at": fields.get("starts_at", [""])[-1][:40], "ends_at": fields.get("ends_at", [""])[-1][:40],
        "stacking": fields.get("stacking", ["combinable"])[-1],
        "priority": _number(fields, "priority", "count") if fields.get("priority", [""])[-1].strip() else 0,
        "min_value": _number(fields, "min_value", "yuan"), "members_only": bool(fields.get("members_only")),
    }
    for name, _label, unit in KIND_FIELDS[kind]:
        value = _number(fields, name, unit)
        data["discount_bp" if name == "discount_pct" else name] = value
    try:
        return msgspec.convert(data, promotions.PromotionForm)
    except msgspec.ValidationError as exc:
        raise HqError(422, "invalid_field", str(exc)[:200]) from None


def sample_lines(text: str) -> list[promotions.SampleLine]:
    """`sku,qty` (or `sku,grams` for weighed items: the engine reads grams for kg items) per line."""
    out = []
    for n, line in enumerate(text.strip().splitlines()[:50], start=1):
        cells = [c.strip() for c in line.split(",")]
        if not cells[0]:
            continue
        try:
            qty = int(cells[1]) if len(cells) > 1 and cells[1] else 1
        except ValueError:
            raise HqError(422, "invalid_field", f"sample line {n}: the quantity is a whole number") from None
        if not 1 <= qty <= 9_999:
            raise HqError(422, "invalid_field", f"sample line {n}: 1 to 9999 units")
        out.append(promotions.SampleLine(sku=cells[0][:64], qty=qty, weight_g=qty if qty >= 10 else None))
    if not out:
        raise HqError(422, "invalid_field", "the sample basket has no line")
    return out


def _tiers(ui: ConsoleView) -> list[tuple[str, str]]:
    with ui.hq.db.read() as tx:
        return [(str(r[0]), str(r[1] if ui.lang == "zh_CN" else r[2]))
                for r in tx.all("SELECT tier, name_zh, name_en FROM hq_tiers ORDER BY min_points")]


def _editor(ui: ConsoleView, fields: dict[str, list[str]], kind: str, result: Any = None, status: int = 200,
            problem: str = "") -> Response[str]:
    stores, regions = _stores_and_regions(ui)
    values = {k: v[-1] for k, v in fields.items() if v}
    return ui.render("promotions/new.html", status=status, title=ui._("New promotion"), kind=kind,
                     kinds=[(k, ui._(label)) for k, label in KIND_LABELS.items()],
                     kind_fields=[(n, ui._(label), unit) for n, label, unit in KIND_FIELDS[kind]], values=values,
                     checked={k: set(v) for k, v in fields.items()}, stores=stores, regions=regions,
                     tiers=_tiers(ui), result=result, problem=problem)


@get("/hq/ui/promotions", opt=page("promotions.read"), sync_to_thread=True)
def promotions_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = ConsoleView(request)
    rows = promotions.listing(ui.hq.db, ui.who)
    return ui.render("promotions/index.html", title=ui._("Promotions"), rows=rows,
                     kinds={k: ui._(v) for k, v in KIND_LABELS.items()},
                     states={k: ui._(v) for k, v in STATE_LABELS.items()})


@get("/hq/ui/promotions/new", opt=page("promotions.write"), sync_to_thread=True)
def promotion_new(request: Request[Any, Any, Any],
                  kind: Annotated[str, Parameter(max_length=32)] = "percent_off") -> Response[str]:
    ui = ConsoleView(request)
    return _editor(ui, {"sample": ["SKU00027,3"]}, kind if kind in KIND_FIELDS else "percent_off")


@post("/hq/ui/promotions/new", opt=page("promotions.write"))
async def promotion_submit(request: Request[Any, Any, Any]) -> Response[str] | Redirect:
    """Preview (`action=preview`: the sample basket through the engine, nothing saved) or create."""
    ui = ConsoleView(request)
    fields = await ui.form_lists()
    kind = fields.get("kind", ["percent_off"])[-1]
    kind = kind if kind in KIND_FIELDS else "percent_off"
    try:
        form = form_of(fields)
        if fields.get("action", [""])[-1] == "preview":
            req = promotions.PreviewIn(lines=sample_lines(fields.get("sample", [""])[-1]), form=form,
                                       store_id=fields.get("preview_store", [""])[-1][:64],
                                       tier=fields.get("preview_tier", [""])[-1][:64])
            result = await in_thread(promotions.preview, ui.hq.db, ui.who, req)
            return _editor(ui, fields, kind, result=result)
        out = await in_thread(promotions.create, ui.hq.db, ui.who, ui.hq.private_key, form, now_text())
    except HqError as exc:
        if exc.status == 403:
            raise
        return _editor(ui, fields, kind, status=exc.status if 400 <= exc.status < 500 else 400,
                       problem=ui.problem(exc))
    ui.hq.signal.notify()
    notice = ui._("Promotion %(id)s created; it is on its way to the stores.") % {"id": out["rule_id"]}
    return ui.redirect(f"/hq/ui/promotions/{quote(out['rule_id'])}", notice=notice)


@get("/hq/ui/promotions/{rule_id:str}", opt=page("promotions.read"), sync_to_thread=True)
def promotion_page(request: Request[Any, Any, Any], rule_id: str) -> Response[str]:
    ui = ConsoleView(request)
    info = promotions.detail(ui.hq.db, ui.who, rule_id[:64])
    report = promotions.report(ui.hq.db, ui.who, rule_id[:64]) if ui.may("reports.read") else None
    return ui.render("promotions/detail.html", title=info["rule"]["name"] if ui.lang == "zh_CN" else
                     info["rule"]["name_en"], info=info, report=report,
                     rule_json=msgspec.json.format(msgspec.json.encode(info["rule"]), indent=2).decode(),
                     states={k: ui._(v) for k, v in STATE_LABELS.items()})


@post("/hq/ui/promotions/{rule_id:str}/stop", opt=page("promotions.write"))
async def promotion_stop(request: Request[Any, Any, Any], rule_id: str) -> Redirect:
    ui = ConsoleView(request)
    await ui.form_lists()
    await in_thread(promotions.stop, ui.hq.db, ui.who, ui.hq.private_key, rule_id[:64], now_text())
    ui.hq.signal.notify()
    return ui.redirect(f"/hq/ui/promotions/{quote(rule_id[:64])}", notice=ui._("Promotion stopped at every store."))


ROUTES = [promotions_page, promotion_new, promotion_submit, promotion_page, promotion_stop]
