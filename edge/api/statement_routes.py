"""Payment providers' statements (edge/payments, docs/payments.md): upload a bill, list imports with
fees per provider, list anomalies, resolve one with a note. Managers only (statements.manage).

The upload's body is the file itself, as the provider's site gave it (an Alipay .zip as well), with
`provider` (and for `csv` a `mapping`: a preset name or the mapping's JSON) in the query.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from edge.api.openapi import body_operation, raw_body_operation
from edge.api.support import actor_of, decode_body, raw_json
from edge.errors import ApiError
from edge.hub import Hub
from edge.payments import store
from edge.payments.service import MAX_UPLOAD_BYTES, import_bill
from edge.payments.statements import StatementError

_encoder = store.encoder
_PERM = {"permission": "statements.manage"}
Provider = Literal["wechat", "alipay", "csv"]


@post("/api/v1/statements", opt=_PERM, request_max_body_size=MAX_UPLOAD_BYTES, status_code=201,
      operation_class=raw_body_operation("application/octet-stream", "the bill file as the provider gave it"),
      responses={200: ResponseSpec(dict[str, Any], description="this very file was imported before: nothing changed")})
async def upload(
    request: Request[Any, Any, Any],
    hub: Hub,
    provider: Provider,
    name: Annotated[str, Parameter(min_length=1, max_length=200)] = "statement",
    mapping: Annotated[str | None, Parameter(min_length=1, max_length=8000)] = None,
) -> Response[bytes]:
    data = await request.body()
    if not data:
        raise ApiError(400, "empty_file", "send the bill's bytes as the request body")
    if provider == "csv" and mapping is None:
        raise ApiError(400, "mapping_required", "a csv bill needs ?mapping= (unionpay, or the mapping's JSON)")
    try:
        csv_mapping = store.mapping_for(mapping, "mapping.json") if provider == "csv" else None
    except StatementError as exc:
        raise ApiError(400, "bad_mapping", str(exc)) from None
    result = await import_bill(hub, provider, data, name, csv_mapping, actor_of(request))
    return raw_json(_encoder.encode(result), 200 if result.already_imported else 201)


@get("/api/v1/statements", opt=_PERM, sync_to_thread=True)
def import_list(
    hub: Hub,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
) -> Response[bytes]:
    return raw_json(_encoder.encode(store.imports(hub.db.reader(), limit, offset)))


@get("/api/v1/statements/anomalies", opt=_PERM, sync_to_thread=True)
def anomaly_list(
    hub: Hub,
    status: store.AnomalyStatus = "open",
    import_id: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
) -> Response[bytes]:
    return raw_json(_encoder.encode(store.anomalies(hub.db.reader(), status, import_id, limit, offset)))


@post("/api/v1/statements/anomalies/{anomaly_id:int}/resolve", opt=_PERM, status_code=200,
      operation_class=body_operation(store.ResolveRequest))
async def resolve(request: Request[Any, Any, Any], hub: Hub, anomaly_id: int) -> Response[bytes]:
    if not 1 <= anomaly_id <= 2**62:
        raise ApiError(404, "unknown_anomaly", "no such statement anomaly")
    req = await decode_body(request, store.ResolveRequest)
    actor, at = actor_of(request), hub.clock.stamp()
    done = await hub.db.write(lambda conn: store.resolve(conn, anomaly_id, req.note, actor, at))
    return raw_json(_encoder.encode(done))


STATEMENT_ROUTES = [upload, import_list, anomaly_list, resolve]
