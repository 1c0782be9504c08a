"""HQ users: the list, a new user, and per user a role and regions change, a password reset, and
deactivation or reactivation (each ends the user's logins where it should; all audited)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Redirect

from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import users
from hq_sync.server.service.access import HQ_ROLES
from hq_sync.server.service.errors import HqError, now_text

MAX_TEXT = 200


def _context(ui: ConsoleView) -> dict[str, Any]:
    return {"roles": [(role, ui.role_label(role)) for role in HQ_ROLES], "regions": users.list_regions(ui.hq.db)}


@get("/hq/ui/users", opt=page("users.read"), sync_to_thread=True)
def user_list(request: Request[Any, Any, Any]) -> Response[str]:
    ui = ConsoleView(request)
    return ui.render("users/index.html", title=ui._("HQ users"), users=users.list_users(ui.hq.db, ui.who),
                     **_context(ui))


@get("/hq/ui/users/{username:str}", opt=page("users.read"), sync_to_thread=True)
def user_detail(request: Request[Any, Any, Any], username: str) -> Response[str]:
    ui = ConsoleView(request)
    user = users.user_view(ui.hq.db, ui.who, username[:MAX_TEXT])
    return ui.render("users/detail.html", title=user.username, user=user, **_context(ui))


def _decoded(data: dict[str, Any], type_: type[Any]) -> Any:
    """A form through the same struct (and bounds) as the API's JSON."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise HqError(422, "invalid_field", str(exc)) from None


@post("/hq/ui/users", opt=page("users.manage"))
async def create_submit(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form_lists()
    one = {key: values[-1][:MAX_TEXT] for key, values in form.items() if values}
    try:
        req = _decoded({"username": one.get("username", "").strip(), "password": one.get("password", ""),
                        "role": one.get("role", ""), "display_name": one.get("display_name", "").strip(),
                        "regions": [r[:MAX_TEXT] for r in form.get("regions", [])]}, users.UserIn)
    except HqError as exc:
        return ui.redirect("/hq/ui/users", error=ui.problem(exc))
    return await ui.act(f"/hq/ui/users/{req.username}" if users.USERNAME.fullmatch(req.username) else "/hq/ui/users",
                      ui._("User %(name)s is created.") % {"name": req.username},
                      users.create_user, ui.hq.db, ui.who, req, now_text())


@post("/hq/ui/users/{username:str}/role", opt=page("users.manage"))
async def role_submit(request: Request[Any, Any, Any], username: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form_lists()
    back = f"/hq/ui/users/{username}"
    try:
        req = _decoded({"role": (form.get("role") or [""])[-1][:MAX_TEXT],
                        "regions": [r[:MAX_TEXT] for r in form.get("regions", [])]}, users.RoleIn)
    except HqError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return await ui.act(back, ui._("The role is changed; the user's logins have ended."),
                      users.set_role, ui.hq.db, ui.who, username, req, now_text())


@post("/hq/ui/users/{username:str}/password", opt=page("users.manage"))
async def password_submit(request: Request[Any, Any, Any], username: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    back = f"/hq/ui/users/{username}"
    try:
        req = _decoded({"password": form.get("password", "")[:MAX_TEXT]}, users.PasswordIn)
    except HqError:
        return ui.redirect(back, error=ui._("A password has 8 to 128 characters."))
    return await ui.act(back, ui._("The password is reset; the user's logins have ended."),
                      users.reset_password, ui.hq.db, ui.who, username, req, now_text())


@post("/hq/ui/users/{username:str}/deactivate", opt=page("users.manage"))
async def deactivate_submit(request: Request[Any, Any, Any], username: str) -> Redirect:
    ui = ConsoleView(request)
    await ui.form()
    return await ui.act(f"/hq/ui/users/{username}", ui._("The user is deactivated; his logins have ended."),
                      users.set_active, ui.hq.db, ui.who, username, False, now_text())


@post("/hq/ui/users/{username:str}/activate", opt=page("users.manage"))
async def activate_submit(request: Request[Any, Any, Any], username: str) -> Redirect:
    ui = ConsoleView(request)
    await ui.form()
    return await ui.act(f"/hq/ui/users/{username}", ui._("The user is active again."),
                      users.set_active, ui.hq.db, ui.who, username, True, now_text())


ROUTES = [user_list, user_detail, create_submit, role_submit, password_submit, deactivate_submit, activate_submit]
