"""Logging in and out at the tablet, the language switch, the home redirect, and watching a job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, ServerSentEvent

from edge.auth.login import LoginRequest, authenticate
from edge.errors import ApiError
from edge.stopping import nap, stopping
from edge.ui.i18n import LANGUAGES
from edge.ui.jobs import Job, JobBoard
from edge.ui.nav import pages_for
from edge.ui.session import LANG_COOKIE, PUBLIC, SESSION_COOKIE, page, session_claims
from edge.ui.view import UiView, safe_next

LOGIN_NONCE = "backroom_login"


@get(["/", "/ui"], opt=PUBLIC, sync_to_thread=False)
def home(request: Request[Any, Any, Any]) -> Redirect:
    claims = session_claims(request)
    pages = pages_for(claims.role) if claims else []
    return Redirect(path=pages[0].path if pages else "/ui/login", status_code=303)


def _login_page(ui: UiView, next_path: str, error: str | None = None, status: int = 200) -> Response[str]:
    from edge.appliance.setup import needs_setup

    tills = sorted(t for t in ui.hub.config.tills if t != "*")
    return ui.render_public_form("login.html", LOGIN_NONCE, status, next_path=next_path, tills=tills, error=error,
                                 setup_needed=needs_setup(ui.hub.db.reader()))


@get("/ui/login", opt=PUBLIC, sync_to_thread=False)
def login_form(request: Request[Any, Any, Any], next: str = "/ui") -> Response[str]:  # noqa: A002
    return _login_page(UiView(request), safe_next(next, "/ui"))


@post("/ui/login", opt=PUBLIC)
async def login_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    fields, fresh = await ui.public_form(LOGIN_NONCE)
    next_path = safe_next(fields.get("next"), "/ui")
    if not fresh:
        return _login_page(ui, next_path, _("The login form expired. Please try again."), 400)
    pin_login = fields.get("mode") == "pin"
    try:
        req = msgspec.convert({
            "username": fields.get("username", "").strip(),
            "password": None if pin_login else fields.get("password", ""),
            "pin": fields.get("pin", "").strip() if pin_login else None,
            "till_id": (fields.get("till_id", "").strip() or None) if pin_login else None,
        }, LoginRequest)
        result = authenticate(ui.hub, req)
    except msgspec.ValidationError:
        return _login_page(ui, next_path, _("Enter a user name and a password, or a PIN of 4 to 8 digits and a till."),
                           400)
    except ApiError as exc:
        messages = {
            "bad_credentials": _("Wrong user name, password or PIN."),
            "locked_out": _("Too many failed attempts. Try again in a few minutes."),
            "till_required": _("A PIN login is made at a till: choose the till."),
        }
        return _login_page(ui, next_path, messages.get(exc.code, ui.problem(exc)), exc.status)
    return ui.logged_in(next_path, result.token, LOGIN_NONCE)


@post("/ui/logout", opt=page("items.read"))
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    ui = UiView(request)
    await ui.form()
    response = Redirect(path="/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@get("/ui/lang/{code:str}", opt=PUBLIC, sync_to_thread=False)
def switch_language(code: str, next: str = "/ui") -> Redirect:  # noqa: A002
    cookies = [Cookie(key=LANG_COOKIE, value=code, path="/", samesite="lax", max_age=365 * 86400)] \
        if code in LANGUAGES else []
    return Redirect(path=safe_next(next, "/ui"), status_code=303, cookies=cookies)


def _job_for(request: Request[Any, Any, Any], job_id: str) -> Job | None:
    board: JobBoard = request.app.state.jobs
    job = board.get(job_id)
    claims = UiView(request).claims
    return job if job is not None and claims is not None and job.owner == claims.user_id else None


@get("/ui/jobs/{job_id:str}", opt=page("items.read"), sync_to_thread=False)
def job_page(request: Request[Any, Any, Any], job_id: str) -> Response[str]:
    ui = UiView(request)
    job = _job_for(request, job_id)
    if job is None:
        return ui.render("error.html", status=404, title=ui._("Not found"),
                         message=ui._("This job is unknown; it may have finished before the hub restarted."))
    return ui.render("job.html", job=job)


@get("/ui/jobs/{job_id:str}/events", opt=page("items.read"))
async def job_events(request: Request[Any, Any, Any], job_id: str) -> ServerSentEvent:
    job = _job_for(request, job_id)

    async def updates() -> AsyncIterator[str]:
        if job is None:
            yield msgspec.json.encode({"state": "failed", "message": "unknown job"}).decode()
            return
        last = None
        while not stopping():  # the hub told to stop: the stream ends (edge/stopping.py)
            now = (job.done, job.total, job.state)
            if now != last:
                last = now
                yield msgspec.json.encode({"done": job.done, "total": job.total, "percent": job.percent,
                                           "state": job.state, "message": job.message, "link": job.link}).decode()
            if job.state != "running":
                return
            await nap(0.2)

    return ServerSentEvent(updates(), event_type="progress")


AUTH_ROUTES = [home, login_form, login_submit, logout, switch_language, job_page, job_events]
