"""Promotions from the console: a form per rule kind of the engine, targeting, a preview with the hubs' own
engine, stopping early, and the chain-wide report per promotion.

A form becomes a rule in the documented format (edge/promotions/rules.py, decoded strictly, so the
console can make nothing a hub would refuse). Targeting: stores and regions (expanded to their stores,
written to `eligibility.stores`; a region manager must name stores of his own), member tiers and tags.
The schedule is `eligibility.starts_at` / `ends_at`. A promotion reaches every hub as a `promotion` feed
entry; stopping it sends the same rule with `active=false`.

The preview prices a sample basket with `edge.pricing.engine.price_basket` (the code a hub's quote runs)
over HQ's catalog, the active chain promotions for the chosen store and the draft rule, and answers the
engine's per-line explanations. The report reads `hq_rule_days`, the rollup ingest keeps of
`hq_sale_line_rules` (each sale line's amount per rule): uses (sales), discount given, covered sales (the
totals of those sales), per store.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edge.money import div_half_up
from edge.pricing.engine import price_basket, tier_rules
from edge.pricing.lines import BasketLine, Context, PricingItem, Tier
from edge.promotions.engine import RuleBook
from edge.promotions.rules import RESERVED_PREFIXES, Promotion, promotion_decoder, promotion_encoder
from hq_sync.server.service import targets
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.prices import CHAIN_TZ
from hq_sync.server.service.targets import Scope
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import PromotionPut

KINDS = ("percent_off", "amount_off", "fixed_price", "buy_n_get_m", "spend_get_off", "points_multiplier", "free_gift")
Small = Annotated[int, Meta(ge=0, le=100_000_000)]
Text = Annotated[str, Meta(max_length=200)]
Keys = Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=500)]


class PromotionForm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the console's form (or a JSON client) fills in; numbers the kind does not use are ignored."""

    rule_id: Text
    name: Text
    name_en: Text
    kind: Literal["percent_off", "amount_off", "fixed_price", "buy_n_get_m", "spend_get_off", "points_multiplier",
                  "free_gift"]
    discount_bp: Small = 0
    amount: Small = 0
    per: Literal["basket", "unit"] = "basket"
    price: Small = 0
    qty: Small = 1
    buy: Small = 0
    get: Small = 0
    threshold: Small = 0
    off: Small = 0
    repeat: bool = False
    max_times: Small = 0
    multiplier_pct: Small = 0
    gift_sku: Text = ""
    skus: Keys = []
    categories: Keys = []
    brands: Keys = []
    item_tags: Keys = []
    stores: Keys = []
    regions: Keys = []
    tiers: Keys = []
    tags: Keys = []
    members_only: bool = False
    starts_at: Text = ""
    ends_at: Text = ""
    priority: Annotated[int, Meta(ge=-1_000_000, le=1_000_000)] = 0
    stacking: Literal["combinable", "exclusive", "stop"] = "combinable"
    min_qty: Annotated[int, Meta(ge=0, le=9_999)] = 0
    min_value: Small = 0
    per_basket: Small = 0


def _instant(text: str, field: str) -> str | None:
    if not text.strip():
        return None
    try:
        when = datetime.datetime.fromisoformat(text.strip()[:40].replace("Z", "+00:00"))
    except ValueError:
        raise HqError(400, "bad_time", f"{field} is RFC 3339 or YYYY-MM-DDTHH:MM (China Standard Time)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=CHAIN_TZ)
    if not 2000 <= when.year <= 2199:
        raise HqError(400, "bad_time", f"{field} must lie between 2000 and 2199")
    return when.isoformat(timespec="seconds")


def _benefit(f: PromotionForm) -> dict[str, Any]:
    match f.kind:
        case "percent_off":
            return {"kind": f.kind, "discount_bp": f.discount_bp}
        case "amount_off":
            return {"kind": f.kind, "amount": f.amount, "per": f.per}
        case "fixed_price":
            return {"kind": f.kind, "price": f.price, "qty": f.qty}
        case "buy_n_get_m":
            return {"kind": f.kind, "buy": f.buy, "get": f.get, "discount_bp": f.discount_bp or 10_000}
        case "spend_get_off":
            out: dict[str, Any] = {"kind": f.kind, "threshold": f.threshold, "off": f.off, "repeat": f.repeat}
            if f.repeat and f.max_times:
                out["max_times"] = f.max_times
            return out
        case "points_multiplier":
            return {"kind": f.kind, "multiplier_pct": f.multiplier_pct}
        case _:
            return {"kind": f.kind, "sku": f.gift_sku, "qty": f.qty}


def build_rule(f: PromotionForm, stores: list[str] | None) -> Promotion:
    """The rule a form describes, decoded by the hubs' own strict decoder (422 naming the field otherwise)."""
    if f.rule_id.startswith(RESERVED_PREFIXES):
        raise HqError(422, "reserved_rule_id", "rule ids starting with tier: or member_price are the hubs' own")
    eligibility: dict[str, Any] = {"members_only": f.members_only, "tiers": f.tiers, "member_tags": f.tags,
                                   "stores": stores or []}
    starts, ends = _instant(f.starts_at, "starts_at"), _instant(f.ends_at, "ends_at")
    if starts:
        eligibility["starts_at"] = starts
    if ends:
        eligibility["ends_at"] = ends
    rule: dict[str, Any] = {
        "rule_id": f.rule_id, "name": f.name, "name_en": f.name_en, "benefit": _benefit(f),
        "items": {"skus": f.skus, "categories": f.categories, "brands": f.brands, "tags": f.item_tags},
        "condition": {"min_qty": f.min_qty, "min_value": f.min_value}, "eligibility": eligibility,
        "priority": f.priority, "stacking": f.stacking}
    if f.per_basket:
        rule["limits"] = {"per_basket": f.per_basket}
    try:
        return promotion_decoder.decode(msgspec.json.encode(rule))
    except (msgspec.ValidationError, ValueError) as exc:
        raise HqError(422, "invalid_rule", str(exc)[:300]) from None


def _state(active: bool, rule: Promotion, now: datetime.datetime) -> str:
    if not active:
        return "stopped"
    e = rule.eligibility
    if e.ends_at is not None and e.ends_at <= now:
        return "ended"
    if e.starts_at is not None and e.starts_at > now:
        return "scheduled"
    return "active"


def _rules(tx: Tx) -> list[tuple[Promotion, bool, str]]:
    out = []
    for text, active, updated_at in tx.all("SELECT rule, active, updated_at FROM hq_promotions "
                                            "ORDER BY rule_id"):
        try:
            out.append((promotion_decoder.decode(text), bool(active), str(updated_at)))
        except (msgspec.DecodeError, ValueError):
            continue  # a rule stored by an older HQ that no longer decodes is not shown
    return out


def _in_scope(rule: Promotion, scope: Scope) -> bool:
    stores = rule.eligibility.stores
    return scope is None or (bool(stores) and set(stores) <= scope)


def _visible(rule: Promotion, scope: Scope) -> bool:
    """A region manager sees chain-wide promotions and those reaching any of his stores."""
    stores = rule.eligibility.stores
    return scope is None or not stores or bool(set(stores) & scope)


def listing(db: HqDb, principal: Principal) -> list[dict[str, Any]]:
    require(principal, "promotions.read")
    now = datetime.datetime.now(CHAIN_TZ)
    with db.read() as tx:
        rules = _rules(tx)
        scope = targets.scope_of(tx, principal)
    return [{"rule_id": r.rule_id, "name": r.name, "name_en": r.name_en, "kind": type(r.benefit).__struct_config__.tag,
             "stores": r.eligibility.stores, "tiers": r.eligibility.tiers, "tags": r.eligibility.member_tags,
             "starts_at": None if r.eligibility.starts_at is None else r.eligibility.starts_at.isoformat(),
             "ends_at": None if r.eligibility.ends_at is None else r.eligibility.ends_at.isoformat(),
             "state": _state(active, r, now), "updated_at": updated, "may_change": _in_scope(r, scope)}
            for r, active, updated in rules if _visible(r, scope)]


def detail(db: HqDb, principal: Principal, rule_id: str) -> dict[str, Any]:
    require(principal, "promotions.read")
    with db.read() as tx:
        row = tx.one("SELECT rule, active, updated_at FROM hq_promotions WHERE rule_id = ?", (rule_id[:64],))
        scope = targets.scope_of(tx, principal)
    if row is None:
        raise HqError(404, "unknown_promotion", f"no promotion {rule_id[:64]}")
    rule = promotion_decoder.decode(row[0])
    if not _visible(rule, scope):
        raise HqError(404, "unknown_promotion", f"no promotion {rule_id[:64]}")
    return {"rule_id": rule.rule_id, "rule": msgspec.json.decode(row[0]), "active": bool(row[1]),
            "state": _state(bool(row[1]), rule, datetime.datetime.now(CHAIN_TZ)), "updated_at": row[2],
            "may_change": _in_scope(rule, scope)}


def create(db: HqDb, principal: Principal, private_key: bytes, form: PromotionForm, at: str) -> dict[str, Any]:
    """A new promotion from a form (409 if the rule id is taken), on every hub's feed."""
    require(principal, "promotions.write")
    with db.write() as tx:
        reach = targets.resolve(tx, form.stores, form.regions, targets.scope_of(tx, principal))
        rule = build_rule(form, reach)
        if tx.one("SELECT 1 FROM hq_promotions WHERE rule_id = ?", (rule.rule_id,)) is not None:
            raise HqError(409, "rule_exists", f"a promotion {rule.rule_id} exists already; pick another id")
        text = promotion_encoder.encode(rule).decode()
        tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)",
               (rule.rule_id, text, at))
        seq = append_feed(tx, private_key, "*", PromotionPut(rule_id=rule.rule_id, rule=text), at)
        audit(tx, principal, "promotion.create", f"promotion:{rule.rule_id}", None,
              {"rule": msgspec.json.decode(text), "active": True, "feed_seq": seq, "regions": form.regions}, at=at)
    return {"rule_id": rule.rule_id, "feed_seq": seq, "rule": msgspec.json.decode(text)}


def stop(db: HqDb, principal: Principal, private_key: bytes, rule_id: str, at: str) -> dict[str, Any]:
    """End a promotion early: `active=false` down the feed. A region manager stops only his regions' own."""
    require(principal, "promotions.write")
    with db.write() as tx:
        scope = targets.scope_of(tx, principal)
        row = tx.one("SELECT rule, active FROM hq_promotions WHERE rule_id = ?", (rule_id[:64],))
        if row is None:
            raise HqError(404, "unknown_promotion", f"no promotion {rule_id[:64]}")
        rule = promotion_decoder.decode(row[0])
        if not _visible(rule, scope):
            raise HqError(404, "unknown_promotion", f"no promotion {rule_id[:64]}")
        if not _in_scope(rule, scope):
            raise HqError(403, "out_of_scope", "this promotion reaches stores outside your regions")
        if not row[1]:
            return {"rule_id": rule_id, "active": False, "feed_seq": None}
        tx.run("UPDATE hq_promotions SET active = 0, updated_at = ? WHERE rule_id = ?", (at, rule_id))
        seq = append_feed(tx, private_key, "*", PromotionPut(rule_id=rule_id, rule=row[0], active=False), at)
        audit(tx, principal, "promotion.stop", f"promotion:{rule_id}", {"active": True},
              {"active": False, "feed_seq": seq}, at=at)
    return {"rule_id": rule_id, "active": False, "feed_seq": seq}


# -- preview --------------------------------------------------------------------------------------------------

class SampleLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[str, Meta(max_length=64)]
    qty: Annotated[int, Meta(ge=1, le=9_999)] = 1
    weight_g: Annotated[int, Meta(ge=1, le=100_000)] | None = None


class PreviewIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lines: Annotated[list[SampleLine], Meta(min_length=1, max_length=50)]
    form: PromotionForm | None = None  # a draft; else `rule_id` names a stored promotion
    rule_id: Annotated[str, Meta(max_length=64)] = ""
    store_id: Annotated[str, Meta(max_length=64)] = ""
    tier: Annotated[str, Meta(max_length=64)] = ""
    member_tags: Keys = []
    at: Text = ""


def preview(db: HqDb, principal: Principal, req: PreviewIn) -> dict[str, Any]:
    """The sample basket priced by the hubs' engine with the draft (or stored) rule and the chain's active
    promotions, as a store of the draft's targets would price it; each line with what applied and why."""
    require(principal, "promotions.read")
    with db.read() as tx:
        scope = targets.scope_of(tx, principal)
        draft: Promotion | None = None
        if req.form is not None:
            reach = targets.resolve(tx, req.form.stores, req.form.regions, scope)
            draft = build_rule(req.form, reach)
        elif req.rule_id:
            row = tx.one("SELECT rule FROM hq_promotions WHERE rule_id = ?", (req.rule_id,))
            if row is None:
                raise HqError(404, "unknown_promotion", f"no promotion {req.rule_id[:64]}")
            draft = promotion_decoder.decode(row[0])
        store = req.store_id or (draft.eligibility.stores[0] if draft and draft.eligibility.stores else "")
        if store:
            targets.check([store], scope)
        others = [r for r, active, _ in _rules(tx) if active and (draft is None or r.rule_id != draft.rule_id)]
        parents = {str(r[0]): r[1] for r in tx.all("SELECT category_id, parent_id FROM hq_categories")}
        tier_row = tx.one("""SELECT tier, name_zh, name_en, discount_bp, points_multiplier_pct FROM hq_tiers
                             WHERE tier = ?""", (req.tier,)) if req.tier else None
        if req.tier and tier_row is None:
            raise HqError(422, "unknown_tier", f"no tier {req.tier[:64]}")
        basket = []
        for n, line in enumerate(req.lines, start=1):
            item = tx.one("""SELECT sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, brand, tags
                             FROM hq_items WHERE sku = ?""", (line.sku,))
            if item is None:
                raise HqError(422, "unknown_sku", f"line {n}: no item {line.sku[:64]}", line=n)
            price = int(item[5])
            if store:
                own = tx.one("""SELECT price FROM hq_prices WHERE sku = ? AND store_id IN (?, '*')
                                ORDER BY feed_seq DESC LIMIT 1""", (line.sku, store))
                price = int(own[0]) if own else price
            pitem = PricingItem(str(item[0]), str(item[1]), str(item[2]), str(item[3]), str(item[4]), price,
                                int(item[6]), str(item[7]), tuple(msgspec.json.decode(item[8], type=list[str])))
            if pitem.unit == "kg":
                grams = line.weight_g or 1000
                basket.append(BasketLine(n, pitem, 1, grams, None, price, div_half_up(price * grams, 1000)))
            else:
                basket.append(BasketLine(n, pitem, line.qty, None, None, price, price * line.qty))
    tier = Tier(str(tier_row[0]), str(tier_row[1]), str(tier_row[2]), int(tier_row[3]), int(tier_row[4])) \
        if tier_row else None
    when = datetime.datetime.fromisoformat(_instant(req.at, "at") or datetime.datetime.now(CHAIN_TZ).isoformat())
    rules = [*others, *([draft] if draft else [])]
    book = RuleBook([*rules, *tier_rules(tier)], parents)
    ctx = Context(member_id="PREVIEW" if tier or req.member_tags else None, tier=tier,
                  member_tags=tuple(req.member_tags), store_id=store or None, at=when)
    quote = price_basket(basket, ctx, book)
    out: dict[str, Any] = msgspec.to_builtins(quote)
    out["store_id"] = store or None
    out["rule_id"] = draft.rule_id if draft else None
    out["draft_applied"] = draft is not None and any(a.rule_id == draft.rule_id for ln in quote.lines
                                                     for a in ln.applied)
    return out


# -- the chain-wide report ----------------------------------------------------------------------------------------

def report(db: HqDb, principal: Principal, rule_id: str) -> dict[str, Any]:
    """Per store (those the caller sees) and in all: uses (sales the rule gave something in), discount given,
    covered sales (the totals of those sales) and lines."""
    require(principal, "reports.read")
    info = detail(db, principal, rule_id)
    with db.read() as tx:
        scope = targets.scope_of(tx, principal)
        rows = tx.all("""SELECT store_id, sum(uses), sum(discount), sum(lines), sum(covered) FROM hq_rule_days
                         WHERE rule_id = ? GROUP BY store_id ORDER BY store_id""", (rule_id,))
    stores = [{"store_id": str(r[0]), "uses": int(r[1]), "discount": int(r[2] or 0), "lines": int(r[3]),
               "covered_sales": int(r[4])} for r in rows if scope is None or str(r[0]) in scope]
    return {"rule_id": rule_id, "name": info["rule"]["name"], "name_en": info["rule"]["name_en"],
            "state": info["state"], "stores": stores,
            "uses": sum(s["uses"] for s in stores), "discount": sum(s["discount"] for s in stores),
            "covered_sales": sum(s["covered_sales"] for s in stores), "lines": sum(s["lines"] for s in stores)}
