"""What every handler shares: strict body decoding, the caller's identity, JSON responses."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edge.auth.roles import allowed
from edge.auth.tokens import Claims, TokenError, verify
from edge.errors import ApiError
from edge.stock.ledger import Actor

T = TypeVar("T")


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[Any]) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


async def decode_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """Decode the JSON body strictly (no "5" for 5); any mismatch is a 400 naming the field."""
    return decode_bytes(await request.body(), type_)


def decode_bytes(body: bytes, type_: type[T]) -> T:
    """`decode_body` of a body already read (the sale fast path, edge/api/sale_fast_path.py)."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request needs a JSON body")
    try:
        return _decoder(type_).decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_field", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None


def claims_of(request: Request[Any, Any, Any]) -> Claims:
    claims = request.scope.get("user")
    assert isinstance(claims, Claims), "route is missing its permission guard"
    return claims


def actor_of(request: Request[Any, Any, Any], till_id: str | None = None) -> Actor:
    """Who writes, and at which till. A PIN login is bound to its till: its writes cannot be booked
    to another till's drawer. A password login (manager, tablet) names the till per request."""
    return actor_for(claims_of(request), till_id)


def actor_for(claims: Claims, till_id: str | None = None) -> Actor:
    """`actor_of` from the verified claims themselves."""
    if claims.till_id is not None and till_id is not None and till_id != claims.till_id:
        raise ApiError(403, "till_mismatch", f"logged in at till {claims.till_id}, not {till_id[:64]}")
    return Actor(user_id=claims.user_id, till_id=till_id or claims.till_id)


def may(request: Request[Any, Any, Any], permission: str) -> bool:
    return allowed(claims_of(request).role, permission)


async def permission_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every /api/v1 route names its permission in `opt`; the table in permissions.toml decides.

    Async on purpose: Litestar runs a sync guard on a worker thread, a hop that cost a quarter of
    a lookup's CPU; checking an HMAC and a dict needs no thread."""
    permission = handler.opt.get("permission")
    if permission is None:
        return  # public route (login, health)
    claims = bearer_claims(connection.app.state.hub, connection.headers.get("authorization", ""))
    connection.scope["user"] = claims
    if not allowed(claims.role, permission):
        raise ApiError(403, "forbidden", f"role {claims.role} may not {permission}")


def bearer_claims(hub: Any, header: str) -> Claims:
    """The verified claims of an `Authorization: Bearer` header, or the 401 that refuses it."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token> from /api/v1/auth/login")
    try:
        claims = verify(hub.key, token.strip())
    except TokenError as exc:
        code = "token_expired" if "expired" in str(exc) else "invalid_token"
        raise ApiError(401, code, str(exc)) from None
    if hub.token_revoked(claims):
        raise ApiError(401, "token_revoked", "this login ended when the account changed; log in again")
    return claims


def raw_json(body: bytes, status: int = 200) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type="application/json")
