"""The promotions page (促销): what runs now, what is scheduled and what has ended, each rule in
words (its benefit, window and scope); for readers of reports, what each gave (uses and discount,
in all, today, the last 7 days) and the net sales of the items it covers; for managers, the coupons.

Benefits are worded by edge/promotions/explain.py (the texts the till shows); figures come from
edge/reports/promotions.py, which reads the rollups only.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get

from edge.hub import Hub
from edge.promotions.explain import describe
from edge.promotions.rules import Promotion, promotion_decoder
from edge.reports.promotions import PromotionStats, in_window, promotions_performance
from edge.ui.i18n import dates
from edge.ui.session import page
from edge.ui.view import UiView, page_offset

Status = Literal["on", "waiting", "scheduled", "ended", "off"]
COUPON_PAGE = 50
NAMES_SHOWN = 3


class PromotionView(msgspec.Struct, frozen=True):
    rule_id: str
    name: str
    benefit: str
    status: Status
    window: list[str]
    scope: list[str]
    who: list[str]
    source: str
    stats: PromotionStats | None


class CouponView(msgspec.Struct, frozen=True):
    code: str
    rule_id: str
    promotion: str
    member_id: str | None
    max_uses: int
    used: int
    min_spend: int
    starts_at: str | None
    expires_at: str | None
    chain: bool


def status_of(promo: Promotion, enabled: bool, now: datetime.datetime) -> Status:
    e = promo.eligibility
    if not enabled:
        return "off"
    if e.ends_at is not None and now >= e.ends_at:
        return "ended"
    if e.starts_at is not None and now < e.starts_at:
        return "scheduled"
    return "on" if in_window(e, now) else "waiting"


class _Names:
    """Display names of the skus, categories and tiers the rules name, read once per page."""

    def __init__(self, conn: sqlite3.Connection, rules: Iterable[Promotion], zh: bool) -> None:
        skus = sorted({s for r in rules for s in (*r.items.skus[:NAMES_SHOWN], *r.items.exclude_skus[:NAMES_SHOWN])})
        column = "name_zh" if zh else "name_en"
        self.items = {row[0]: row[1] for row in conn.execute(
            f"SELECT sku, {column} FROM items WHERE sku IN ({','.join('?' * len(skus))})", skus)} if skus else {}
        self.categories = {row[0]: row[1] for row in conn.execute(f"SELECT category_id, {column} FROM categories")}
        self.tiers = {row[0]: row[1] for row in conn.execute(f"SELECT tier, {column} FROM tiers")}
        self.sep = "、" if zh else ", "

    def join(self, keys: list[str], names: dict[str, str], more: Callable[[int], str]) -> str:
        shown = self.sep.join(names.get(k, k) for k in keys[:NAMES_SHOWN])
        return shown + (more(len(keys) - NAMES_SHOWN) if len(keys) > NAMES_SHOWN else "")


def _scope(ui: UiView, promo: Promotion, names: _Names) -> list[str]:
    _ = ui._

    def more(n: int) -> str:
        return _(" and %(n)s more") % {"n": n}

    rng, out = promo.items, []
    if rng.everything:
        out.append(_("All items"))
    if rng.skus:
        out.append(_("Items: %(list)s") % {"list": names.join(rng.skus, names.items, more)})
    if rng.categories:
        out.append(_("Categories: %(list)s") % {"list": names.join(rng.categories, names.categories, more)})
    if rng.brands:
        out.append(_("Brands: %(list)s") % {"list": names.join(rng.brands, {}, more)})
    if rng.tags:
        out.append(_("Item tags: %(list)s") % {"list": names.join(rng.tags, {}, more)})
    if rng.exclude_skus or rng.exclude_categories:
        excluded = [names.join(rng.exclude_skus, names.items, more)] if rng.exclude_skus else []
        if rng.exclude_categories:
            excluded.append(names.join(rng.exclude_categories, names.categories, more))
        out.append(_("Except: %(list)s") % {"list": names.sep.join(excluded)})
    c = promo.condition
    if c.min_qty:
        out.append(_("When the basket holds at least %(n)s of them") % {"n": c.min_qty})
    if c.min_value:
        out.append(_("When they come to at least %(amount)s") % {"amount": ui.fmt.money(c.min_value)})
    return out


def _who(ui: UiView, promo: Promotion, names: _Names, store_id: str) -> list[str]:
    _ = ui._
    e, out = promo.eligibility, []
    if e.tiers:
        out.append(_("Members of tier: %(list)s") % {"list": names.sep.join(names.tiers.get(t, t) for t in e.tiers)})
    elif e.members_only:
        out.append(_("Members only"))
    if e.member_tags:
        out.append(_("Members tagged: %(list)s") % {"list": names.sep.join(e.member_tags)})
    if e.coupon:
        out.append(_("Only with a coupon"))
    if e.stores and store_id not in e.stores:
        out.append(_("Not for this store"))
    return out or [_("Every shopper")]


def _window(ui: UiView, promo: Promotion) -> list[str]:
    _ = ui._
    e, out = promo.eligibility, []
    if e.starts_at is not None and e.ends_at is not None:
        out.append(_("%(start)s to %(end)s") % {"start": ui.fmt.when(e.starts_at), "end": ui.fmt.when(e.ends_at)})
    elif e.starts_at is not None:
        out.append(_("From %(start)s, no end date") % {"start": ui.fmt.when(e.starts_at)})
    elif e.ends_at is not None:
        out.append(_("Until %(end)s") % {"end": ui.fmt.when(e.ends_at)})
    else:
        out.append(_("No end date"))
    if e.weekdays:
        days = dates.get_day_names("abbreviated", locale=ui.fmt.locale)
        out.append(_("On %(days)s") % {"days": ("、" if ui.lang == "zh_CN" else ", ").join(
            days[d - 1] for d in sorted(e.weekdays))})
    if e.hours:
        out.append(_("Hours: %(hours)s") % {"hours": ", ".join(f"{w.start}–{w.end}" for w in e.hours)})
    return out


def _coupons(conn: sqlite3.Connection, names: dict[str, str], limit: int, offset: int) -> tuple[list[CouponView], int]:
    total = int(conn.execute("SELECT count(*) FROM coupons").fetchone()[0])
    rows = conn.execute(
        """SELECT c.code, c.rule_id, c.member_id, c.max_uses, c.min_spend, c.starts_at, c.expires_at,
                  (SELECT count(*) FROM coupon_redemptions r WHERE r.code = c.code),
                  EXISTS (SELECT 1 FROM chain_coupons k WHERE k.code = c.code)
           FROM coupons c ORDER BY c.created_at DESC, c.code LIMIT ? OFFSET ?""", (limit, offset)).fetchall()
    return [CouponView(code=r[0], rule_id=r[1], promotion=names.get(r[1], r[1]), member_id=r[2], max_uses=int(r[3]),
                       used=int(r[7]), min_spend=int(r[4]), starts_at=r[5], expires_at=r[6], chain=bool(r[8]))
            for r in rows], total


@get("/ui/promotions", opt=page("items.read"), sync_to_thread=False)
def promotions_page(request: Request[Any, Any, Any], hub: Hub, offset: str = "0") -> Response[str]:
    ui = UiView(request)
    _ = ui._
    zh = ui.lang == "zh_CN"
    conn = hub.db.reader()
    now = hub.clock.now()
    rows: list[tuple[Promotion, bool, str]] = []
    for _rule_id, text, enabled, source in conn.execute(
            "SELECT rule_id, rule, active, source FROM promotions ORDER BY rule_id LIMIT 500"):
        try:
            rows.append((promotion_decoder.decode(text), bool(enabled), str(source)))
        except msgspec.DecodeError:  # a row this hub cannot read is left out, as the engine leaves it out
            continue
    reports = ui.may("reports.read")
    stats = {s.rule_id: s for s in promotions_performance(conn, now).promotions} if reports else {}
    names = _Names(conn, (r[0] for r in rows), zh)
    views = []
    for promo, enabled, source in rows:
        zh_text, en_text = describe(promo.benefit)
        views.append(PromotionView(
            rule_id=promo.rule_id, name=promo.name if zh else promo.name_en, benefit=zh_text if zh else en_text,
            status=status_of(promo, enabled, now), window=_window(ui, promo), scope=_scope(ui, promo, names),
            who=_who(ui, promo, names, hub.store_id), source=source, stats=stats.get(promo.rule_id)))
    groups = [
        ("running", _("Running promotions"), [v for v in views if v.status in ("on", "waiting")],
         _("No promotion is running."), _("Promotions come from HQ; scheduled ones start by themselves.")),
        ("scheduled", _("Scheduled promotions"), [v for v in views if v.status == "scheduled"],
         _("Nothing is scheduled."), _("Promotions HQ sets up for later show here before they start.")),
        ("ended", _("Ended or switched off"), [v for v in views if v.status in ("ended", "off")],
         _("No promotion has ended yet."), ""),
    ]
    given = sorted(((v.name, v.stats.discount) for v in views if v.stats and v.stats.discount > 0),
                   key=lambda pair: -pair[1])
    coupons: list[CouponView] = []
    coupon_total = 0
    start = page_offset(offset)
    if ui.may("promotions.write"):
        coupons, coupon_total = _coupons(conn, {p.rule_id: (p.name if zh else p.name_en) for p, _e, _s in rows},
                                         COUPON_PAGE, start)
    return ui.render(
        "promotions/index.html", title=_("Promotions"), groups=groups, reports=reports,
        chart_rows=[(name, amount, ui.fmt.money(amount)) for name, amount in given[:12]],
        chart_description=_("Discount given: %(list)s") % {
            "list": "; ".join(f"{name} {ui.fmt.money(amount)}" for name, amount in given[:12])},
        coupons=coupons, coupon_total=coupon_total, coupon_offset=start, coupon_limit=COUPON_PAGE,
        status_text={"on": _("On now"), "waiting": _("Not at this hour or day"), "scheduled": _("Not started yet"),
                     "ended": _("Has ended"), "off": _("Switched off")},
        status_class={"on": "good", "waiting": "warn", "scheduled": "warn", "ended": "", "off": "bad"})


ROUTES: list[Any] = [promotions_page]
