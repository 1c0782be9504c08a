"""Dashboard: the day's sales at a glance, live as sales come in (edge/reports/dashboard.py)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.response import ServerSentEvent

from edge.hub import Hub
from edge.money import div_half_up
from edge.reports.dashboard import Dashboard, dashboard
from edge.ui.live import live_fragments
from edge.ui.session import page
from edge.ui.view import UiView

FRAGMENTS = ("figures", "hourly", "categories", "top")
LIVE_POLL_S = 2.0


def _context(ui: UiView, d: Dashboard) -> dict[str, Any]:
    _ = ui._
    change_bp = (div_half_up((d.sales - d.last_week_sales) * 10_000, d.last_week_sales)
                 if d.last_week_sales > 0 else None)
    weekday = ui.fmt.day(d.last_week_day, "EEEE")
    zh = ui.lang == "zh_CN"
    return {
        "d": d,
        "change_bp": change_bp,
        "weekday": weekday,
        "hour_labels": [f"{h:02d}" for h in range(24)],
        "hourly_desc": _("Sales per hour on %(day)s: %(values)s. Same weekday a week earlier: %(before)s.") % {
            "day": ui.fmt.day(d.day),
            "values": ", ".join(f"{b.hour:02d}:00 {ui.fmt.money(b.total)}" for b in d.hourly if b.total),
            "before": ", ".join(f"{b.hour:02d}:00 {ui.fmt.money(b.total)}" for b in d.hourly_last_week if b.total)
            or _("no sales"),
        },
        "category_rows": [((c.name_zh if zh else c.name_en), c.net,
                           f"{ui.fmt.money(c.net)} · {ui.fmt.percent_bp(c.share_bp)}") for c in d.categories],
        "category_desc": "; ".join(f"{c.name_zh if zh else c.name_en}: {ui.fmt.money(c.net)}" for c in d.categories),
        "item_name": (lambda item: item.name_zh if zh else item.name_en),
    }


def _fragment(ui: UiView, name: str, context: dict[str, Any]) -> str:
    return ui.fragment(f"dashboard/_{name}.html", **context)


@get("/ui/dashboard", opt=page("reports.read"), sync_to_thread=False)
def dashboard_page(request: Request[Any, Any, Any], hub: Hub, day: str = "") -> Response[str]:
    ui = UiView(request)
    the_day = hub.clock.day_or_today(day)
    d = dashboard(hub.db.reader(), the_day)
    open_alerts = hub.db.reader().execute("SELECT COUNT(*) FROM stock_alerts WHERE cleared_at IS NULL").fetchone()[0]
    return ui.render("dashboard/index.html", title=ui._("Dashboard"), live=the_day == hub.clock.today(),
                     open_alerts=open_alerts, **_context(ui, d))


@get("/ui/dashboard/events", opt=page("reports.read"))
async def dashboard_events(request: Request[Any, Any, Any], hub: Hub) -> ServerSentEvent:
    """Re-rendered figures whenever the journal moves (a sale, a return): the tablet swaps them in."""
    ui = UiView(request)

    def head() -> int:
        row = hub.db.reader().execute("SELECT MAX(seq) FROM journal").fetchone()
        return int(row[0] or 0)

    def render(_before: int | None, _now: int) -> dict[str, str]:
        context = _context(ui, dashboard(hub.db.reader(), hub.clock.today()))
        return {f"dash-{name}": _fragment(ui, name, context) for name in FRAGMENTS}

    return live_fragments(ui, head, render, poll_s=LIVE_POLL_S, send_first=False)


ROUTES = [dashboard_page, dashboard_events]
