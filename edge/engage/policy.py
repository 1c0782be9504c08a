"""The engagement policy as data: referral rewards, campaign settings and channel configuration.

Kept as one JSON document (hub: `settings` key `engage_policy`; HQ: `hq_meta` key `engage_policy`),
decoded strictly so a typo fails when it is set, not when a campaign runs. docs/members.md lists the
fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Fen = Annotated[int, Meta(ge=0, le=100_000_000)]
Points = Annotated[int, Meta(ge=0, le=100_000_000)]
Days = Annotated[int, Meta(ge=1, le=3650)]
Text = Annotated[str, Meta(max_length=200)]


class ReferralPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What B's first purchase gives the members above B (A = B's referrer is level 1)."""

    enabled: bool = True
    reward: Literal["points", "coupon"] = "points"  # what level 1 gets
    points: Points = 500  # level 1's points (reward "points")
    coupon_rule_id: Annotated[str, Meta(max_length=64)] = "referral-coupon"  # reward "coupon": its promotion
    coupon_off: Fen = 1000  # the referral coupon's amount off, when HQ/the hub must create its promotion
    coupon_valid_days: Days = 30
    max_depth: Annotated[int, Meta(ge=1, le=5)] = 2  # 1: the referrer only; 2: also the referrer's referrer
    share_bp: Annotated[int, Meta(ge=0, le=10_000)] = 2000  # level n+1 gets this share of level n's points
    min_purchase: Annotated[int, Meta(ge=1, le=100_000_000)] = 1  # fen the first purchase must keep, net of returns


class CampaignPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    birthday: bool = True
    birthday_rule_id: Annotated[str, Meta(max_length=64)] = "campaign-birthday"
    birthday_off: Fen = 1000  # the birthday coupon's amount off, when its promotion must be created
    dormant: bool = True
    dormant_days: Days = 60  # no purchase (or sign-up) for this many days
    tier_up: bool = True
    tier_up_lookback_days: Days = 7  # tier changes older than this are not congratulated any more
    coupon_expiry: bool = True
    expiry_days: Days = 7  # a member's unused coupon expiring within this many days
    scheduled: bool = True  # HQ (or a standalone hub) runs them daily by itself
    schedule_hour: Annotated[int, Meta(ge=0, le=23)] = 9  # local hour from which the day's run happens
    channels: Annotated[tuple[Literal["inbox", "sms", "wechat"], ...], Meta(max_length=3)] = ("inbox", "sms", "wechat")


class SmsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An SMS gateway (e.g. Aliyun SMS behind the chain's own relay). Empty: not configured."""

    gateway_url: Text = ""
    sign_name: Text = ""
    template_id: Text = ""
    access_key_id: Text = ""
    access_key_secret: Text = ""

    def configured(self) -> bool:
        return all((self.gateway_url, self.sign_name, self.template_id, self.access_key_id, self.access_key_secret))


class WechatConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """WeChat official-account template messages. Empty: not configured."""

    app_id: Text = ""
    app_secret: Text = ""
    template_id: Text = ""
    gateway_url: Text = ""

    def configured(self) -> bool:
        return all((self.app_id, self.app_secret, self.template_id, self.gateway_url))


class EngagePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    referrals: ReferralPolicy = ReferralPolicy()
    campaigns: CampaignPolicy = CampaignPolicy()
    sms: SmsConfig = SmsConfig()
    wechat: WechatConfig = WechatConfig()


_SECRETS = ("access_key_secret", "app_secret")


def decode_policy(data: bytes | str | None) -> EngagePolicy:
    """The stored policy (defaults where nothing is stored). Raises msgspec.ValidationError on bad data."""
    if not data:
        return EngagePolicy()
    return msgspec.json.decode(data, type=EngagePolicy)


def shown(policy: EngagePolicy) -> dict[str, object]:
    """The policy as an API shows it: secrets replaced by whether they are set."""
    out = msgspec.to_builtins(policy)
    for section in ("sms", "wechat"):
        for key in _SECRETS:
            if key in out[section]:
                out[section][key] = "***" if out[section][key] else ""
    return dict(out)


def keep_secrets(new: EngagePolicy, old: EngagePolicy) -> EngagePolicy:
    """A policy sent back as `shown` gave it: a secret that reads "***" keeps the stored one."""
    sms, wechat = new.sms, new.wechat
    if sms.access_key_secret == "***":
        sms = msgspec.structs.replace(sms, access_key_secret=old.sms.access_key_secret)
    if wechat.app_secret == "***":
        wechat = msgspec.structs.replace(wechat, app_secret=old.wechat.app_secret)
    return msgspec.structs.replace(new, sms=sms, wechat=wechat)
