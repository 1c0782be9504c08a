"""Catalog and prices: item search, an item's price per store with its history and which stores have each
change, a price edit targeted at stores and regions with an effective time, and the bulk CSV import
(preview with the diff and line-numbered errors, then a run with a progress bar: SSE, or a refresh link
without script)."""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage

from hq_sync.server.api.merchandising import import_progress
from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import N_
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import price_import, prices
from hq_sync.server.service.access import stores_in_scope
from hq_sync.server.service.errors import HqError, now_text

LIMIT = 50
ERROR_LABELS = {
    "unknown_sku": N_("Unknown SKU"), "bad_price": N_("Bad price"), "bad_store": N_("Unknown store or region"),
    "out_of_scope": N_("Outside your regions"), "duplicate_row": N_("Duplicate row"), "bad_time": N_("Bad time"),
    "bad_row": N_("Malformed row"),
}


def yuan_to_fen(text: str) -> int | None:
    """A price the form wrote in yuan ("12.90") as whole fen, or None when it is not one."""
    text = text.strip()
    if not text or len(text) > 12:
        return None
    try:
        fen = Decimal(text) * 100
    except InvalidOperation:
        return None
    if not fen.is_finite() or fen != fen.to_integral_value() or not 0 <= fen <= prices.MAX_PRICE:
        return None
    return int(fen)


def _stores_and_regions(ui: ConsoleView) -> tuple[list[tuple[str, str, str]], list[str]]:
    with ui.hq.db.read() as tx:
        mine = set(stores_in_scope(tx, ui.who))
        rows = [(str(r[0]), str(r[1]), str(r[2])) for r in
                tx.all("SELECT store_id, name, region FROM hq_stores ORDER BY region, store_id")]
    stores = [r for r in rows if r[0] in mine]
    return stores, sorted({r[2] for r in stores if r[2]})


@get("/hq/ui/catalog", opt=page("catalog.read"), sync_to_thread=True)
def catalog_page(request: Request[Any, Any, Any], text: Annotated[str, Parameter(query="query", max_length=100)] = "",
                 category: Annotated[str, Parameter(max_length=64)] = "",
                 offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0) -> Response[str]:
    ui = ConsoleView(request)
    found = prices.search_items(ui.hq.db, ui.who, text, category, LIMIT, offset)
    base = f"/hq/ui/catalog?query={quote(text)}&category={quote(category)}&"
    return ui.render("catalog/index.html", title=ui._("Catalog and prices"), query=text, category=category,
                     categories=prices.categories(ui.hq.db, ui.who), items=found["items"], total=found["total"],
                     limit=LIMIT, offset=offset, base=base)


@get("/hq/ui/catalog/items/{sku:str}", opt=page("catalog.read"), sync_to_thread=True)
def item_page(request: Request[Any, Any, Any], sku: str) -> Response[str]:
    ui = ConsoleView(request)
    item = prices.item_prices(ui.hq.db, ui.who, sku[:64])
    stores, regions = _stores_and_regions(ui)
    return ui.render("catalog/item.html", title=f"{item['sku']} {item['name_zh' if ui.lang == 'zh_CN' else 'name_en']}",
                     item=item, stores=stores, regions=regions, may_edit=ui.may("prices.write"))


@post("/hq/ui/catalog/items/{sku:str}/price", opt=page("prices.write"))
async def item_price_form(request: Request[Any, Any, Any], sku: str) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form_lists()
    back = f"/hq/ui/catalog/items/{quote(sku[:64])}"
    price = yuan_to_fen(fields.get("price_yuan", [""])[-1])
    if price is None:
        return ui.redirect(back, error=ui._("Write the price in yuan, e.g. 12.90."))
    try:
        out = await in_thread(lambda: prices.set_price(
            ui.hq.db, ui.who, ui.hq.private_key, sku[:64], price, fields.get("store", [])[:2000],
            fields.get("region", [])[:2000], fields.get("effective_at", [""])[-1][:40], now_text()))
    except HqError as exc:
        if exc.status == 403:
            raise
        return ui.redirect(back, error=ui.problem(exc))
    ui.hq.signal.notify()
    where = ", ".join(out["stores"]) if out["stores"] != ["*"] else ui._("every store")
    return ui.redirect(back, notice=ui._("Price %(price)s set for %(stores)s.") % {
        "price": ui.fmt.money(price), "stores": where})


# -- CSV import ---------------------------------------------------------------------------------------------------

@get("/hq/ui/catalog/import", opt=page("prices.write"), sync_to_thread=True)
def import_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = ConsoleView(request)
    return ui.render("catalog/import.html", title=ui._("Import prices"), imp=None, labels={})


@post("/hq/ui/catalog/import", opt=page("prices.write"))
async def import_upload(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form_lists()
    data = fields.get("csv", [""])[-1].encode()
    upload = (await request.form()).get("file")
    if isinstance(upload, UploadFile):
        content = await upload.read()
        if content:
            data = content
    if not data.strip():
        return ui.redirect("/hq/ui/catalog/import", error=ui._("Paste the rows or choose a file."))
    try:
        out = await in_thread(price_import.preview, ui.hq.db, ui.who, data, now_text())
    except HqError as exc:
        return ui.redirect("/hq/ui/catalog/import", error=ui.problem(exc))
    return ui.redirect(f"/hq/ui/catalog/import/{out['import_id']}")


@get("/hq/ui/catalog/import/{import_id:str}", opt=page("prices.write"), sync_to_thread=True)
def import_view(request: Request[Any, Any, Any], import_id: str) -> Response[str]:
    ui = ConsoleView(request)
    imp = price_import.view(ui.hq.db, ui.who, import_id[:64])
    return ui.render("catalog/import.html", title=ui._("Import prices"), imp=imp,
                     labels={code: ui._(label) for code, label in ERROR_LABELS.items()})


@post("/hq/ui/catalog/import/{import_id:str}/run", opt=page("prices.write"))
async def import_run(request: Request[Any, Any, Any], import_id: str) -> Redirect:
    ui = ConsoleView(request)
    await ui.form_lists()
    back = f"/hq/ui/catalog/import/{quote(import_id[:64])}"
    try:
        await in_thread(price_import.start, ui.hq.db, ui.who, import_id[:64], now_text())
    except HqError as exc:
        if exc.status in (403, 404):
            raise
        return ui.redirect(back, error=ui.problem(exc))
    hq = ui.hq
    task = asyncio.get_running_loop().create_task(in_thread(
        price_import.run_chunks, hq.db, ui.who, hq.private_key, import_id[:64], now_text(), hq.signal.notify))
    hq.tasks.add(task)
    task.add_done_callback(hq.tasks.discard)
    return ui.redirect(back)


@get("/hq/ui/catalog/import/{import_id:str}/events", opt=page("prices.write"))
async def import_events(request: Request[Any, Any, Any], import_id: str) -> ServerSentEvent:
    ui = ConsoleView(request)
    await in_thread(price_import.view, ui.hq.db, ui.who, import_id[:64], 0)

    async def events() -> Any:
        async for view in import_progress(ui.hq.db, ui.who, import_id[:64], ui.signed_in):
            yield ServerSentEventMessage(data=msgspec.json.encode({
                "state": "running" if view["state"] in ("ready", "running") else view["state"],
                "percent": view["percent"], "message": f"{view['done']}/{view['total']}"}).decode(),
                event="progress")

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


ROUTES = [catalog_page, item_page, item_price_form, import_page, import_upload, import_view, import_run, import_events]
