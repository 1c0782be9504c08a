"""Reports for the manager's tablet (edge/reports/): the day's dashboard and promotion performance.
Read-only, from the rollups; permission reports.read."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter

from edge.errors import ApiError
from edge.hub import Hub
from edge.reports.dashboard import Dashboard, dashboard
from edge.reports.promotions import PromotionsReport, promotions_performance


def _store_day(text: str | None, hub: Hub) -> str:
    if text is None or text == "":
        return hub.clock.today()
    try:
        return datetime.date.fromisoformat(text).isoformat() if len(text) == 10 else _bad_day(text)
    except ValueError:
        return _bad_day(text)


def _bad_day(text: str) -> str:
    raise ApiError(400, "invalid_day", f"day must be a date YYYY-MM-DD, not {text[:32]!r}")


@get("/api/v1/reports/dashboard", opt={"permission": "reports.read"}, sync_to_thread=False)
def report_dashboard(hub: Hub, day: Annotated[str | None, Parameter(max_length=32)] = None) -> Dashboard:
    return dashboard(hub.db.reader(), _store_day(day, hub))


@get("/api/v1/reports/promotions", opt={"permission": "reports.read"}, sync_to_thread=False)
def report_promotions(hub: Hub) -> PromotionsReport:
    return promotions_performance(hub.db.reader(), hub.clock.now())


REPORT_ROUTES: list[Any] = [report_dashboard, report_promotions]
