"""The console as one Litestar router: its pages, its static files (the console's stylesheet, and the
tablet's script, stylesheet and icon served from edge/ui/static — not copied), the session guard,
page-shaped answers for a missing login, a refused permission or scope, a stale form, and the headers
every page carries (strict CSP, Server-Timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from edge.ui.pagekit import FormError, PageRouter, page_headers
from edge.ui.session import Forbidden, LoginRequired
from hq_sync.server.console.pages import (
    audit,
    auth,
    catalog,
    dashboard,
    members,
    promotions,
    reports,
    statements,
    stores,
    transfers,
    users,
)
from hq_sync.server.console.session import PUBLIC, console_guard
from hq_sync.server.console.view import TABLET_UI, ConsoleView
from hq_sync.server.service.errors import HqError

STATIC = Path(__file__).with_name("static")
TABLET_STATIC = TABLET_UI / "static"
PAGES = [auth, dashboard, stores, catalog, promotions, members, transfers, reports, statements, audit, users]


def _login_required(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    if request.method == "GET" and not request.url.path.endswith("/events"):
        return Redirect(path=f"/hq/ui/login?next={quote(exc.next_path)}", status_code=303)
    ui = ConsoleView(request)
    return ui.render("error.html", status=401, title=ui._("Please log in"),
                     message=ui._("Your session has ended. Log in again to go on."))


def _forbidden(request: Request[Any, Any, Any], exc: Forbidden) -> Response[str]:
    ui = ConsoleView(request)
    return ui.render("error.html", status=403, title=ui._("Not allowed"),
                     message=ui._("Your role may not open this page or do this."))


def _refused(request: Request[Any, Any, Any], exc: HqError) -> Response[str]:
    """A service refusal that reached no page's own handling: a forged URL or form (403 out_of_scope),
    an unknown store or user (404), a bad value (4xx). Nothing was written."""
    ui = ConsoleView(request)
    if exc.code == "out_of_scope":
        return ui.render("error.html", status=403, title=ui._("Not allowed"),
                         message=ui._("This is outside your regions."))
    if exc.status == 403:
        return _forbidden(request, Forbidden(exc.code))
    title = ui._("Not found") if exc.status == 404 else ui._("Not done")
    return ui.render("error.html", status=exc.status if 400 <= exc.status < 500 else 400, title=title,
                     message=ui.problem(exc))


def _stale_form(request: Request[Any, Any, Any], exc: FormError) -> Response[str]:
    ui = ConsoleView(request)
    return ui.render("error.html", status=400, title=ui._("The form has expired"),
                     message=ui._("Reload the page and try again."))


def console_error_page(request: Request[Any, Any, Any], status: int) -> Response[str]:
    """A page-shaped answer for a console URL that does not exist or a malformed query."""
    ui = ConsoleView(request)
    if status == 404:
        return ui.render("error.html", status=404, title=ui._("Not found"), message=ui._("There is no such page."))
    return ui.render("error.html", status=status, title=ui._("Not done"),
                     message=ui._("The request could not be read. Go back and try again."))


def console_router() -> Router:
    static = create_static_files_router(path="/hq/ui/static", directories=[STATIC, TABLET_STATIC], opt=PUBLIC,
                                        cache_control=None, include_in_schema=False)
    return PageRouter(
        path="/",
        route_handlers=[*(route for module in PAGES for route in module.ROUTES), static],
        guards=[console_guard],
        middleware=[page_headers],
        exception_handlers={LoginRequired: _login_required, Forbidden: _forbidden, FormError: _stale_form,
                            HqError: _refused},
        include_in_schema=False,
    )
