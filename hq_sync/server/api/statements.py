"""The chain merchant bill's endpoints (docs/payments-hq.md): upload a provider's bill, list the bills, one
bill split by store with its anomalies, resolve an anomaly with a note, and map the provider's store field to
stores. Each names its permission; region scope is enforced in `service/statements.py`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from msgspec import Meta

from hq_sync.server.api.openapi import file_body, with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response
from hq_sync.server.service import statements
from hq_sync.server.service.errors import HqError, now_text

Short = Annotated[str, Meta(max_length=64)]


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=statements.MAX_NOTE)]


class StoreCodeIn(msgspec.Struct, forbid_unknown_fields=True):
    provider: Short
    code: Short
    store_id: Short | None = None


def _anomaly_no(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise HqError(400, "bad_anomaly", "an anomaly number is a positive integer")
    return int(text)


@post("/hq/v1/statements", status_code=201,
      operation_class=file_body("application/octet-stream", "the provider's bill file (CSV, or zipped)"),
      responses={200: ResponseSpec(dict[str, Any], description="this very file was imported before: nothing changed")})
async def statement_import(request: Request[Any, Any, Any],
                           provider: Annotated[str, Parameter(max_length=16)],
                           file_name: Annotated[str, Parameter(query="file_name", max_length=200)] = "") \
        -> Response[bytes]:
    """The bill file as the body (`?provider=wechat|alipay|csv`): 201 with the statement split by store, or
    200 with `duplicate: true` when this very file was imported before (nothing changed)."""
    principal = acting(request, "statements.import")
    data = await request.body()
    out = await in_thread(statements.import_statement, hq_of(request).db, principal, provider, data, file_name,
                          now_text())
    return json_response(out, 200 if out["duplicate"] else 201)


@get("/hq/v1/statements")
async def statement_list(request: Request[Any, Any, Any],
                         limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
                         offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0) -> Response[bytes]:
    principal = acting(request, "statements.read")
    return json_response(await in_thread(statements.listing, hq_of(request).db, principal, limit, offset))


@get("/hq/v1/statements/{statement_id:str}")
async def statement_view(request: Request[Any, Any, Any], statement_id: str,
                         rows: Annotated[int, Parameter(ge=0, le=5000)] = 0) -> Response[bytes]:
    """One bill: per store its rows, paid, refunded, fees, matched and anomalies (`?rows=N`: the first N
    rows too)."""
    principal = acting(request, "statements.read")
    return json_response(await in_thread(statements.view, hq_of(request).db, principal, statement_id[:64], rows))


@post("/hq/v1/statements/{statement_id:str}/anomalies/{anomaly_no:str}/resolve", status_code=200,
      operation_class=with_body(ResolveIn))
async def anomaly_resolve(request: Request[Any, Any, Any], statement_id: str, anomaly_no: str) -> Response[bytes]:
    principal = acting(request, "statements.resolve")
    body: ResolveIn = await decode(request, ResolveIn)
    return json_response(await in_thread(statements.resolve, hq_of(request).db, principal, statement_id[:64],
                                         _anomaly_no(anomaly_no), body.note, now_text()))


@get("/hq/v1/statement-store-codes")
async def store_code_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "statements.read")
    return json_response(await in_thread(statements.store_codes, hq_of(request).db, principal))


@put("/hq/v1/statement-store-codes", operation_class=with_body(StoreCodeIn))
async def store_code_set(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Map the provider's store field (`code`: Alipay 门店编号, a device or sub-merchant) to `store_id`;
    `store_id` null removes the mapping."""
    principal = acting(request, "statements.import")
    body: StoreCodeIn = await decode(request, StoreCodeIn)
    return json_response(await in_thread(statements.set_store_code, hq_of(request).db, principal, body.provider,
                                         body.code, body.store_id, now_text()))


@get("/hq/v1/statement-csv-mapping")
async def csv_mapping_get(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "statements.read")
    return json_response(await in_thread(statements.csv_mapping, hq_of(request).db, principal))


@put("/hq/v1/statement-csv-mapping", operation_class=file_body("text/plain", "the column mapping, TOML or JSON"))
async def csv_mapping_set(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The chain's column mapping for `?provider=csv` bills, as the body (TOML or JSON, docs/payments.md)."""
    principal = acting(request, "statements.import")
    data = await request.body()
    return json_response(await in_thread(statements.set_csv_mapping, hq_of(request).db, principal, data,
                                         now_text()))


ROUTES = [csv_mapping_get, csv_mapping_set, statement_import, statement_list, statement_view, anomaly_resolve,
          store_code_list, store_code_set]
