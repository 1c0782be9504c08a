"""Referrals as pure functions, the same at HQ and at a standalone hub (docs/members.md "Referrals").

- Every member has a referral code: 8 characters of an alphabet without look-alikes (no 0/O, 1/I/L),
  derived from the member id, so a hub and HQ name the same code without asking each other. Where a
  code is already taken (about one member in 10^6 in a chain of a million), the next variant is used.
- A referral B→A (B was referred by A) is refused when A is B (`self_referral`) or when B is already
  above A (`referral_cycle`): the referral graph stays a forest.
- B's first purchase rewards A (level 1) and, up to `max_depth`, the members above A: level 1 gets
  the configured points (or a coupon), each further level `share_bp` of the level below's points.
- The reward stands while the purchase keeps `min_purchase` fen net of returns; below that it is
  reversed: points are taken back as far as the beneficiary has them, the rest is a recorded shortfall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from edge.engage.policy import ReferralPolicy

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols: no 0, 1, O, I, L
CODE_LENGTH = 8
MAX_WALK = 64  # an upline longer than this is treated as a cycle (it cannot be built by these rules)


class Reward(msgspec.Struct, frozen=True):
    level: int  # 1 = B's referrer
    beneficiary: str
    kind: str  # "points" or "coupon"
    points: int = 0
    coupon_rule_id: str = ""


def code_for(member_id: str, variant: int = 0) -> str:
    """The member's referral code (variant n > 0 when the plain one is taken where it is assigned)."""
    seed = member_id if variant == 0 else f"{member_id}#{variant}"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def normalise_code(text: str) -> str:
    """What a customer typed: case, spaces and dashes do not matter."""
    return "".join(ch for ch in text.upper() if ch not in " -")[:16]


def upline(member_id: str, referrer_of: Callable[[str], str | None], limit: int = MAX_WALK) -> list[str]:
    """The members above `member_id`, nearest first, at most `limit` of them."""
    out: list[str] = []
    current = referrer_of(member_id)
    while current is not None and len(out) < limit:
        out.append(current)
        if current == member_id or current in out[:-1]:
            break
        current = referrer_of(current)
    return out


def refusal(member_id: str, referrer_id: str, referrer_of: Callable[[str], str | None]) -> str | None:
    """Why B (`member_id`) may not name A (`referrer_id`) as referrer, or None."""
    if member_id == referrer_id:
        return "self_referral"
    above = upline(referrer_id, referrer_of)
    if member_id in above or len(above) >= MAX_WALK:
        return "referral_cycle"
    return None


def first_purchase_rewards(policy: ReferralPolicy, above: list[str], sale_total: int) -> list[Reward]:
    """What B's first purchase of `sale_total` gives the members `above` B (nearest first)."""
    if not policy.enabled or sale_total < policy.min_purchase:
        return []
    out: list[Reward] = []
    points = policy.points
    for level, beneficiary in enumerate(above[:policy.max_depth], start=1):
        if level == 1 and policy.reward == "coupon":
            out.append(Reward(level, beneficiary, "coupon", coupon_rule_id=policy.coupon_rule_id))
        elif points > 0:
            out.append(Reward(level, beneficiary, "points", points=points))
        points = points * policy.share_bp // 10_000
    return out


def keeps_reward(policy: ReferralPolicy, sale_total: int, refunded: int) -> bool:
    """Does the rewarding purchase still qualify after `refunded` fen of it came back?"""
    return sale_total - refunded >= policy.min_purchase


def take_back(granted: int, available: int) -> tuple[int, int]:
    """(taken, shortfall) when `granted` points are reversed and the beneficiary has `available`."""
    taken = max(0, min(granted, available))
    return taken, granted - taken
