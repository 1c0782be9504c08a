"""Transfers between stores (调拨) and the cross-store stock lookup (hq_sync/transfers.py, docs/sync.md)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.support import actor_of, decode_body, raw_json
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import Replay, request_hash
from hq_sync import hub_state, transfers
from hq_sync.transfers import TransferCreate, TransferStep

_SKU = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _body(result: Replay | bytes, status: int) -> Response[bytes]:
    return raw_json(result.body if isinstance(result, Replay) else result, status)


@post("/api/v1/transfers", opt=_perm("transfers.manage"), operation_class=body_operation(TransferCreate))
async def transfer_create(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    req = await decode_body(request, TransferCreate)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    result = await hub.db.write(lambda conn: transfers.request(conn, req, digest, hub.store_id, actor, at))
    return _body(result, 201)


@get("/api/v1/transfers", opt=_perm("stock.read"), sync_to_thread=False)
def transfer_list(hub: Hub, direction: Literal["out", "in"] | None = None,
                  in_state: Annotated[Literal["requested", "in_transit", "received"] | None,
                                      Parameter(query="state")] = None) -> Response[bytes]:
    rows = transfers.listing(hub.db.reader(), hub.store_id, direction, in_state)
    return raw_json(transfers.encoder.encode({"store_id": hub.store_id, "transfers": rows}))


@get("/api/v1/transfers/{transfer_id:uuid}", opt=_perm("stock.read"), sync_to_thread=False)
def transfer_get(hub: Hub, transfer_id: uuid.UUID) -> Response[bytes]:
    found = transfers.view(hub.db.reader(), str(transfer_id), hub.store_id)
    if found is None:
        raise ApiError(404, "unknown_transfer", f"no transfer {transfer_id}")
    return raw_json(transfers.encoder.encode(found))


@post("/api/v1/transfers/{transfer_id:uuid}/ship", opt=_perm("transfers.manage"), status_code=200,
      operation_class=body_operation(TransferStep))
async def transfer_ship(request: Request[Any, Any, Any], hub: Hub, transfer_id: uuid.UUID) -> Response[bytes]:
    req = await decode_body(request, TransferStep)
    digest, actor, at, today = request_hash(req), actor_of(request), hub.clock.stamp(), hub.clock.today()
    tid = str(transfer_id)
    result = await hub.db.write(lambda conn: transfers.ship(conn, tid, req, digest, hub.store_id, actor, at, today))
    return _body(result, 200)


@post("/api/v1/transfers/{transfer_id:uuid}/receive", opt=_perm("transfers.manage"), status_code=200,
      operation_class=body_operation(TransferStep))
async def transfer_receive(request: Request[Any, Any, Any], hub: Hub, transfer_id: uuid.UUID) -> Response[bytes]:
    req = await decode_body(request, TransferStep)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    tid = str(transfer_id)
    result = await hub.db.write(lambda conn: transfers.receive(conn, tid, req, digest, hub.store_id, actor, at))
    return _body(result, 200)


@get("/api/v1/stock/{sku:str}/elsewhere", opt=_perm("stock.read"))
async def stock_elsewhere(request: Request[Any, Any, Any], hub: Hub, sku: str) -> Response[bytes]:
    """Other stores' on-hand of a sku from HQ's snapshot, each with its age (`as_of`); 503 offline. A
    standalone hub (not paired with HQ) has no other stores: 200 with no stores and `standalone: true`."""
    if not _SKU.match(sku):
        raise ApiError(404, "unknown_item", f"no item with sku {sku[:64]}")
    agent = getattr(request.app.state, "sync", None)
    if agent is None or not hub_state.is_paired(hub.db.reader()):
        return raw_json(transfers.encoder.encode({"sku": sku, "stores": [], "standalone": True}))
    answer = await agent.stock_elsewhere(sku) if agent is not None else None
    if answer is None:
        raise ApiError(503, "hq_unreachable", "HQ did not answer; other stores' stock is not known here")
    stores = [s for s in answer.get("stores", []) if s.get("store_id") != hub.store_id]
    return raw_json(transfers.encoder.encode({"sku": sku, "stores": stores, "standalone": False}))


TRANSFER_ROUTES = [transfer_create, transfer_list, transfer_get, transfer_ship, transfer_receive, stock_elsewhere]
