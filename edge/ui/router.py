"""The tablet UI as one Litestar router: its pages, its static files (our own CSS and script), the
session guard, HTML answers for a missing login or permission, and the headers every page carries
(Server-Timing for the page benchmark, a strict Content-Security-Policy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Litestar, Request, Response, Router
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from edge.ui.jobs import JobBoard
from edge.ui.pagekit import FormError, PageRouter, page_headers
from edge.ui.pages import dashboard, devices, eod, members, pairing, promotions, shifts, statements, stock, sync, users
from edge.ui.pages import setup as setup_page
from edge.ui.pages.auth import AUTH_ROUTES
from edge.ui.session import PUBLIC, Forbidden, LoginRequired, ui_guard
from edge.ui.view import UiView

STATIC = Path(__file__).with_name("static")


def _login_required(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    if request.method == "GET" and not request.url.path.endswith("/events"):
        return Redirect(path=f"/ui/login?next={quote(exc.next_path)}", status_code=303)
    ui = UiView(request)
    return ui.render("error.html", status=401, title=ui._("Please log in"),
                     message=ui._("Your session has ended. Log in again to go on."))


def _forbidden(request: Request[Any, Any, Any], exc: Forbidden) -> Response[str]:
    ui = UiView(request)
    return ui.render("error.html", status=403, title=ui._("Not allowed"),
                     message=ui._("Your role may not open this page or do this."))


def _stale_form(request: Request[Any, Any, Any], exc: FormError) -> Response[str]:
    ui = UiView(request)
    return ui.render("error.html", status=400, title=ui._("The form has expired"),
                     message=ui._("Reload the page and try again."))


def ui_error_page(request: Request[Any, Any, Any], status: int) -> Response[str]:
    """A page-shaped answer for a tablet URL that does not exist or a malformed query."""
    ui = UiView(request)
    if status == 404:
        return ui.render("error.html", status=404, title=ui._("Not found"), message=ui._("There is no such page."))
    if status == 507:  # storage_full (docs/appliance-care.md)
        return ui.render("error.html", status=507, title=ui._("Not saved"),
                         message=ui._("The hub's disk is full: nothing was saved. Free space on the hub, then try "
                                      "again."))
    return ui.render("error.html", status=status, title=ui._("Not done"),
                     message=ui._("The request could not be read. Go back and try again."))


@asynccontextmanager
async def ui_lifespan(app: Litestar) -> AsyncIterator[None]:
    app.state.jobs = JobBoard()
    try:
        yield
    finally:
        await app.state.jobs.close()


PAGES = (dashboard, stock, members, promotions, devices, sync, pairing, eod, shifts, statements, users, setup_page)


def ui_router() -> Router:
    static = create_static_files_router(path="/ui/static", directories=[STATIC], opt=PUBLIC,
                                        cache_control=None, include_in_schema=False)
    return PageRouter(
        path="/",
        route_handlers=[*AUTH_ROUTES, *(route for module in PAGES for route in module.ROUTES), static],
        guards=[ui_guard],
        middleware=[page_headers],
        exception_handlers={LoginRequired: _login_required, Forbidden: _forbidden, FormError: _stale_form},
        include_in_schema=False,
    )
