"""Statements (对账单): the chain merchant bills — upload a provider's bill, each bill split by store (rows,
paid, refunded, fees, matched), and the anomaly list with resolve (docs/payments-hq.md). A region manager
sees and resolves his stores' part only; the service decides."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import Parameter
from litestar.response import Redirect

from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import N_
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import statements
from hq_sync.server.service.access import stores_in_scope
from hq_sync.server.service.errors import HqError, now_text

PROVIDER_LABELS = {"wechat": N_("WeChat Pay trade bill"), "alipay": N_("Alipay business detail"),
                   "csv": N_("Mapped CSV (UnionPay and others)")}
KIND_LABELS = {"paid_no_sale": N_("Paid, no sale"), "sale_no_payment": N_("Sale, no payment"),
               "amount_mismatch": N_("Amount differs"), "duplicate_payment": N_("Paid twice"),
               "refund_mismatch": N_("Refund differs")}
BY_LABELS = {"reference": N_("by reference"), "store_field": N_("by store field"), "none": N_("no store")}


def _labels(ui: ConsoleView) -> dict[str, Any]:
    return {"providers": {k: ui._(v) for k, v in PROVIDER_LABELS.items()},
            "kinds": {k: ui._(v) for k, v in KIND_LABELS.items()},
            "by": {k: ui._(v) for k, v in BY_LABELS.items()}}


@get("/hq/ui/statements", opt=page("statements.read"), sync_to_thread=True)
def statements_page(request: Request[Any, Any, Any],
                    offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0) -> Response[str]:
    ui = ConsoleView(request)
    listing = statements.listing(ui.hq.db, ui.who, 50, offset)
    settings: dict[str, Any] = {}
    if ui.may("statements.import"):
        with ui.hq.db.read() as tx:
            settings["stores"] = stores_in_scope(tx, ui.who)
        settings["codes"] = statements.store_codes(ui.hq.db, ui.who)["codes"]
        settings["mapping"] = statements.csv_mapping(ui.hq.db, ui.who)["mapping"] or ""
    return ui.render("statements/index.html", title=ui._("Statements"), rows=listing["statements"], offset=offset,
                     settings=settings, **_labels(ui))


@post("/hq/ui/statements", opt=page("statements.import"))
async def statement_upload(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form()
    provider = fields.get("provider", "")
    upload = (await request.form()).get("file")
    data, name = b"", ""
    if isinstance(upload, UploadFile):
        data, name = await upload.read(), upload.filename or ""
    if not data:
        return ui.redirect("/hq/ui/statements", error=ui._("Choose the bill file."))
    try:
        out = await in_thread(statements.import_statement, ui.hq.db, ui.who, provider, data, name, now_text())
    except HqError as exc:
        if exc.status == 403:
            raise
        return ui.redirect("/hq/ui/statements", error=ui.problem(exc))
    notice = ui._("This file was imported before; nothing changed.") if out["duplicate"] else \
        ui._("Bill imported: %(rows)s rows, %(anomalies)s anomalies.") % {
            "rows": out["rows_in_file"], "anomalies": len(out["anomalies"])}
    return ui.redirect(f"/hq/ui/statements/{out['statement_id']}", notice=notice)


@get("/hq/ui/statements/{statement_id:str}", opt=page("statements.read"), sync_to_thread=True)
def statement_page(request: Request[Any, Any, Any], statement_id: str,
                   store: Annotated[str, Parameter(max_length=64)] = "",
                   show: Annotated[str, Parameter(max_length=16)] = "open") -> Response[str]:
    ui = ConsoleView(request)
    bill = statements.view(ui.hq.db, ui.who, statement_id[:64], 200)
    shown = [a for a in bill["anomalies"] if (not store or a["store_id"] == store)
             and (show == "all" or not a["resolved"])]
    rows = [r for r in bill["rows"] if not store or r["store_id"] == store]
    return ui.render("statements/detail.html", title=ui._("Statement"), bill=bill, anomalies=shown, rows=rows,
                     store=store, show="all" if show == "all" else "open", **_labels(ui))


@post("/hq/ui/statements/{statement_id:str}/anomalies/{anomaly_no:int}/resolve", opt=page("statements.resolve"))
async def anomaly_resolve(request: Request[Any, Any, Any], statement_id: str, anomaly_no: int) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form()
    back = f"/hq/ui/statements/{statement_id[:64]}"
    if not 0 < anomaly_no < 10**9:
        raise HqError(404, "unknown_anomaly", "no such anomaly")
    return await ui.act(back, ui._("Anomaly resolved."), statements.resolve, ui.hq.db, ui.who, statement_id[:64],
                        anomaly_no, fields.get("note", "")[:statements.MAX_NOTE], now_text())


@post("/hq/ui/statements/store-codes", opt=page("statements.import"))
async def store_code_set(request: Request[Any, Any, Any]) -> Redirect:
    """Map (or, with an empty store, unmap) a provider's store field to a store."""
    ui = ConsoleView(request)
    fields = await ui.form()
    store_id = fields.get("store_id", "")[:64] or None
    return await ui.act("/hq/ui/statements", ui._("Store field mapping saved."), statements.set_store_code, ui.hq.db,
                        ui.who, fields.get("provider", "")[:16], fields.get("code", "")[:64], store_id, now_text())


@post("/hq/ui/statements/csv-mapping", opt=page("statements.import"))
async def csv_mapping_set(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form()
    text = fields.get("mapping", "").encode()
    return await ui.act("/hq/ui/statements", ui._("CSV column mapping saved."), statements.set_csv_mapping,
                        ui.hq.db, ui.who, text, now_text())


ROUTES = [statements_page, statement_upload, store_code_set, csv_mapping_set, statement_page, anomaly_resolve]
