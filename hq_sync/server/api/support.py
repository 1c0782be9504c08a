"""What every HQ endpoint shares: JSON answers, admin tokens, store signatures, strict body decoding."""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
from litestar import Request, Response

from hq_sync.server.api.resources import Hq
from hq_sync.server.service import auth
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.errors import HqError
from hq_sync.wire import REQUEST_SKEW_S, request_message, unb64, verify

_json = msgspec.json.Encoder()
MSGPACK = "application/msgpack"


def hq_of(request: Request[Any, Any, Any]) -> Hq:
    return request.app.state.hq  # type: ignore[no-any-return]


def json_response(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def bearer_principal(request: Request[Any, Any, Any]) -> Principal:
    """The user whose bearer token the request carries (401 without a live one)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise HqError(401, "unauthenticated", "Authorization: Bearer <token> from POST /hq/v1/auth/login")
    principal = auth.principal_for_token(hq_of(request).db, header[7:].strip())
    if principal is None:
        raise HqError(401, "unauthenticated", "token unknown, expired or ended")
    return principal


def acting(request: Request[Any, Any, Any], permission: str) -> Principal:
    """The caller, if his role holds `permission` (permissions.toml); 403 `forbidden` otherwise. The
    service function he calls checks it again and narrows to his regions."""
    principal = bearer_principal(request)
    require(principal, permission)
    return principal


def require_admin(request: Request[Any, Any, Any]) -> str:
    """The caller's name, for an endpoint only an HQ admin may use."""
    principal = bearer_principal(request)
    if principal.role != "hq_admin":
        raise HqError(403, "forbidden", "HQ admins only")
    return principal.username


async def signed_store(request: Request[Any, Any, Any], body: bytes) -> str:
    """The store whose key signed this request, or 401. A key this worker has not cached (a store paired
    since it started) is read on a thread (`Hq.key_of`): never on the event loop, where a read waiting for a
    pooled connection held every other request (`bench chain --phases` found the loop stalled there)."""
    store_id = request.headers.get("x-backroom-store", "")
    try:
        at = int(request.headers.get("x-backroom-time", ""))
        signature = unb64(request.headers.get("x-backroom-signature", ""))
    except ValueError:
        raise HqError(401, "unsigned", "store requests carry X-Backroom-Store, -Time and -Signature") from None
    if abs(time.time() - at) > REQUEST_SKEW_S:
        raise HqError(401, "stale_request", "the request's time is too far from HQ's clock")
    key = await hq_of(request).key_of(store_id)
    if key is None:
        raise HqError(401, "not_paired", f"store {store_id[:64]} is not paired")
    query = request.scope.get("query_string", b"").decode()
    target = request.scope["path"] + (f"?{query}" if query else "")
    if not verify(key, signature, request_message(request.method, target, at, body)):
        raise HqError(401, "bad_signature", "the request is not signed by this store's key")
    return store_id


async def decode(request: Request[Any, Any, Any], type_: type[Any]) -> Any:
    return decode_bytes(await request.body(), type_)


def decode_bytes(body: bytes, type_: type[Any]) -> Any:
    """Strict JSON into `type_`; a mismatch is a 400 naming the field (bodies a store signed are
    read as bytes first, to check the signature over exactly them)."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise HqError(400, "invalid_field", str(exc)) from None


def in_thread(fn: Any, *args: Any) -> Any:
    return anyio.to_thread.run_sync(fn, *args)


