"""What every server-rendered UI of the project shares — the store tablet (`edge/ui`) and the HQ
console (`hq_sync/server/console`): the headers each page carries (a strict Content-Security-Policy,
Server-Timing for the page benchmarks), the CSRF-checked form reader, the list-offset reader, and the
router class both are built with."""

from __future__ import annotations

import re
import time
from typing import Any

from litestar import Request, Router
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

MAX_OFFSET = 1_000_000  # no list pages this far; SQL's OFFSET must stay a 64-bit integer
_OFFSET = re.compile(r"[0-9]{1,18}")
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def page_headers(app: ASGIApp) -> ASGIApp:
    """Middleware: the CSP and friends on every answer, and `Server-Timing: app;dur=…`."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - start) * 1000
                headers = [*message.get("headers", []), *_HEADERS, (b"server-timing", f"app;dur={took:.1f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, timed)

    return middleware


def page_offset(text: str) -> int:
    """A list's offset from the query string (ASCII digits, at most MAX_OFFSET); anything else is the
    first page."""
    return min(int(text), MAX_OFFSET) if _OFFSET.fullmatch(text) else 0


class FormError(Exception):
    """A form that cannot be read (CSRF token missing or wrong)."""


async def read_form_lists(request: Request[Any, Any, Any], csrf: str) -> dict[str, list[str]]:
    """Every text value of every field of the posted form, after checking its CSRF token is `csrf`."""
    data = await request.form()
    fields = {key: [v for v in data.getall(key) if isinstance(v, str)] for key in data}
    if not csrf or fields.get("csrf", [""])[-1] != csrf:
        raise FormError("the form is stale or was not made by this server; reload the page")
    return fields


class PageRouter(Router):
    """A UI's router, built afresh for each app (`ui_router()`, `console_router()`). Litestar deep-copies
    a router it registers, since one router object may be registered on several apps; this one never is,
    so registering it skips the copy of its pages' handlers (about a twentieth of the hub's cold start,
    docs/performance.md)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> PageRouter:
        return self
