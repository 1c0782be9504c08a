"""Reports for the manager's tablet (edge/reports/): the day's dashboard and promotion performance.
Read-only, from the rollups; permission reports.read."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter

from edge.eod.days import parse_day
from edge.hub import Hub
from edge.reports.dashboard import Dashboard, dashboard
from edge.reports.promotions import PromotionsReport, promotions_performance


def _store_day(text: str | None, hub: Hub) -> str:
    return parse_day(text).isoformat() if text else hub.clock.today()


@get("/api/v1/reports/dashboard", opt={"permission": "reports.read"}, sync_to_thread=False)
def report_dashboard(hub: Hub, day: Annotated[str | None, Parameter(max_length=32)] = None) -> Dashboard:
    return dashboard(hub.db.reader(), _store_day(day, hub))


@get("/api/v1/reports/promotions", opt={"permission": "reports.read"}, sync_to_thread=False)
def report_promotions(hub: Hub) -> PromotionsReport:
    return promotions_performance(hub.db.reader(), hub.clock.now())


REPORT_ROUTES: list[Any] = [report_dashboard, report_promotions]
