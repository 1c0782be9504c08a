"""POST /api/v1/sales below Litestar: the till's hot request without routing, dependency injection,
guard dispatch and response objects (docs/performance.md: a trivial authenticated request cost the
hub about 0.3 ms of CPU, most of it the framework's).

`SaleFastPath` wraps the Litestar app as plain ASGI. It answers a request itself only when it is
`POST /api/v1/sales` with a valid bearer token that holds `sales.create` and a declared
Content-Length within the hub's body limit; everything else, including every refusal of the caller
(401, 403, 413), goes to Litestar unread, so those answers stay exactly Litestar's. The sale itself
is `edge.api.routes.sell`, the same code the Litestar route runs; its refusals are answered with the
same `{"code", "message", ...}` bodies as the app's exception handlers (edge/app.py). The route
stays registered in Litestar (OpenAPI, and any request the fast path passes on).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from edge.api.routes import sell
from edge.api.support import bearer_claims
from edge.auth.roles import allowed
from edge.auth.tokens import Claims
from edge.errors import ApiError, unexpected

log = logging.getLogger("edge.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/api/v1/sales"
PERMISSION = "sales.create"
_encode = msgspec.json.encode


class SaleFastPath:
    """ASGI: sales here, the rest to `app` (whose `state.hub` the lifespan sets)."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        claims, length = self._admit(scope)
        if claims is None or length is None:
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        try:
            body, more = await _read(receive, length)
        except _Gone:
            return None
        if more is not None:  # more (or less) than declared: Litestar answers it, from the replayed body
            return await self.app(scope, _replay(body, more, receive), send)  # type: ignore[no-any-return]
        status = 201
        try:
            out = await sell(self.app.state, self.app.state.hub, claims, body)
        except ApiError as exc:
            status, out = exc.status, _encode(exc.body())
        except Exception as exc:  # noqa: BLE001 -- as edge/app.py's handler: 507 when the disk refused, else 500
            error = unexpected(exc, f"POST {PATH}", log)
            status, out = error.status, _encode(error.body())
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        return None

    def _admit(self, scope: Scope) -> tuple[Claims | None, int | None]:
        """(claims, declared length) of a request the fast path may answer; (None, ...) otherwise."""
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None, None
        if authorization is None or length is None:
            return None, None
        try:
            size = int(length)
            claims = bearer_claims(self.app.state.hub, authorization.decode("latin-1"))
        except (ValueError, ApiError):
            return None, None
        if not 0 <= size <= self.max_body or not allowed(claims.role, PERMISSION):
            return None, None
        return claims, size


async def _read(receive: Receive, length: int) -> tuple[bytes, bool | None]:
    """(body, None) when exactly `length` bytes came; else (what was read, whether more follows).
    Raises `_Gone` when the client disconnected first."""
    chunks: list[bytes] = []
    got = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Gone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        got += len(chunk)
        more = bool(message.get("more_body", False))
        if got > length or not more:
            body = b"".join(chunks)
            return (body, None) if got == length and not more else (body, more)


class _Gone(Exception):
    """The client disconnected before its body was read: nobody to answer."""


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then the rest from the real channel."""
    first: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]

    async def replay() -> Message:
        return first.pop() if first else await receive()

    return replay
