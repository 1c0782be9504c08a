"""The admin API behind the console's catalog, promotion, report and transfer pages (docs/hq-console.md):
item search, targeted price changes with history and who has them, CSV price imports with progress,
promotions from forms with a preview, stop and report, sales reports with CSV and the Z reconciliation,
transfer approval. Each endpoint names its permission; scope is enforced in the services.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from msgspec import Meta

from edge.stopping import nap, stopping
from hq_sync.server.api.openapi import file_body, with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response
from hq_sync.server.service import price_import, prices, promotions, sales_reports, transfer_approvals
from hq_sync.server.service.access import Principal
from hq_sync.server.service.errors import HqError, now_text

Short = Annotated[str, Meta(max_length=64)]
IdList = Annotated[list[Short], Meta(max_length=2000)]


# -- catalog and prices ----------------------------------------------------------------------------------------

@get("/hq/v1/items")
async def item_search(request: Request[Any, Any, Any],
                      text: Annotated[str, Parameter(query="query", max_length=100)] = "",
                      category: Annotated[str, Parameter(max_length=64)] = "",
                      limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
                      offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0) -> Response[bytes]:
    principal = acting(request, "catalog.read")
    db = hq_of(request).db
    return json_response(await in_thread(prices.search_items, db, principal, text, category, limit, offset))


@get("/hq/v1/categories")
async def category_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "catalog.read")
    return json_response({"categories": await in_thread(prices.categories, hq_of(request).db, principal)})


@get("/hq/v1/items/{sku:str}/prices")
async def item_prices(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    principal = acting(request, "catalog.read")
    return json_response(await in_thread(prices.item_prices, hq_of(request).db, principal, sku[:64]))


class PriceEdit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    price: Annotated[int, Meta(ge=0, le=prices.MAX_PRICE)]
    stores: IdList = []
    regions: IdList = []
    effective_at: Annotated[str, Meta(max_length=40)] | None = None


@post("/hq/v1/items/{sku:str}/price", status_code=200, operation_class=with_body(PriceEdit))
async def item_price_set(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    """A price for the chain, or for stores and regions (a region manager: his own), now or from a time."""
    principal = acting(request, "prices.write")
    req = await decode(request, PriceEdit)
    hq = hq_of(request)
    out = await in_thread(lambda: prices.set_price(hq.db, principal, hq.private_key, sku[:64], req.price, req.stores,
                                                   req.regions, req.effective_at, now_text()))
    hq.signal.notify()
    return json_response(out)


@post("/hq/v1/price-imports", status_code=201,
      operation_class=file_body("text/csv", "the price CSV (sku, price, stores?, effective_at?)"))
async def price_import_preview(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The CSV file as the body: every row checked, the diff against current prices; nothing applied yet."""
    principal = acting(request, "prices.write")
    data = await request.body()
    out = await in_thread(price_import.preview, hq_of(request).db, principal, data, now_text())
    return json_response(out, 201)


@get("/hq/v1/price-imports/{import_id:str}")
async def price_import_view(request: Request[Any, Any, Any], import_id: str) -> Response[bytes]:
    principal = acting(request, "prices.write")
    return json_response(await in_thread(price_import.view, hq_of(request).db, principal, import_id[:64]))


def start_import(request: Request[Any, Any, Any], import_id: str, principal: Principal) -> None:
    """Run a started import on a worker thread; the feed is woken after each chunk."""
    hq = hq_of(request)
    task = asyncio.get_running_loop().create_task(in_thread(
        price_import.run_chunks, hq.db, principal, hq.private_key, import_id, now_text(), hq.signal.notify))
    hq.tasks.add(task)
    task.add_done_callback(hq.tasks.discard)


@post("/hq/v1/price-imports/{import_id:str}/run", status_code=202)
async def price_import_run(request: Request[Any, Any, Any], import_id: str) -> Response[bytes]:
    principal = acting(request, "prices.write")
    out = await in_thread(price_import.start, hq_of(request).db, principal, import_id[:64], now_text())
    start_import(request, import_id[:64], principal)
    return json_response(out, 202)


async def import_progress(db: Any, principal: Principal, import_id: str,
                          go_on: Callable[[], bool] = lambda: True) -> AsyncIterator[dict[str, Any]]:
    """An import's view each time its state or count changes, polled every half second, until it is `done` or
    `invalid`, HQ is told to stop (edge/stopping.py), `go_on()` turns false, or ~30 min have passed. The API's
    and the console's progress streams are this, each with its own event shape."""
    last: tuple[str, int] | None = None
    for _ in range(3600):
        if stopping() or not go_on():
            return
        view = await in_thread(price_import.view, db, principal, import_id, 0)
        now = (str(view["state"]), int(view["done"]))
        if now != last:
            last = now
            yield view
        if view["state"] in ("done", "invalid"):
            return
        await nap(0.5)


def progress_stream(request: Request[Any, Any, Any], import_id: str, principal: Principal) -> ServerSentEvent:
    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async for view in import_progress(hq_of(request).db, principal, import_id):
            yield ServerSentEventMessage(data=msgspec.json.encode(
                {k: view[k] for k in ("state", "done", "total", "percent")}).decode(), event="progress")

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/hq/v1/price-imports/{import_id:str}/events")
async def price_import_events(request: Request[Any, Any, Any], import_id: str) -> ServerSentEvent:
    principal = acting(request, "prices.write")
    await in_thread(price_import.view, hq_of(request).db, principal, import_id[:64], 0)  # 404 before streaming
    return progress_stream(request, import_id[:64], principal)


# -- promotions ------------------------------------------------------------------------------------------------

@get("/hq/v1/promotions")
async def promotion_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "promotions.read")
    return json_response({"promotions": await in_thread(promotions.listing, hq_of(request).db, principal),
                          "kinds": list(promotions.KINDS)})


@get("/hq/v1/promotions/{rule_id:str}")
async def promotion_detail(request: Request[Any, Any, Any], rule_id: str) -> Response[bytes]:
    principal = acting(request, "promotions.read")
    return json_response(await in_thread(promotions.detail, hq_of(request).db, principal, rule_id))


@post("/hq/v1/promotions/forms", status_code=201, operation_class=with_body(promotions.PromotionForm))
async def promotion_from_form(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A promotion from the console's form fields (`PromotionForm`), built into the documented rule format."""
    principal = acting(request, "promotions.write")
    form = await decode(request, promotions.PromotionForm)
    hq = hq_of(request)
    out = await in_thread(promotions.create, hq.db, principal, hq.private_key, form, now_text())
    hq.signal.notify()
    return json_response(out, 201)


@post("/hq/v1/promotions/preview", status_code=200, operation_class=with_body(promotions.PreviewIn))
async def promotion_preview(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "promotions.read")
    req = await decode(request, promotions.PreviewIn)
    return json_response(await in_thread(promotions.preview, hq_of(request).db, principal, req))


@post("/hq/v1/promotions/{rule_id:str}/stop", status_code=200)
async def promotion_stop(request: Request[Any, Any, Any], rule_id: str) -> Response[bytes]:
    principal = acting(request, "promotions.write")
    hq = hq_of(request)
    out = await in_thread(promotions.stop, hq.db, principal, hq.private_key, rule_id, now_text())
    hq.signal.notify()
    return json_response(out)


@get("/hq/v1/promotions/{rule_id:str}/report")
async def promotion_report(request: Request[Any, Any, Any], rule_id: str) -> Response[bytes]:
    principal = acting(request, "reports.read")
    return json_response(await in_thread(promotions.report, hq_of(request).db, principal, rule_id))


# -- reports ---------------------------------------------------------------------------------------------------

@get("/hq/v1/reports/sales/{by:str}")
async def sales_report(request: Request[Any, Any, Any], by: str,
                       day_from: Annotated[str, Parameter(query="from", max_length=10)] = "",
                       day_to: Annotated[str, Parameter(query="to", max_length=10)] = "",
                       region: Annotated[str, Parameter(max_length=64)] = "",
                       fmt: Annotated[str, Parameter(query="format", max_length=8)] = "json") -> Response[Any]:
    """Sales by store, region, category, day or hour over store days `from`..`to`; `format=csv` for a file."""
    principal = acting(request, "reports.read")
    report = await in_thread(sales_reports.sales, hq_of(request).db, principal, by, day_from, day_to, region)
    if fmt == "csv":
        name = f"sales-by-{report['by']}-{report['from']}-{report['to']}.csv"
        return Response(sales_reports.as_csv(report).encode(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    if fmt != "json":
        raise HqError(400, "bad_format", "format is json or csv")
    return json_response(report)


@get("/hq/v1/reconciliation")
async def z_reconciliation(request: Request[Any, Any, Any],
                           day_from: Annotated[str, Parameter(query="from", max_length=10)] = "",
                           day_to: Annotated[str, Parameter(query="to", max_length=10)] = "") -> Response[bytes]:
    """Each store's Z report per closed day beside HQ's own figures for that day."""
    principal = acting(request, "reports.read")
    return json_response(await in_thread(sales_reports.reconciliation, hq_of(request).db, principal, day_from, day_to))


# -- transfers ---------------------------------------------------------------------------------------------------

@get("/hq/v1/transfer-approvals")
async def transfer_board(request: Request[Any, Any, Any],
                         in_state: Annotated[str, Parameter(query="state", max_length=16)] = "",
                         approval: Annotated[str, Parameter(max_length=16)] = "") -> Response[bytes]:
    principal = acting(request, "transfers.read")
    db = hq_of(request).db
    return json_response({"transfers": await in_thread(transfer_approvals.listing, db, principal, in_state, approval),
                          **await in_thread(transfer_approvals.settings, db, principal)})


class Decision(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=200)] = ""


@post("/hq/v1/transfers/{transfer_id:str}/approve", status_code=200)
async def transfer_approve(request: Request[Any, Any, Any], transfer_id: str) -> Response[bytes]:
    principal = acting(request, "transfers.approve")
    hq = hq_of(request)
    out = await in_thread(transfer_approvals.decide, hq.db, principal, hq.private_key, transfer_id, True, "",
                          now_text())
    hq.signal.notify()
    return json_response(out)


@post("/hq/v1/transfers/{transfer_id:str}/reject", status_code=200, operation_class=with_body(Decision))
async def transfer_reject(request: Request[Any, Any, Any], transfer_id: str) -> Response[bytes]:
    principal = acting(request, "transfers.approve")
    req = await decode(request, Decision)
    hq = hq_of(request)
    out = await in_thread(transfer_approvals.decide, hq.db, principal, hq.private_key, transfer_id, False,
                          req.reason, now_text())
    return json_response(out)


class ApprovalSetting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    transfers_need_approval: bool


@put("/hq/v1/settings/transfers", operation_class=with_body(ApprovalSetting))
async def transfer_setting(request: Request[Any, Any, Any]) -> Response[bytes]:
    principal = acting(request, "settings.write")
    req = await decode(request, ApprovalSetting)
    return json_response(await in_thread(transfer_approvals.set_need_approval, hq_of(request).db, principal,
                                         req.transfers_need_approval, now_text()))


ROUTES = [
    item_search, category_list, item_prices, item_price_set, price_import_preview, price_import_view, price_import_run,
    price_import_events, promotion_list, promotion_detail, promotion_from_form, promotion_preview, promotion_stop,
    promotion_report, sales_report, z_reconciliation, transfer_board, transfer_approve, transfer_reject,
    transfer_setting,
]
