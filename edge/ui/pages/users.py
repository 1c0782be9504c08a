"""The users page (员工): the store's staff accounts, a form to add one, and per account the role, a PIN
or password reset and deactivation.

The rules (who may manage whom, which secret a role logs in with, weak PINs) are edge/auth/users.py,
called here as the /api/v1/users routes call them. The create form carries a client UUID drawn with
the page, so a double tap makes one account. Secrets are hashed off the event loop, never written back
into a page, a notice or a log. A role change, a reset or a deactivation ends the account's open
logins (`hub.user_changed`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post

from edge.auth import users
from edge.auth.passwords import hash_secret, verify_secret
from edge.auth.users import Caller, User, UserCreate
from edge.errors import ApiError
from edge.hub import Hub
from edge.ui.nav import N_, ROLE_NAMES
from edge.ui.session import page
from edge.ui.view import UiView

_PERM = page("users.manage")
ROLE_ORDER = ("hq_admin", "region_manager", "store_manager", "cashier", "sales_guide")

FIELD_PROBLEMS = {
    "username": N_("A user name has 2 to 32 characters: lower-case letters, digits, '.', '_' or '-', "
                   "and starts with a letter or digit."),
    "display_name": N_("Enter the person's name, at most 64 characters."),
    "pin": N_("A PIN has 4 to 8 digits."),
    "password": N_("A password has at least 8 characters."),
}
NEEDS_SECRET = {
    "pin": N_("A cashier or sales guide logs in with a PIN: enter a PIN of 4 to 8 digits."),
    "password": N_("A manager logs in with a password: enter a password of at least 8 characters."),
}


def _caller(ui: UiView) -> Caller:
    assert ui.claims is not None  # the guard let only a session in
    return Caller(user_id=ui.claims.user_id, role=ui.claims.role, till_id=ui.claims.till_id)


def _user_path(user_id: str) -> str:
    return f"/ui/users/{quote(user_id, safe='')}"


def _roles(ui: UiView, caller: Caller) -> list[tuple[str, str]]:
    """The roles the caller may give, highest first, in the reader's words."""
    return [(role, ui._(ROLE_NAMES[role])) for role in ROLE_ORDER if users.outranks(caller.role, role)]


def _field_problem(ui: UiView, exc: msgspec.ValidationError) -> str:
    text = str(exc)
    for field, message in FIELD_PROBLEMS.items():
        if f"`$.{field}`" in text:
            return ui._(message)
    return ui._("Choose a role from the list, and reload the page if this repeats.")


def _secret_fields(form: dict[str, str], kind: users.SecretKind) -> dict[str, str]:
    """The one secret the role uses, taken from its own field (the other field is not read)."""
    value = form.get(kind, "")
    value = value.strip() if kind == "pin" else value
    return {kind: value} if value else {}


@get("/ui/users", opt=_PERM, sync_to_thread=False)
def users_page(request: Request[Any, Any, Any], hub: Hub) -> Response[str]:
    ui = UiView(request)
    caller = _caller(ui)
    staff = users.list_users(hub.db.reader(), caller)
    return ui.render("users/index.html", title=ui._("Users"), staff=staff, roles=_roles(ui, caller),
                     role_names={role: ui._(name) for role, name in ROLE_NAMES.items()}, new_id=uuid.uuid4())


@get("/ui/users/{user_id:str}", opt=_PERM, sync_to_thread=False)
def user_page(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[str]:
    ui = UiView(request)
    _ = ui._
    caller = _caller(ui)
    try:
        user = users.get_user(hub.db.reader(), user_id, caller)
    except ApiError:
        return ui.render("error.html", status=404, title=_("Not found"),
                         message=_("There is no such user. Go back to the list of users."))
    return ui.render("users/detail.html", title=user.display_name, user=user, path=_user_path(user.user_id),
                     roles=_roles(ui, caller), role_names={role: _(name) for role, name in ROLE_NAMES.items()},
                     own=user.user_id == caller.user_id)


async def _already_made(hub: Hub, caller: Caller, user_id: str, req: UserCreate, kind: users.SecretKind,
                        secret: str) -> User:
    """The form sent again (a double tap): the account it made answers it; anything else is a conflict."""
    found = users.get_user(hub.db.reader(), user_id, caller)
    same = (found.username, found.display_name, found.role) == (req.username, req.display_name.strip(), req.role)
    stored = users.stored_hash(hub.db.reader(), user_id, kind)
    if not same or not await asyncio.to_thread(verify_secret, secret, stored):
        raise ApiError(409, "account_form_reused", "this form was already used for a different account")
    return found


@post("/ui/users", opt=_PERM)
async def user_create(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    caller = _caller(ui)
    role = form.get("role", "")
    kind = users.secret_kind(role)
    fields = {"user_id": form.get("user_id", ""), "username": form.get("username", "").strip(),
              "display_name": form.get("display_name", ""), "role": role, **_secret_fields(form, kind)}
    if kind not in fields and role in users.RANK:
        return ui.redirect("/ui/users", error=_(NEEDS_SECRET[kind]))
    try:
        req = msgspec.convert(fields, UserCreate)
    except msgspec.ValidationError as exc:
        return ui.redirect("/ui/users", error=_field_problem(ui, exc))
    assert req.user_id is not None
    user_id = str(req.user_id)
    try:
        users.check_grant(caller, req.role)
        kind, secret = users.pick_secret(req.role, req.username, req.password, req.pin)
        if hub.db.reader().execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
            made = await _already_made(hub, caller, user_id, req, kind, secret)
        else:
            hashed = await asyncio.to_thread(hash_secret, secret)
            at = hub.clock.stamp()
            if not await hub.db.write(lambda conn: users.create_user(conn, user_id, req, kind, hashed, caller, at)):
                made = await _already_made(hub, caller, user_id, req, kind, secret)
            else:
                made = users.get_user(hub.db.reader(), user_id, caller)
    except ApiError as exc:
        return ui.redirect("/ui/users", error=ui.problem(exc))
    text = (_("Account %(username)s made. %(name)s logs in with the PIN you set, at a till.") if kind == "pin"
            else _("Account %(username)s made. %(name)s logs in with the password you set."))
    return ui.redirect("/ui/users", notice=text % {"username": made.username, "name": made.display_name})


@post("/ui/users/{user_id:str}/role", opt=_PERM)
async def user_role(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    caller = _caller(ui)
    back = _user_path(user_id)
    role = form.get("role", "")
    if role not in users.RANK:
        return ui.redirect(back, error=_("Choose a role from the list, and reload the page if this repeats."))
    try:
        now = users.get_user(hub.db.reader(), user_id, caller)
        users.check_target(caller, user_id, now.role)
        users.check_grant(caller, role)
        kind = users.secret_kind(role)
        hashed = None
        if kind != users.secret_kind(now.role):
            given = _secret_fields(form, kind)
            if not given:
                return ui.redirect(back, error=_(NEEDS_SECRET[kind]))
            try:
                checked = msgspec.convert({"role": role, **given}, users.RoleChange)
            except msgspec.ValidationError as exc:
                return ui.redirect(back, error=_field_problem(ui, exc))
            _kind, secret = users.pick_secret(role, now.username, checked.password, checked.pin)
            hashed = await asyncio.to_thread(hash_secret, secret)
        at = hub.clock.stamp()
        await hub.db.write(lambda conn: users.change_role(conn, user_id, role, hashed, caller, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    hub.user_changed(user_id)
    if hashed is not None:
        hub.throttle.succeeded(now.username)
    if role == now.role:
        return ui.redirect(back, notice=_("%(name)s already has this role; nothing changed.")
                           % {"name": now.display_name})
    return ui.redirect(back, notice=_("%(name)s is now %(role)s and logs in again to go on.")
                       % {"name": now.display_name, "role": _(ROLE_NAMES[role])})


async def _reset(request: Request[Any, Any, Any], hub: Hub, user_id: str, kind: users.SecretKind) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    caller = _caller(ui)
    back = _user_path(user_id)
    given = _secret_fields(form, kind)
    if not given:
        return ui.redirect(back, error=_(NEEDS_SECRET[kind]))
    try:
        secret = (msgspec.convert(given, users.PinReset).pin if kind == "pin"
                  else msgspec.convert(given, users.PasswordReset).password)
    except msgspec.ValidationError as exc:
        return ui.redirect(back, error=_field_problem(ui, exc))
    try:
        now = users.get_user(hub.db.reader(), user_id, caller)
        users.check_target(caller, user_id, now.role)
        users.pick_secret(now.role, now.username, secret if kind == "password" else None,
                          secret if kind == "pin" else None)
        hashed = await asyncio.to_thread(hash_secret, secret)
        at = hub.clock.stamp()
        username = await hub.db.write(lambda conn: users.reset_secret(conn, user_id, kind, hashed, caller, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    hub.user_changed(user_id)
    hub.throttle.succeeded(username)  # a locked-out cashier with a new PIN can log in at once
    text = (_("New PIN set for %(name)s. Tell it to them in person; their open logins have ended.") if kind == "pin"
            else _("New password set for %(name)s. Tell it to them in person; their open logins have ended."))
    return ui.redirect(back, notice=text % {"name": now.display_name})


@post("/ui/users/{user_id:str}/pin", opt=_PERM)
async def user_pin(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[Any]:
    return await _reset(request, hub, user_id, "pin")


@post("/ui/users/{user_id:str}/password", opt=_PERM)
async def user_password(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[Any]:
    return await _reset(request, hub, user_id, "password")


async def _set_active(request: Request[Any, Any, Any], hub: Hub, user_id: str, active: bool) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    await ui.form()
    caller = _caller(ui)
    back = _user_path(user_id)
    try:
        at = hub.clock.stamp()
        await hub.db.write(lambda conn: users.set_active(conn, user_id, active, caller, at))
        user = users.get_user(hub.db.reader(), user_id, caller)
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    hub.user_changed(user_id)
    text = (_("%(name)s is active again and can log in.") if active
            else _("%(name)s is deactivated: logged out everywhere and cannot log in."))
    return ui.redirect(back, notice=text % {"name": user.display_name})


@post("/ui/users/{user_id:str}/deactivate", opt=_PERM)
async def user_deactivate(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[Any]:
    return await _set_active(request, hub, user_id, False)


@post("/ui/users/{user_id:str}/activate", opt=_PERM)
async def user_activate(request: Request[Any, Any, Any], hub: Hub, user_id: str) -> Response[Any]:
    return await _set_active(request, hub, user_id, True)


ROUTES: list[Any] = [users_page, user_page, user_create, user_role, user_pin, user_password, user_deactivate,
                     user_activate]
