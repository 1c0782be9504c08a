"""Logging in and out of the console, the language switch, and the home redirect (the bare address of
HQ and `/hq/ui` lead to the first page the role may open)."""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from edge.ui.i18n import LANGUAGES
from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import pages_for
from hq_sync.server.console.session import COOKIE_PATH, LANG_COOKIE, PUBLIC, SESSION_COOKIE, page
from hq_sync.server.console.view import HOME, ConsoleView, safe_next
from hq_sync.server.service import auth
from hq_sync.server.service.auth import TOKEN_TTL_S, principal_for_token
from hq_sync.server.service.errors import HqError

LOGIN_NONCE = "backroom_hq_login"
MAX_FIELD = 200


@get(["/", "/hq", "/hq/ui"], opt=PUBLIC)
async def home(request: Request[Any, Any, Any]) -> Redirect:
    token = request.cookies.get(SESSION_COOKIE, "")
    principal = await in_thread(principal_for_token, request.app.state.hq.db, token) if token else None
    pages = pages_for(principal.role) if principal else []
    return Redirect(path=pages[0].path if pages else "/hq/ui/login", status_code=303)


def _login_page(ui: ConsoleView, next_path: str, error: str | None = None, status: int = 200) -> Response[str]:
    nonce = secrets.token_urlsafe(16)
    response = ui.render("login.html", status=status, title=ui._("Log in"), next_path=next_path, nonce=nonce,
                         error=error)
    response.set_cookie(LOGIN_NONCE, nonce, path="/hq/ui/login", httponly=True, samesite="strict", max_age=1800)
    return response


@get("/hq/ui/login", opt=PUBLIC, sync_to_thread=False)
def login_form(request: Request[Any, Any, Any], next: str = HOME) -> Response[str]:  # noqa: A002
    return _login_page(ConsoleView(request), safe_next(next[:MAX_FIELD]))


@post("/hq/ui/login", opt=PUBLIC)
async def login_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = ConsoleView(request)
    _ = ui._
    form = await request.form()
    fields = {key: str(value)[:MAX_FIELD] for key, value in form.items() if isinstance(value, str)}
    next_path = safe_next(fields.get("next"))
    nonce = request.cookies.get(LOGIN_NONCE)
    if not nonce or fields.get("nonce") != nonce:
        return _login_page(ui, next_path, _("The login form expired. Please try again."), 400)
    username, password = fields.get("username", "").strip(), fields.get("password", "")
    if not username or not password:
        return _login_page(ui, next_path, _("Enter your user name and password."), 400)
    try:
        token, _role, _expires = await in_thread(auth.login, ui.hq.db, username, password)
    except HqError as exc:
        messages = {"bad_credentials": _("Wrong user name or password."),
                    "locked_out": _("Too many failed attempts. Try again in a few minutes.")}
        message = messages.get(exc.code) or ui.problem(exc)
        return _login_page(ui, next_path, message, exc.status)
    response = Redirect(path=next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="strict",
                        max_age=TOKEN_TTL_S)
    response.delete_cookie(LOGIN_NONCE, path="/hq/ui/login")
    return response


@post("/hq/ui/logout", opt=page("dashboard.read"))
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    await ui.form()
    await in_thread(auth.logout, ui.hq.db, request.cookies.get(SESSION_COOKIE, ""))
    response = Redirect(path="/hq/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@get("/hq/ui/lang/{code:str}", opt=PUBLIC, sync_to_thread=False)
def switch_language(code: str, next: str = HOME) -> Redirect:  # noqa: A002
    cookies = [Cookie(key=LANG_COOKIE, value=code, path="/", samesite="lax", max_age=365 * 86400)] \
        if code in LANGUAGES else []
    return Redirect(path=safe_next(next[:MAX_FIELD]), status_code=303, cookies=cookies)


ROUTES = [home, login_form, login_submit, logout, switch_language]
