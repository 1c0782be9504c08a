"""The tablet's first page on a box with no store manager yet (edge/appliance/setup.py): the setup code from
the status ticket and the first manager's login. Public, like the login page, with the same one-time form nonce;
on success the new manager is logged in and taken to pairing with HQ."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from edge.api.setup_routes import first_manager
from edge.appliance import setup
from edge.errors import ApiError
from edge.ui.session import PUBLIC
from edge.ui.view import UiView

SETUP_NONCE = "backroom_setup"


def _form(ui: UiView, error: str | None = None, status: int = 200, username: str = "",
          display_name: str = "") -> Response[str]:
    return ui.render_public_form("setup.html", SETUP_NONCE, status, title=ui._("Set up this box"), error=error,
                                 store_id=ui.hub.store_id, username=username, display_name=display_name)


@get("/ui/setup", opt=PUBLIC, sync_to_thread=False)
def setup_page(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    if not setup.needs_setup(ui.hub.db.reader()):
        return ui.redirect("/ui/login", notice=ui._("This box is set up. Log in with your account."))
    return _form(ui)


@post("/ui/setup", opt=PUBLIC)
async def setup_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    fields, fresh = await ui.public_form(SETUP_NONCE)
    username, display_name = fields.get("username", "").strip(), fields.get("display_name", "").strip()

    def again(error: str, status: int) -> Response[str]:
        return _form(ui, error, status, username[:32], display_name[:64])

    if not fresh:
        return again(_("The form expired. Please try again."), 400)
    if fields.get("password", "") != fields.get("password_again", ""):
        return again(_("The two passwords differ."), 400)
    try:
        req = msgspec.convert({"code": fields.get("code", "").strip(), "username": username,
                               "display_name": display_name, "password": fields.get("password", "")},
                              setup.SetupRequest)
    except msgspec.ValidationError:
        return again(_("Enter the setup code, a user name of 2 to 32 lower-case letters, digits, '.', '_' or '-', "
                       "your name, and a password of at least 8 characters."), 400)
    try:
        done = await first_manager(request, ui.hub, req)
    except ApiError as exc:
        if exc.code == "already_set_up":
            return ui.redirect("/ui/login", notice=_("This box is set up. Log in with your account."))
        messages = {
            "bad_setup_code": _("That is not this box's setup code. It is printed on the status ticket."),
            "locked_out": _("Too many wrong setup codes. Try again in a few minutes."),
        }
        return again(messages.get(exc.code, ui.problem(exc)), exc.status)
    return ui.logged_in("/ui/sync/pair", done.token, SETUP_NONCE)


ROUTES: list[Any] = [setup_page, setup_submit]
