"""Who is at the tablet: the login token in an HttpOnly cookie, a CSRF token derived from it, the
language cookie, one-shot notices, and the guard every /ui page passes.

The cookie carries the same HMAC token as the till API's bearer header, so a role means the same
on both and `claims_of` works in page handlers. Pages name their permission in `opt["ui_permission"]`
(the API guard ignores them); public pages say `opt["ui_public"]`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edge.auth.roles import allowed
from edge.auth.tokens import Claims, TokenError, verify

SESSION_COOKIE = "backroom_session"
LANG_COOKIE = "backroom_lang"
FLASH_COOKIE = "backroom_flash"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """A valid session whose role may not open this page or do this."""

    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class Flash(msgspec.Struct, frozen=True):
    kind: Literal["notice", "error"]
    text: str


def page(permission: str) -> dict[str, Any]:
    """`opt` for a page or form handler that needs `permission`."""
    return {"ui_permission": permission}


PUBLIC: dict[str, Any] = {"ui_public": True}


def csrf_token(key: bytes, session_token: str) -> str:
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:32]


def session_claims(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims | None:
    token = connection.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    hub = connection.app.state.hub
    try:
        claims = verify(hub.key, token)
    except TokenError:
        return None
    return None if hub.token_revoked(claims) else claims  # deactivated, role changed or secret reset since


async def ui_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("ui_public"):
        return
    permission = handler.opt.get("ui_permission")
    assert isinstance(permission, str), f"UI route {handler} names no ui_permission"
    claims = session_claims(connection)
    if claims is None:
        raise LoginRequired(connection.url.path)
    connection.scope["user"] = claims
    if not allowed(claims.role, permission):
        raise Forbidden(permission)


def encode_flash(flash: Flash) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(flash)).decode()


def decode_flash(raw: str | None) -> Flash | None:
    if not raw:
        return None
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()), type=Flash)
    except (ValueError, msgspec.DecodeError):
        return None  # a mangled or forged notice is dropped, never shown half-read
