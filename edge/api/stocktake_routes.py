"""Stock-takes (盘点, edge/stock/stocktake.py) and the Stock page's read models (edge/stock/insights.py).

Opening, approving and cancelling a stock-take are a manager's acts (`stock.adjust`); anyone with
`stock.count` enters counts and submits. The `/api/v1/stock/levels|expiring|replenishment` paths are
static, so Litestar matches them before `/api/v1/stock/{sku}`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, get, post, put
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.support import actor_of, decode_body
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import request_hash
from edge.stock import insights, stocktake
from edge.stock.insights import AlertFilter, ExpiringList, LevelPage, ReorderList
from edge.stock.stocktake import (
    ApprovalResult,
    ApproveRequest,
    CountsRequest,
    CountsResult,
    OpenRequest,
    State,
    StocktakeView,
    Summary,
)

Limit = Annotated[int, Parameter(ge=1, le=500)]
Offset = Annotated[int, Parameter(ge=0, le=1_000_000)]
Days = Annotated[int, Parameter(ge=0, le=365)]
MaybeDays = Annotated[int | None, Parameter(ge=0, le=365)]


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


# -- stock-takes -------------------------------------------------------------------------------------

@post("/api/v1/stocktakes", opt=_perm("stock.adjust"), operation_class=body_operation(OpenRequest))
async def stocktake_open(request: Request[Any, Any, Any], hub: Hub) -> Summary:
    req = await decode_body(request, OpenRequest)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    return await hub.db.write(lambda conn: stocktake.open_stocktake(conn, req, digest, actor, at))


@get("/api/v1/stocktakes", opt=_perm("stock.count"), sync_to_thread=False)
def stocktake_list(hub: Hub, in_state: Annotated[State | None, Parameter(query="state")] = None, limit: Limit = 50,
                   offset: Offset = 0) -> dict[str, Any]:
    return {"stocktakes": stocktake.listing(hub.db.reader(), in_state, limit, offset)}


@get("/api/v1/stocktakes/{stocktake_id:uuid}", opt=_perm("stock.count"), sync_to_thread=False)
def stocktake_get(hub: Hub, stocktake_id: uuid.UUID) -> StocktakeView:
    found = stocktake.view(hub.db.reader(), str(stocktake_id), hub.store_id, hub.clock.stamp())
    if found is None:
        raise ApiError(404, "unknown_stocktake", f"no stock-take {stocktake_id}")
    return found


@put("/api/v1/stocktakes/{stocktake_id:uuid}/counts", opt=_perm("stock.count"),
     operation_class=body_operation(CountsRequest))
async def stocktake_counts(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> CountsResult:
    req = await decode_body(request, CountsRequest)
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    return await hub.db.write(lambda conn: stocktake.enter_counts(conn, sid, req.counts, actor, at))


@post("/api/v1/stocktakes/{stocktake_id:uuid}/submit", opt=_perm("stock.count"), status_code=200)
async def stocktake_submit(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Summary:
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    return await hub.db.write(lambda conn: stocktake.submit(conn, sid, actor, at))


@post("/api/v1/stocktakes/{stocktake_id:uuid}/approve", opt=_perm("stock.adjust"), status_code=200,
      operation_class=body_operation(ApproveRequest))
async def stocktake_approve(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> ApprovalResult:
    req = await decode_body(request, ApproveRequest)
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    return await hub.db.write(lambda conn: stocktake.approve(conn, sid, req, hub.store_id, actor, at))


@post("/api/v1/stocktakes/{stocktake_id:uuid}/cancel", opt=_perm("stock.adjust"), status_code=200)
async def stocktake_cancel(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Summary:
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    return await hub.db.write(lambda conn: stocktake.cancel(conn, sid, actor, at))


# -- stock insights ----------------------------------------------------------------------------------

@get("/api/v1/stock/levels", opt=_perm("stock.read"), sync_to_thread=False)
def stock_levels(hub: Hub, text: Annotated[str, Parameter(query="query", max_length=100)] = "", limit: Limit = 50,
                 offset: Offset = 0, alert: AlertFilter | None = None) -> LevelPage:
    """Active items by sku; `query` matches sku, name or barcode; `alert`: low, high, any or ok."""
    return insights.levels(hub.db.reader(), text, limit, offset, alert)


@get("/api/v1/stock/expiring", opt=_perm("stock.read"), sync_to_thread=False)
def stock_expiring(hub: Hub, within_days: Days = 7) -> ExpiringList:
    return insights.expiring(hub.db.reader(), hub.clock.today(), within_days, store_id=hub.store_id,
                             at=hub.clock.now())


@get("/api/v1/stock/replenishment", opt=_perm("stock.read"), sync_to_thread=False)
def stock_replenishment(hub: Hub, lead_time_days: MaybeDays = None, cover_days: MaybeDays = None) -> ReorderList:
    """Defaults: the hub config's `replenish_lead_days` and `replenish_cover_days`."""
    lead = hub.config.replenish_lead_days if lead_time_days is None else lead_time_days
    cover = hub.config.replenish_cover_days if cover_days is None else cover_days
    return insights.replenishment(hub.db.reader(), hub.clock.today(), lead, cover, store_id=hub.store_id)


STOCKTAKE_ROUTES = [stocktake_open, stocktake_list, stocktake_get, stocktake_counts, stocktake_submit,
                    stocktake_approve, stocktake_cancel, stock_levels, stock_expiring, stock_replenishment]
