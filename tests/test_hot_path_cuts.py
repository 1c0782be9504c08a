"""The third round's cuts on the sale's path (docs/performance.md) keep behaviour: a remembered token
is still refused once expired, tampered with or signed with another key; price-list times are the
same text as strftime wrote."""

from __future__ import annotations

import datetime
import random
import time

import pytest

from edge.auth import tokens
from edge.auth.tokens import Claims, TokenError, issue, verify
from edge.pricing.price_lists import utc_text


def test_a_verified_token_is_remembered_but_still_expires_and_a_forgery_is_still_refused() -> None:
    key, other = b"k" * 32, b"o" * 32
    expires = int(time.time()) + 60
    token = issue(key, Claims("u1", "cashier", "cashier", "T1", expires))
    assert verify(key, token).user_id == "u1"
    assert (key, token) in tokens._verified
    assert verify(key, token).user_id == "u1"  # from memory
    with pytest.raises(TokenError, match="expired"):
        verify(key, token, now=expires)
    with pytest.raises(TokenError, match="signature"):
        verify(other, token)  # a rotated key: checked afresh
    sig = token.split(".")[1]
    forged = issue(key, Claims("u1", "cashier", "manager", "T1", expires)).split(".")[0] + "." + sig
    with pytest.raises(TokenError, match="signature"):
        verify(key, forged)
    assert (key, forged) not in tokens._verified and (other, token) not in tokens._verified
    with pytest.raises(TokenError, match="malformed"):
        verify(key, "not-a-token")


def test_the_remembered_tokens_are_bounded() -> None:
    key = b"b" * 32
    expires = int(time.time()) + 60
    for n in range(tokens._VERIFIED_MAX + 10):
        verify(key, issue(key, Claims(f"u{n}", "cashier", "cashier", None, expires)))
    assert len(tokens._verified) <= tokens._VERIFIED_MAX


def test_utc_text_is_the_strftime_text() -> None:
    rng = random.Random(13)
    east8 = datetime.timezone(datetime.timedelta(hours=8))
    for _ in range(5_000):
        at = datetime.datetime(rng.randint(1, 9998), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                               rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999_999)]),
                               tzinfo=rng.choice([east8, datetime.UTC]))
        try:
            expected = at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except OverflowError:
            continue
        assert utc_text(at) == expected, at
