"""Reports: sales by store, region, category, day and hour over a range of store days, scoped to the
reader's regions, with a CSV download; and the reconciliation with the stores' Z reports."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.params import Parameter

from hq_sync.server.console.nav import N_
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import sales_reports
from hq_sync.server.service.errors import HqError

DIMENSION_LABELS = {"store": N_("By store"), "region": N_("By region"), "category": N_("By category"),
                    "day": N_("By day"), "hour": N_("By hour")}
COLUMN_LABELS = {
    "store_id": N_("Store"), "name": N_("Name"), "region": N_("Region"), "stores": N_("Stores"),
    "tickets": N_("Tickets"), "gross": N_("Gross"), "discount": N_("Discount"), "net": N_("Net sales"),
    "avg_basket": N_("Average basket"), "refunded": N_("Refunded"), "category": N_("Category"),
    "name_zh": N_("Name (Chinese)"), "name_en": N_("Name (English)"), "lines": N_("Lines"), "qty": N_("Units"),
    "day": N_("Day"), "hour": N_("Hour"),
}
MONEY = {"gross", "discount", "net", "avg_basket", "refunded"}

Day = Annotated[str, Parameter(query="from", max_length=10)]


@get("/hq/ui/reports", opt=page("reports.read"), sync_to_thread=True)
def reports_page(request: Request[Any, Any, Any], by: Annotated[str, Parameter(max_length=16)] = "store",
                 day_from: Day = "", day_to: Annotated[str, Parameter(query="to", max_length=10)] = "",
                 region: Annotated[str, Parameter(max_length=64)] = "") -> Response[str]:
    ui = ConsoleView(request)
    by = by if by in sales_reports.DIMENSIONS else "store"
    problem = ""
    try:
        report = sales_reports.sales(ui.hq.db, ui.who, by, day_from, day_to, region)
        recon = sales_reports.reconciliation(ui.hq.db, ui.who, report["from"], report["to"])
    except HqError as exc:
        problem = ui.problem(exc)
        report = sales_reports.sales(ui.hq.db, ui.who, by, "", "", region)
        recon = sales_reports.reconciliation(ui.hq.db, ui.who, report["from"], report["to"])
    query = {"from": report["from"], "to": report["to"], "region": region}
    return ui.render("reports/index.html", status=400 if problem else 200, title=ui._("Reports"), report=report,
                     recon=recon, by=by, region=region, problem=problem, money=MONEY,
                     dimensions=[(k, ui._(v), f"/hq/ui/reports?{urlencode({'by': k, **query})}")
                                 for k, v in DIMENSION_LABELS.items()],
                     columns=[(c, ui._(COLUMN_LABELS.get(c, c))) for c in report["columns"]],
                     csv_href=f"/hq/v1/reports/sales/{by}?{urlencode({**query, 'format': 'csv'})}",
                     csv_page=f"/hq/ui/reports/csv?{urlencode({'by': by, **query})}")


@get("/hq/ui/reports/csv", opt=page("reports.read"), sync_to_thread=True)
def reports_csv(request: Request[Any, Any, Any], by: Annotated[str, Parameter(max_length=16)] = "store",
                day_from: Day = "", day_to: Annotated[str, Parameter(query="to", max_length=10)] = "",
                region: Annotated[str, Parameter(max_length=64)] = "") -> Response[bytes]:
    ui = ConsoleView(request)
    report = sales_reports.sales(ui.hq.db, ui.who, by, day_from, day_to, region)
    name = f"sales-by-{report['by']}-{report['from']}-{report['to']}.csv"
    return Response(sales_reports.as_csv(report).encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


ROUTES = [reports_page, reports_csv]
