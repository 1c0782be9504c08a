"""End of day → Statements (对账单): upload a payment provider's bill, watch its import as a job,
see fees per provider, the imports and the anomalies, and resolve an anomaly with a note.

Every action calls the same edge/payments functions as /api/v1/statements; managers only
(statements.manage).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile

from edge.api.support import actor_of
from edge.errors import ApiError
from edge.payments import store
from edge.payments.service import MAX_UPLOAD_BYTES, import_bill
from edge.payments.statements import StatementError
from edge.ui.jobs import Job, Progress
from edge.ui.nav import N_
from edge.ui.session import page
from edge.ui.view import UiView, page_offset

BASE = "/ui/eod/statements"
PAGE_SIZE = 50
PROVIDERS = {
    "wechat": N_("WeChat Pay trade bill (CSV)"),
    "alipay": N_("Alipay business detail (CSV or ZIP, GBK)"),
    "unionpay": N_("UnionPay transaction detail (CSV)"),
    "csv": N_("Other CSV with a mapping file"),
}
PROVIDER_NAMES = {"wechat": N_("WeChat Pay"), "alipay": N_("Alipay"), "unionpay": N_("UnionPay")}
KINDS = {
    "paid_no_sale": N_("Paid, no sale"),
    "sale_no_payment": N_("Sale, no payment"),
    "amount_mismatch": N_("Amount differs"),
    "duplicate_payment": N_("Paid twice"),
    "refund_mismatch": N_("Refund differs"),
}
STATUSES = {"open": N_("Not yet resolved"), "resolved": N_("Already resolved"), "all": N_("All anomalies")}


def _job(request: Request[Any, Any, Any], ui: UiView) -> Job | None:
    job: Job | None = request.app.state.jobs.latest("statement-import")
    return job if job is not None and ui.claims is not None and job.owner == ui.claims.user_id else None


@get(BASE, opt=page("statements.manage"), sync_to_thread=True)
def statements_page(request: Request[Any, Any, Any], status: str = "open", offset: str = "0") -> Response[str]:
    ui = UiView(request)
    _ = ui._
    shown: store.AnomalyStatus = status if status in ("open", "resolved", "all") else "open"  # type: ignore[assignment]
    start = page_offset(offset)
    conn = ui.hub.db.reader()
    found = store.anomalies(conn, shown, None, PAGE_SIZE, start)
    books = store.imports(conn, 20, 0)
    return ui.render(
        "statements/index.html",
        title=_("Payment statements"),
        job=_job(request, ui),
        found=found,
        books=books,
        shown=shown,
        offset=start,
        page_size=PAGE_SIZE,
        providers={k: _(v) for k, v in PROVIDERS.items()},
        provider_names={k: _(v) for k, v in PROVIDER_NAMES.items()},
        kinds={k: _(v) for k, v in KINDS.items()},
        statuses={k: _(v) for k, v in STATUSES.items()},
        base=BASE,
    )


async def _file(request: Request[Any, Any, Any], field: str) -> tuple[str, bytes] | None:
    upload = (await request.form()).get(field)
    if isinstance(upload, UploadFile) and upload.filename:
        return upload.filename, await upload.read()
    return None


@post(BASE, opt=page("statements.manage"), request_max_body_size=MAX_UPLOAD_BYTES)
async def statements_upload(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    kind = form.get("provider", "")
    if kind not in PROVIDERS:
        return ui.redirect(BASE, error=_("Choose which provider's bill this is."))
    bill = await _file(request, "file")
    if bill is None or not bill[1]:
        return ui.redirect(BASE, error=_("Choose the bill's file."))
    name, data = bill
    provider, mapping = kind, None
    try:
        if kind == "unionpay":
            provider, mapping = "csv", store.mapping_for("unionpay")
        elif kind == "csv":
            spec = await _file(request, "mapping")
            if spec is None:
                return ui.redirect(BASE, error=_("An other CSV needs its mapping file (TOML or JSON)."))
            mapping = store.mapping_for(spec[1], spec[0])
    except StatementError as exc:
        return ui.redirect(BASE, error=_("The mapping could not be read: %(reason)s") % {"reason": str(exc)})
    actor = actor_of(request)
    hub = ui.hub

    async def work(progress: Progress) -> str:
        try:
            result = await import_bill(hub, provider, data, name, mapping, actor, progress)
        except ApiError as exc:
            raise RuntimeError(_("Nothing was imported: %(reason)s") % {"reason": exc.message}) from exc
        if result.already_imported:
            return _("This file was imported before; nothing changed.")
        return _("%(rows)s rows read: %(matched)s matched, %(anomalies)s anomalies.") % {
            "rows": result.rows,
            "matched": result.matched,
            "anomalies": len(result.anomalies),
        }

    job = request.app.state.jobs.start(
        "statement-import",
        _("Importing %(file)s") % {"file": name[:80]},
        owner=ui.claims.user_id if ui.claims else "",
        work=work,
        link=BASE,
    )
    return ui.redirect(f"/ui/jobs/{job.job_id}")


@post(f"{BASE}/anomalies/{{anomaly_id:int}}/resolve", opt=page("statements.manage"))
async def statements_resolve(request: Request[Any, Any, Any], anomaly_id: int) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    note = form.get("note", "")[:500]
    actor, at = actor_of(request), ui.hub.clock.stamp()
    try:
        await ui.hub.db.write(lambda conn: store.resolve(conn, anomaly_id, note, actor, at))
    except ApiError as exc:
        if exc.code == "note_required":
            return ui.redirect(BASE, error=_("Write in the note how the difference was settled."))
        return ui.redirect(BASE, error=ui.problem(exc))
    return ui.redirect(BASE, notice=_("Anomaly resolved; the note is in the journal."))


ROUTES = [statements_page, statements_upload, statements_resolve]
