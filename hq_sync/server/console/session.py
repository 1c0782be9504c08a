"""Who is at the console: the HQ login token in an HttpOnly, SameSite=Strict cookie (its own name and
path, so a hub on the same host never sees it), a CSRF token derived from it, and the guard every
console route passes.

Routes name their permission with `opt=page("…")` (permissions.toml); public routes say `opt=PUBLIC`.
The session is looked up in `hq_tokens` on every request, so a role change or deactivation (which
deletes the user's tokens) ends it at once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edge.ui.session import Forbidden, LoginRequired
from hq_sync.server.api.resources import Hq
from hq_sync.server.service.access import Principal
from hq_sync.server.service.auth import principal_for_token

SESSION_COOKIE = "backroom_hq_session"
FLASH_COOKIE = "backroom_hq_flash"
LANG_COOKIE = "backroom_lang"  # shared with the tablet: one language choice per browser
COOKIE_PATH = "/hq"


def page(permission: str) -> dict[str, Any]:
    """`opt` for a console page or form that needs `permission`."""
    return {"hq_permission": permission}


PUBLIC: dict[str, Any] = {"hq_public": True}


def csrf_key(hq: Hq) -> bytes:
    return hashlib.sha256(b"backroom-console-csrf:" + hq.private_key).digest()


async def console_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("hq_public"):
        return
    permission = handler.opt.get("hq_permission")
    assert isinstance(permission, str), f"console route {handler} names no hq_permission"
    token = connection.cookies.get(SESSION_COOKIE, "")
    hq: Hq = connection.app.state.hq
    principal = await anyio.to_thread.run_sync(principal_for_token, hq.db, token) if token else None
    if principal is None:
        raise LoginRequired(connection.url.path)
    connection.scope["user"] = principal
    if not principal.may(permission):
        raise Forbidden(permission)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else None
