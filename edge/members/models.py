"""Member wire shapes."""

from __future__ import annotations

import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

Phone = Annotated[str, Meta(pattern=r"^1[3-9][0-9]{9}$")]
CardNo = Annotated[str, Meta(pattern=r"^[0-9A-Za-z]{4,32}$")]
Tag = Annotated[str, Meta(min_length=1, max_length=32)]


class CreateMemberRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    phone: Phone
    name: Annotated[str, Meta(max_length=64)] = ""
    member_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,40}$")] | None = None
    card_no: CardNo | None = None
    birthday: datetime.date | None = None
    tier: Annotated[str, Meta(min_length=1, max_length=32)] = "regular"
    tags: Annotated[list[Tag], Meta(max_length=20)] = []
    referral_code: Annotated[str, Meta(min_length=1, max_length=20)] | None = None  # the referrer's code


class PointsExpiring(msgspec.Struct, frozen=True):
    """The next batch of a member's points to expire: `points` left of it, gone after `expires_on`."""

    points: int
    expires_on: str


class Spendable(msgspec.Struct, frozen=True):
    """What this store may spend of a member's holdings without asking HQ (its escrow; on a standalone
    hub, everything)."""

    balance: int
    points: int


class Member(msgspec.Struct, frozen=True):
    member_id: str
    phone: str | None
    card_no: str | None
    name: str
    birthday: str | None
    tier: str
    tier_name: str
    tier_name_en: str
    tags: list[str]
    points: int
    balance: int
    created_at: str
    phone_masked: bool = False
    points_expiring: PointsExpiring | None = None  # null: nothing due to expire
    # `balance`/`points` are the chain-wide holdings as last known from HQ (`balance_as_of`; null on a
    # standalone hub, where the local ledger is all there is); `spendable_here` is this store's part.
    balance_as_of: str | None = None
    spendable_here: Spendable | None = None
    auto_tags: list[str] = []  # computed daily from purchases (docs/members.md "Tags"); `tags` are manual
    tier_review_on: str | None = None  # a downgrade waits until this day
    referral_code: str | None = None  # this member's code, to refer others
    referred_by: str | None = None  # the member who referred this one


def mask_phone(phone: str | None) -> str | None:
    """138****8000: enough for a cashier to confirm with the customer, not to copy."""
    if not phone or len(phone) < 7:
        return phone
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
