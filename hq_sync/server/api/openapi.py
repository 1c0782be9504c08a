"""HQ's OpenAPI document (`/schema/openapi.json`): the request bodies its handlers decode strictly, the
admin bearer token, and the store signature of the sync endpoints (edge/api/openapi.py builds it)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from edge.api.openapi import BEARER, BodyRegistry, build_on_first_use, raw_body_operation
from hq_sync.wire import AuthorizeRequest, CouponReserve, DigestReport, PairRequest, StockReport

HQ_BODIES = BodyRegistry()
with_body = HQ_BODIES.operation  # `operation_class=with_body(PriceIn)` on a route that decodes a PriceIn
file_body = raw_body_operation  # a file read as bytes (price CSV, payment bill, CSV mapping)

# The sync endpoints' signature (hq_sync.wire `sign_request`): the three headers together.
STORE_SIGNATURE = {
    "store": {"type": "apiKey", "in": "header", "name": "X-Backroom-Store", "description": "the paired store's id"},
    "time": {"type": "apiKey", "in": "header", "name": "X-Backroom-Time", "description": "Unix seconds"},
    "signature": {"type": "apiKey", "in": "header", "name": "X-Backroom-Signature",
                  "description": "Ed25519 over method, path, time and body with the store's key (base64url)"},
}
_PUBLIC = {"/healthz", "/hq/v1/auth/login", "/hq/v1/sync/pair"}

# The stores' JSON requests (hq_sync/wire.py), named here rather than on their routes in sync.py. A batch is
# msgpack, zstd- or gzip-compressed (`Content-Encoding`): it is no JSON document to describe.
for _path, _type in (("/hq/v1/sync/pair", PairRequest), ("/hq/v1/sync/authorize", AuthorizeRequest),
                     ("/hq/v1/sync/digests", DigestReport), ("/hq/v1/sync/stock", StockReport),
                     ("/hq/v1/sync/coupons/reserve", CouponReserve)):
    HQ_BODIES.document(_path, "post", _type)
HQ_BODIES.answers("/hq/v1/sync/feed", "get", "application/msgpack")  # a FeedPage (hq_sync/wire.py)


def security(path: str, method: str) -> list[dict[str, list[str]]] | None:
    if path in _PUBLIC or not path.startswith("/hq/v1/"):
        return None
    if path.startswith("/hq/v1/sync/"):
        return [{"store": [], "time": [], "signature": []}]
    return [{"bearer": []}]


def document_on_first_use(app: Litestar) -> None:
    schemes: dict[str, Any] = {**BEARER, **STORE_SIGNATURE}
    build_on_first_use(app, HQ_BODIES, schemes, security)
