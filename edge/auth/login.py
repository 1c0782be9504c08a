"""Logging in: one check of a password or a till PIN, shared by the till API and the tablet UI."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta

from edge.auth.passwords import verify_secret
from edge.auth.tokens import Claims, issue
from edge.errors import ApiError

if TYPE_CHECKING:
    from edge.hub import Hub


class LoginRequest(msgspec.Struct, frozen=True):
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(max_length=256)] | None = None
    pin: Annotated[str, Meta(pattern=r"^[0-9]{4,8}$")] | None = None
    till_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class LoginResult(msgspec.Struct):
    token: str
    role: str
    expires_at: str
    user_id: str
    display_name: str
    till_id: str | None


def authenticate(hub: Hub, req: LoginRequest) -> LoginResult:
    """A password login, or a PIN login bound to a till; failed attempts count toward a lockout."""
    if (req.password is None) == (req.pin is None):
        raise ApiError(400, "invalid_login", "send either a password, or a pin with a till_id")
    if req.pin is not None and req.till_id is None:
        raise ApiError(400, "till_required", "a PIN login is made at a till: send till_id")
    if hub.throttle.locked(req.username):
        raise ApiError(429, "locked_out", "too many failed logins; try again in a few minutes")
    row = hub.db.reader().execute(
        "SELECT user_id, role, display_name, password_hash, pin_hash, tokens_after FROM users"
        " WHERE username = ? AND active = 1",
        (req.username,),
    ).fetchone()
    stored = None if row is None else (row["password_hash"] if req.password is not None else row["pin_hash"])
    secret = req.password if req.password is not None else req.pin
    assert secret is not None
    if row is None or not verify_secret(secret, stored):
        hub.throttle.failed(req.username)
        raise ApiError(401, "bad_credentials", "unknown user or wrong password/PIN")
    hub.throttle.succeeded(req.username)
    # Issued no earlier than the account's token cut-off: a login in the same second as a PIN reset holds.
    issued = max(int(time.time()), row["tokens_after"] or 0)
    expires = issued + hub.config.token_ttl_s
    claims = Claims(row["user_id"], req.username, row["role"], req.till_id, expires)
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires))
    return LoginResult(token=issue(hub.key, claims), role=row["role"], expires_at=expires_at,
                       user_id=row["user_id"], display_name=row["display_name"], till_id=req.till_id)
