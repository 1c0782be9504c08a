"""Chain dashboard: today's figures per store and region, the ranking, the hourly chart against the
same weekday last week, each store's freshness — live over SSE as batches arrive."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.response import ServerSentEvent

from edge.ui.live import live_fragments
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service.dashboard import ChainDashboard, chain_dashboard, live_signature

FRAGMENTS = ("figures", "hourly", "regions", "stores")
LIVE_POLL_S = 2.0


def _context(ui: ConsoleView, d: ChainDashboard) -> dict[str, Any]:
    _ = ui._
    change_bp = (d.sales - d.last_week_sales) * 10_000 // d.last_week_sales if d.last_week_sales else None
    money = ui.fmt.money
    return {
        "d": d,
        "change_bp": change_bp,
        "hour_labels": [f"{h:02d}" for h in range(24)],
        "hourly_desc": _("Chain sales per local hour today: %(values)s. Same weekday a week earlier: %(before)s.") % {
            "values": ", ".join(f"{h:02d}:00 {money(v)}" for h, v in enumerate(d.hourly) if v) or _("no sales"),
            "before": ", ".join(f"{h:02d}:00 {money(v)}" for h, v in enumerate(d.hourly_last_week) if v)
            or _("no sales"),
        },
        "region_rows": [(r.region, r.sales, money(r.sales)) for r in d.regions],
        "region_desc": "; ".join(f"{r.region}: {money(r.sales)}" for r in d.regions),
    }


def _render(ui: ConsoleView) -> dict[str, Any]:
    return _context(ui, chain_dashboard(ui.hq.db, ui.who))


@get("/hq/ui/dashboard", opt=page("dashboard.read"), sync_to_thread=True)
def dashboard_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = ConsoleView(request)
    return ui.render("dashboard/index.html", title=ui._("Chain dashboard"), **_render(ui))


@get("/hq/ui/dashboard/events", opt=page("dashboard.read"))
async def dashboard_events(request: Request[Any, Any, Any]) -> ServerSentEvent:
    """The figures re-rendered whenever a store in scope has a batch applied."""
    ui = ConsoleView(request)

    def render(_before: tuple[int, int] | None, _now: tuple[int, int]) -> dict[str, str]:
        context = _render(ui)
        return {f"dash-{name}": ui.fragment(f"dashboard/_{name}.html", **context) for name in FRAGMENTS}

    return live_fragments(ui, lambda: live_signature(ui.hq.db, ui.who), render, poll_s=LIVE_POLL_S,
                          send_first=False, in_thread=True)


ROUTES = [dashboard_page, dashboard_events]
