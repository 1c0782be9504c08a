"""Campaign generation as one pure function, the same at HQ and at a standalone hub.

`generate(today, policy, ...)` turns facts about members into notices. Each notice has a key
(member, campaign, period) that makes a rerun generate nothing new: the outbox holds that key once
per channel. Periods:

| campaign | who | period (the key) |
|---|---|---|
| `birthday` | birthday in this month | the month, `YYYY-MM`; with a real coupon valid to the month's end |
| `dormant` | no purchase (or sign-up) for `dormant_days` | the last active day: once per dormant spell |
| `tier_up` | moved to a higher tier within `tier_up_lookback_days` | the tier and the time of the change |
| `coupon_expiry` | an unused coupon of theirs expires within `expiry_days` | the coupon code |

Payloads carry texts in zh-CN and English and ids (coupon code, tiers): never a name, phone or birthday.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

import msgspec

from edge.engage.policy import CampaignPolicy

CAMPAIGNS = ("birthday", "dormant", "tier_up", "coupon_expiry")


class MemberFacts(msgspec.Struct, frozen=True):
    member_id: str
    birth_month: int | None  # 1-12, from the (protected) birthday; None: unknown
    last_active_day: str  # YYYY-MM-DD of the last purchase, else of the sign-up


class TierChange(msgspec.Struct, frozen=True):
    member_id: str
    from_tier: str
    to_tier: str
    at: str  # RFC 3339
    up: bool  # to a higher tier (rank by the tiers' thresholds)


class ExpiringCoupon(msgspec.Struct, frozen=True):
    code: str
    member_id: str
    expires_at: str  # RFC 3339


class CouponSpec(msgspec.Struct, frozen=True):
    """A coupon the notice brings (created with it, in the same transaction)."""

    code: str
    rule_id: str
    member_id: str
    starts_at: str
    expires_at: str


class Notice(msgspec.Struct, frozen=True):
    member_id: str
    campaign: str
    period: str
    payload: dict[str, str]
    coupon: CouponSpec | None = None


def month_end(day: datetime.date) -> datetime.date:
    first_next = datetime.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return first_next - datetime.timedelta(days=1)


def birthday_code(member_id: str, month: str) -> str:
    return f"BDAY-{month.replace('-', '')}-{member_id}"[:64]


def generate(today: datetime.date, policy: CampaignPolicy, members: Iterable[MemberFacts],
             tier_changes: Iterable[TierChange], coupons: Iterable[ExpiringCoupon], offset: str = "+08:00",
             tier_names: dict[str, tuple[str, str]] | None = None) -> list[Notice]:
    """Every notice due on `today` (store-local date; `offset` is the local UTC offset for coupon times)."""
    out: list[Notice] = []
    month = today.isoformat()[:7]
    dormant_before = (today - datetime.timedelta(days=policy.dormant_days)).isoformat()
    for m in members:
        if policy.birthday and m.birth_month == today.month:
            start = datetime.date(today.year, today.month, 1)
            end = month_end(today) + datetime.timedelta(days=1)
            code = birthday_code(m.member_id, month)
            out.append(Notice(m.member_id, "birthday", month, {
                "title_zh": "生日快乐", "title_en": "Happy birthday",
                "body_zh": f"本月生日券 {code} 已放入您的账户，{month_end(today).isoformat()} 前有效。",
                "body_en": f"Your birthday coupon {code} is in your account, valid until {month_end(today)}.",
                "coupon_code": code},
                CouponSpec(code, policy.birthday_rule_id, m.member_id, f"{start.isoformat()}T00:00:00{offset}",
                           f"{end.isoformat()}T00:00:00{offset}")))
        if policy.dormant and m.last_active_day <= dormant_before:
            out.append(Notice(m.member_id, "dormant", m.last_active_day, {
                "title_zh": "好久不见", "title_en": "We miss you",
                "body_zh": f"您已 {policy.dormant_days} 天以上没有光临，欢迎回来看看本周优惠。",
                "body_en": f"It has been more than {policy.dormant_days} days: come back for this week's offers.",
                "since": m.last_active_day}))
    names = tier_names or {}
    oldest = (today - datetime.timedelta(days=policy.tier_up_lookback_days)).isoformat()
    for t in tier_changes:
        if policy.tier_up and t.up and oldest <= t.at[:10] <= today.isoformat():
            zh, en = names.get(t.to_tier, (t.to_tier, t.to_tier))
            out.append(Notice(t.member_id, "tier_up", f"{t.to_tier}@{t.at}", {
                "title_zh": "会员升级", "title_en": "Tier up",
                "body_zh": f"恭喜升级为{zh}！", "body_en": f"Congratulations: you are now {en}.",
                "from_tier": t.from_tier, "to_tier": t.to_tier}))
    until = (today + datetime.timedelta(days=policy.expiry_days)).isoformat()
    for c in coupons:
        if policy.coupon_expiry and today.isoformat() <= c.expires_at[:10] <= until:
            out.append(Notice(c.member_id, "coupon_expiry", c.code, {
                "title_zh": "优惠券即将过期", "title_en": "Coupon expiring",
                "body_zh": f"您的优惠券 {c.code} 将于 {c.expires_at[:10]} 过期，别忘了使用。",
                "body_en": f"Your coupon {c.code} expires on {c.expires_at[:10]}: use it before then.",
                "coupon_code": c.code, "expires_at": c.expires_at}))
    return out


def birth_month(birthday: str | None) -> int | None:
    """The month of a stored birthday (YYYY-MM-DD or --MM-DD); None for anything else."""
    if not birthday or len(birthday) < 7:
        return None
    try:
        month = int(birthday[5:7])
    except ValueError:
        return None
    return month if 1 <= month <= 12 else None
