"""Tiers as rules and automatic tags at HQ, chain-wide (docs/members.md): the definitions, each member's
figures and purchase history from `hq_sales` / `hq_returns`, and the same pure evaluators a standalone
hub runs (edge/members/tiering.py, tagging.py).

- After each batch, the members whose sales or returns it carried are reviewed: an upgrade applies
  as soon as the figures cross a threshold.
- The daily pass reviews every member (downgrades due on their review date) and recomputes the
  automatic tags.
Every change travels down the feed to every store as a `MembersPut` member row (tier, auto tags),
and each tier change is recorded in `hq_member_tier_changes` (member_id, from_tier, to_tier, at, reason).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from edge.members.tagging import DEFAULT_RULES, History, Spend, TagRule, auto_tags, history_days, tag_rule_decoder
from edge.members.tagging import check_rules as check_tag_rules
from edge.members.tiering import (
    DEFAULT_REVIEW_MONTHS,
    DEFAULT_WINDOW_MONTHS,
    Figures,
    TierChange,
    TierDef,
    TierSettings,
    check_settings,
    evaluate,
    window_start,
)
from hq_sync.server.service import pii
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import MemberRow, MembersPut, OutRow, TierRow

CHUNK = 500
_encoder = msgspec.json.Encoder()


def chain_today() -> datetime.date:
    """The chain's date: stores date their sales in their own zone (hub default Asia/Shanghai), so HQ
    counts days in the chain's zone too (`BACKROOM_HQ_TIMEZONE`), not in the server's."""
    name = os.environ.get("BACKROOM_HQ_TIMEZONE", "Asia/Shanghai")
    try:
        zone: datetime.tzinfo = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = datetime.timezone(datetime.timedelta(hours=8))
    return datetime.datetime.now(zone).date()


class PassResult(msgspec.Struct, frozen=True):
    members: int = 0
    tier_changes: int = 0
    tags_changed: int = 0
    feed_seqs: list[int] = []


# -- definitions ------------------------------------------------------------------------------------------------

def _meta(tx: Tx, key: str, default: int) -> int:
    row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (key,))
    return int(row[0]) if row else default


def read_settings(tx: Tx) -> TierSettings:
    """Every tier with its rule; a tier without a rule row is a points rule at its `min_points`, ranked by it."""
    rows = tx.all("""SELECT t.tier, t.name_zh, t.name_en, t.discount_bp, t.points_multiplier_pct, t.min_points,
                            r.tier_rank, r.metric, r.threshold
                     FROM hq_tiers t LEFT JOIN hq_tier_rules r ON r.tier = t.tier ORDER BY t.min_points, t.tier""")
    tiers = [TierDef(tier=r[0], name_zh=r[1], name_en=r[2], discount_bp=int(r[3]), points_multiplier_pct=int(r[4]),
                     rank=int(r[6]) if r[6] is not None else n, metric=r[7] or "points",
                     threshold=int(r[8]) if r[8] is not None else int(r[5]))
             for n, r in enumerate(rows)]
    return TierSettings(tiers=sorted(tiers, key=lambda t: (t.rank, t.tier)),
                        window_months=_meta(tx, "tier_window_months", DEFAULT_WINDOW_MONTHS),
                        review_months=_meta(tx, "tier_review_months", DEFAULT_REVIEW_MONTHS))


def tier_rows(tx: Tx) -> list[TierRow]:
    """The tiers as the feed carries them (benefits and rule)."""
    return [TierRow(t.tier, t.name_zh, t.name_en, t.discount_bp, t.points_multiplier_pct,
                    t.threshold if t.metric == "points" else 0, t.rank, t.metric, t.threshold)
            for t in read_settings(tx).tiers]


def put_settings(db: HqDb, principal: Principal, private_key: bytes, settings: TierSettings, at: str) -> int:
    """Replace the tier definitions (refused 422 if unusable) and send them to every store; returns the feed seq."""
    require(principal, "members.rules")
    with db.write() as tx:
        before = read_settings(tx)
        problem = check_settings(settings, [str(r[0]) for r in tx.all("SELECT tier FROM hq_tiers")])
        if problem is not None:
            raise HqError(422, "bad_tiers", problem)
        tx.many("""INSERT INTO hq_tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tier) DO UPDATE SET name_zh = excluded.name_zh,
                   name_en = excluded.name_en, discount_bp = excluded.discount_bp,
                   points_multiplier_pct = excluded.points_multiplier_pct, min_points = excluded.min_points""",
                [(t.tier, t.name_zh, t.name_en, t.discount_bp, t.points_multiplier_pct,
                  t.threshold if t.metric == "points" else 0) for t in settings.tiers])
        tx.many("""INSERT INTO hq_tier_rules (tier, tier_rank, metric, threshold) VALUES (?, ?, ?, ?)
                   ON CONFLICT (tier) DO UPDATE SET tier_rank = excluded.tier_rank, metric = excluded.metric,
                   threshold = excluded.threshold""",
                [(t.tier, t.rank, t.metric, t.threshold) for t in settings.tiers])
        tx.many("""INSERT INTO hq_meta (key, value) VALUES (?, ?)
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                [("tier_window_months", str(settings.window_months)),
                 ("tier_review_months", str(settings.review_months))])
        audit(tx, principal, "tiers.put", "tiers", before, settings, at=at)
        return append_feed(tx, private_key, "*", MembersPut(tiers=tier_rows(tx)), at)


def read_tag_rules(tx: Tx) -> list[TagRule]:
    """The stored rules, or the defaults while none were ever set."""
    if tx.one("SELECT 1 FROM hq_meta WHERE key = 'tag_rules_set'") is None:
        return list(DEFAULT_RULES)
    return [tag_rule_decoder.decode(r[0]) for r in tx.all("SELECT rule FROM hq_tag_rules ORDER BY position")]


def put_tag_rules(db: HqDb, principal: Principal, rules: Sequence[TagRule], at: str) -> None:
    require(principal, "members.rules")
    problem = check_tag_rules(rules)
    if problem is not None:
        raise HqError(422, "bad_tag_rules", problem)
    with db.write() as tx:
        audit(tx, principal, "tag_rules.put", "tag_rules", read_tag_rules(tx), list(rules), at=at)
        tx.run("DELETE FROM hq_tag_rules")
        tx.many("INSERT INTO hq_tag_rules (name, position, rule) VALUES (?, ?, ?)",
                [(r.name, n, _encoder.encode(r).decode()) for n, r in enumerate(rules)])
        tx.run("INSERT INTO hq_meta (key, value) VALUES ('tag_rules_set', '1') ON CONFLICT (key) DO NOTHING")


# -- figures and histories --------------------------------------------------------------------------------------

def _marks(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def figures(tx: Tx, member_ids: Sequence[str], today: datetime.date, window_months: int) -> dict[str, Figures]:
    """Chain-wide spend (sales less refunds), points earned (less reversed) and visits over the window."""
    start, end = window_start(today, window_months).isoformat(), today.isoformat()
    out: dict[str, list[int]] = {}
    for member_id, spend, points, visits in tx.all(
            f"""SELECT member_id, sum(total), sum(points_earned), count(*) FROM hq_sales
                WHERE member_id IN ({_marks(member_ids)}) AND day >= ? AND day <= ? GROUP BY member_id""",
            [*member_ids, start, end]):
        out[str(member_id)] = [int(spend), int(points), int(visits)]
    for member_id, refunded, reversed_ in tx.all(
            f"""SELECT member_id, sum(refund_total), sum(points_reversed) FROM hq_returns
                WHERE member_id IN ({_marks(member_ids)}) AND day >= ? AND day <= ? GROUP BY member_id""",
            [*member_ids, start, end]):
        cell = out.setdefault(str(member_id), [0, 0, 0])
        cell[0] -= int(refunded)
        cell[1] -= int(reversed_)
    return {m: Figures(spend=max(v[0], 0), points=max(v[1], 0), visits=v[2]) for m, v in out.items()}


def _day(text: object) -> datetime.date | None:
    if not text:
        return None
    try:
        return datetime.date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def histories(tx: Tx, member_ids: Sequence[str], today: datetime.date, days: int) -> dict[str, History]:
    start = (today - datetime.timedelta(days=days)).isoformat() if days else "9999"
    end = today.isoformat()
    marks = _marks(member_ids)
    tickets: dict[str, list[datetime.date]] = {}
    for member_id, day in tx.all(f"""SELECT member_id, day FROM hq_sales
                                     WHERE member_id IN ({marks}) AND day > ? AND day <= ?""",
                                 [*member_ids, start, end]):
        tickets.setdefault(str(member_id), []).append(datetime.date.fromisoformat(str(day)))
    spend: dict[str, list[Spend]] = {}
    for member_id, day, category, net, discounted in tx.all(
            f"""SELECT s.member_id, s.day, coalesce(i.category_id, ''), sum(l.net),
                       sum(CASE WHEN l.discount > 0 THEN l.net ELSE 0 END)
                FROM hq_sales s JOIN hq_sale_lines l
                  ON l.store_id = s.store_id AND l.sale_id = s.sale_id AND l.day = s.day
                LEFT JOIN hq_items i ON i.sku = l.sku
                WHERE s.member_id IN ({marks}) AND s.day > ? AND s.day <= ?
                GROUP BY s.member_id, s.day, i.category_id""", [*member_ids, start, end]):
        spend.setdefault(str(member_id), []).append(
            Spend(datetime.date.fromisoformat(str(day)), str(category), int(net), int(discounted)))
    last = {str(m): _day(d) for m, d in tx.all(
        f"SELECT member_id, max(day) FROM hq_sales WHERE member_id IN ({marks}) GROUP BY member_id", list(member_ids))}
    return {str(m): History(joined_on=_day(created) or today, birthday=_day(pii.opened(tx, str(m), blob).birthday),
                            tickets=tickets.get(str(m), []), spend=spend.get(str(m), []),
                            last_purchase_on=last.get(str(m)))
            for m, created, blob in tx.all(
                f"SELECT member_id, created_at, pii FROM hq_members WHERE member_id IN ({marks})",
                list(member_ids))}


# -- reviews ------------------------------------------------------------------------------------------------------

def member_rows(tx: Tx, member_ids: Sequence[str]) -> list[MemberRow]:
    """Member rows as the feed carries them, with their automatic tags."""
    return [MemberRow(r[0], r[1], (p := pii.opened(tx, str(r[0]), r[2])).phone, p.card_no, p.name, p.birthday,
                      msgspec.json.decode(r[6], type=list[str]), r[7], r[8],
                      msgspec.json.decode(r[9] or "[]", type=list[str]))
            for r in tx.all(f"""SELECT m.member_id, m.tier, m.pii, NULL, NULL, NULL, m.tags,
                                       m.home_store, m.created_at, s.auto_tags
                                FROM hq_members m LEFT JOIN hq_member_status s ON s.member_id = m.member_id
                                WHERE m.member_id IN ({_marks(member_ids)}) ORDER BY m.member_id""",
                            list(member_ids))]


def review_chunk(tx: Tx, private_key: bytes, member_ids: Sequence[str], today: datetime.date, at: str, *,
                 tags: bool) -> tuple[int, int, int | None]:
    """Review these members' tiers (and, with `tags`, recompute their automatic tags) in this
    transaction; changed members go down the feed. Returns (tier changes, tag changes, feed seq)."""
    if not member_ids:
        return 0, 0, None
    tx.lock("hq_members", "member_id", sorted(member_ids))
    settings = read_settings(tx)
    rules = [t.rule for t in settings.tiers]
    figs = figures(tx, member_ids, today, settings.window_months)
    status = {str(r[0]): (r[1], r[2]) for r in tx.all(
        f"SELECT member_id, tier_review_on, auto_tags FROM hq_member_status WHERE member_id IN ({_marks(member_ids)})",
        list(member_ids))}
    tag_rules = read_tag_rules(tx) if tags else []
    found = histories(tx, member_ids, today, history_days(tag_rules)) if tags else {}
    changed: set[str] = set()
    tier_changes = tag_changes = 0
    for member_id, tier in tx.all(f"SELECT member_id, tier FROM hq_members WHERE member_id IN ({_marks(member_ids)})",
                                  list(member_ids)):
        member_id = str(member_id)
        review_text, tags_text = status.get(member_id, (None, "[]"))
        review_on = _day(review_text)
        new_tags_text = tags_text
        if tags and member_id in found:
            new_tags_text = _encoder.encode(auto_tags(tag_rules, found[member_id], today)).decode()
        decision = evaluate(rules, figs.get(member_id, Figures()), str(tier), review_on, today,
                            settings.review_months) if rules else None
        new_review = decision.review_on.isoformat() if decision else review_text
        if decision is not None and decision.changed:
            tx.run("UPDATE hq_members SET tier = ? WHERE member_id = ?", (decision.tier, member_id))
            tx.run("""INSERT INTO hq_member_tier_changes (member_id, from_tier, to_tier, at, reason)
                      VALUES (?, ?, ?, ?, ?)""", (member_id, decision.from_tier, decision.tier, at, decision.reason))
            tier_changes += 1
            changed.add(member_id)
        if new_tags_text != (tags_text or "[]"):
            tag_changes += 1
            changed.add(member_id)
        if new_review != review_text or new_tags_text != tags_text or member_id not in status:
            tx.run("""INSERT INTO hq_member_status (member_id, tier_review_on, auto_tags) VALUES (?, ?, ?)
                      ON CONFLICT (member_id) DO UPDATE SET tier_review_on = excluded.tier_review_on,
                      auto_tags = excluded.auto_tags""", (member_id, new_review, new_tags_text))
    seq = append_feed(tx, private_key, "*", MembersPut(members=member_rows(tx, sorted(changed))), at) \
        if changed else None
    return tier_changes, tag_changes, seq


class _Who(msgspec.Struct):
    """A sale's or return's payload read for its member only (its other fields skipped, not built)."""

    type: str = ""  # the delta's tag
    member_id: str | None = None


_who_decoder = msgspec.msgpack.Decoder(_Who)


def members_of_batch(rows: Sequence[OutRow]) -> list[str]:
    """Members whose figures a batch's sales and returns moved."""
    ids: set[str] = set()
    for row in rows:
        if row.kind not in ("sale", "return"):
            continue
        try:
            who = _who_decoder.decode(row.payload)
        except msgspec.DecodeError:
            continue
        if who.type == row.kind and who.member_id:
            ids.add(who.member_id)
    return sorted(ids)


def after_batch(db: HqDb, private_key: bytes, member_ids: Sequence[str], today: datetime.date, at: str) -> int:
    """Upgrades (and due downgrades) of the members a batch touched; returns the tier changes."""
    total = 0
    for i in range(0, len(member_ids), CHUNK):
        with db.write() as tx:
            known = [str(r[0]) for r in tx.all(
                f"SELECT member_id FROM hq_members WHERE member_id IN ({_marks(member_ids[i:i + CHUNK])})",
                list(member_ids[i:i + CHUNK]))]
            total += review_chunk(tx, private_key, known, today, at, tags=False)[0]
    return total


def daily_pass(db: HqDb, private_key: bytes, today: datetime.date, at: str) -> PassResult:
    """Every member: tier review and automatic tags, a chunk of members per transaction."""
    with db.read() as tx:
        ids = [str(r[0]) for r in tx.all("SELECT member_id FROM hq_members ORDER BY member_id")]
    tiers = tags = 0
    seqs: list[int] = []
    for i in range(0, len(ids), CHUNK):
        with db.write() as tx:
            t, g, seq = review_chunk(tx, private_key, ids[i:i + CHUNK], today, at, tags=True)
        tiers, tags = tiers + t, tags + g
        if seq is not None:
            seqs.append(seq)
    return PassResult(members=len(ids), tier_changes=tiers, tags_changed=tags, feed_seqs=seqs)


def daily_pass_once(db: HqDb, private_key: bytes, today: datetime.date, at: str) -> PassResult | None:
    """The daily pass, unless today's already ran (`hq_meta` member_pass_day); None when skipped."""
    with db.read() as tx:
        row = tx.one("SELECT value FROM hq_meta WHERE key = 'member_pass_day'")
    if row is not None and str(row[0]) >= today.isoformat():
        return None
    done = daily_pass(db, private_key, today, at)
    with db.write() as tx:
        tx.run("""INSERT INTO hq_meta (key, value) VALUES ('member_pass_day', ?)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (today.isoformat(),))
    return done


def tier_changes(db: HqDb, *, member_id: str | None = None, after: int = 0, limit: int = 1000) -> list[TierChange]:
    """Recorded tier changes after `change_id` `after`, oldest first (of one member, or all): what a
    tier-up campaign reads."""
    sql = "SELECT change_id, member_id, from_tier, to_tier, at, reason FROM hq_member_tier_changes WHERE change_id > ?"
    args: list[object] = [after]
    if member_id is not None:
        sql += " AND member_id = ?"
        args.append(member_id)
    with db.read() as tx:
        rows = tx.all(sql + " ORDER BY change_id LIMIT ?", [*args, limit])
    return [TierChange(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5])) for r in rows]
