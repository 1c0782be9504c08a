"""The Devices page: registered scales, scanners, printers and displays with their live status and last
readings (kept current over server-sent events), the tills they serve, devices waiting for approval,
credentials (shown once), a test print and a weight reading.

Everything goes through the same functions as the devices API (`edge/device_link/routes.py`): the
device list, approving, rotating, and `DeviceLink.command` for a print. With the device hub off the
page explains that instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import ServerSentEvent

from devices import profiles, topics
from edge.device_link.link import DeviceLink, DeviceTimeout, LinkDown
from edge.device_link.live import DeviceView
from edge.device_link.routes import (
    ApproveRequest,
    DeviceCredentials,
    approve_pending,
    device_views,
    rotate_credentials,
)
from edge.errors import ApiError
from edge.hub import Hub
from edge.ui.live import live_fragments
from edge.ui.nav import N_
from edge.ui.session import page
from edge.ui.view import UiView

PRINT_TIMEOUT_S = 4.0  # a test page: the printer confirms within a second or two when it is there
HEARTBEAT_S = 5.0  # a bridge publishes a scale's weight when it changes and at least this often
WEIGHT_TIMEOUT_S = 6.0  # so a running scale always gives a reading within this wait
POLL_S = 1.0  # the live table's look at the board

KIND_NAMES = {
    "scale": N_("Scale"),
    "scanner": N_("Scanner"),
    "printer": N_("Receipt printer"),
    "display": N_("Customer display"),
    "drawer": N_("Cash drawer"),
    "unknown": N_("Unknown kind"),
}
STATUS_NAMES = {"online": N_("Online"), "offline": N_("Offline"), "unknown": N_("Not seen yet")}
STATUS_CLASSES = {"online": "good", "offline": "bad", "unknown": "warn"}
WEIGHT_STATES = {
    "ok": N_("stable"),
    "motion": N_("moving"),
    "overload": N_("over capacity"),
    "underload": N_("below zero"),
    "error": N_("scale error"),
}
PAIRING_ROLES = ("printer", "drawer", "display", "scale", "scanner")


class DeviceRow(msgspec.Struct):
    view: DeviceView
    tills: list[str]  # till ids; "*" for every till without its own pairing
    can_print: bool
    can_weigh: bool


def _link(request: Request[Any, Any, Any]) -> DeviceLink | None:
    link = getattr(request.app.state, "devices", None)
    return link if isinstance(link, DeviceLink) else None


def _rows(hub: Hub, link: DeviceLink) -> list[DeviceRow]:
    paired: dict[str, list[str]] = {}
    for till_id, pairing in sorted(hub.config.tills.items(), key=lambda item: (item[0] == "*", item[0])):
        for device_id in {getattr(pairing, role) for role in PAIRING_ROLES} - {None}:
            paired.setdefault(device_id, []).append(till_id)
    return [DeviceRow(view=view, tills=paired.get(view.device_id, []), can_print="print" in view.capabilities,
                      can_weigh=view.kind == "scale" and "weigh" in view.capabilities)
            for view in device_views(link)]


def _pending(link: DeviceLink) -> list[Any]:
    return link.browser.pending() if link.browser is not None else []


def _profile_choices() -> list[tuple[str, str]]:
    try:
        found = profiles.load_all()
    except profiles.ProfileError:
        return []
    return [(p.id, f"{p.vendor} {p.model}") for p in found.values()]


def _table_context(ui: UiView, link: DeviceLink) -> dict[str, Any]:
    return {"rows": _rows(ui.hub, link), "kinds": KIND_NAMES, "statuses": STATUS_NAMES,
            "status_classes": STATUS_CLASSES, "weight_states": WEIGHT_STATES, "new_id": _new_id}


def _pending_context(ui: UiView, link: DeviceLink) -> dict[str, Any]:
    if not ui.may("devices.manage"):
        return {"pending": [], "profile_choices": []}
    return {"pending": _pending(link), "profile_choices": _profile_choices()}


def _new_id() -> str:
    return str(uuid.uuid4())


def _off_reason(hub: Hub) -> str:
    return "disabled" if not hub.config.devices_enabled else "failed"


@get("/ui/devices", opt=page("devices.read"), sync_to_thread=False)
def devices_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = UiView(request)
    _ = ui._
    link = _link(request)
    if link is None:
        return ui.render("devices/index.html", title=_("Devices"), link=None, off=_off_reason(ui.hub))
    return ui.render("devices/index.html", title=_("Devices"), link=link, off="", **_table_context(ui, link),
                     **_pending_context(ui, link))


def _signature(link: DeviceLink, pending: bool) -> tuple[Any, ...]:
    registered = link.registered()
    statuses = tuple(link.board.status(device_id) for device_id in registered)
    names = tuple(sorted(p.name for p in _pending(link))) if pending else ()
    return link.board.messages, tuple(registered), statuses, names


@get("/ui/devices/events", opt=page("devices.read"))
async def devices_events(request: Request[Any, Any, Any]) -> ServerSentEvent:
    """The table (and, for a manager, the pending list) again whenever the board or the registry changed."""
    ui = UiView(request)
    link = _link(request)
    manager = ui.may("devices.manage")

    if link is None:
        return live_fragments(ui, lambda: None, lambda _before, _now: {}, poll_s=POLL_S, running=lambda: False)

    def render(before: tuple[Any, ...] | None, now: tuple[Any, ...]) -> dict[str, str]:
        fragments = {}
        if before is None or now[:3] != before[:3]:
            fragments["device-table"] = ui.fragment("devices/table.html", **_table_context(ui, link))
        if manager and (before is None or now[3] != before[3]):
            fragments["pending-table"] = ui.fragment("devices/pending.html", **_pending_context(ui, link))
        return fragments

    return live_fragments(ui, lambda: _signature(link, manager), render, poll_s=POLL_S,
                          running=lambda: _link(request) is link)


def _credentials_page(ui: UiView, creds: DeviceCredentials, heading: str) -> Response[str]:
    # Shown once: rendered into this answer only (no redirect, no cookie, no log line), never stored in clear.
    return ui.render("devices/credentials.html", title=heading, creds=creds)


@post("/ui/devices/pending/approve", opt=page("devices.manage"))
async def approve(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    link = _link(request)
    if link is None:
        return ui.redirect("/ui/devices", error=_("Devices are off on this hub."))
    try:
        req = msgspec.convert({"device_id": form.get("device_id", "").strip() or None,
                               "profile": form.get("profile", "").strip() or None}, ApproveRequest)
    except msgspec.ValidationError:
        return ui.redirect("/ui/devices", error=_("A device id is 1 to 64 letters, digits, '_', '.' or '-', "
                                                  "starting with a letter or digit."))
    try:
        creds = await approve_pending(link, form.get("name", ""), req)
    except ApiError as exc:
        return ui.redirect("/ui/devices", error=ui.problem(exc))
    return _credentials_page(ui, creds, _("Device %(device)s approved") % {"device": creds.device_id})


@post("/ui/devices/{device_id:str}/rotate", opt=page("devices.manage"))
async def rotate(request: Request[Any, Any, Any], device_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    await ui.form()
    link = _link(request)
    if link is None:
        return ui.redirect("/ui/devices", error=_("Devices are off on this hub."))
    try:
        creds = await rotate_credentials(link, device_id)
    except ApiError as exc:
        return ui.redirect("/ui/devices", error=ui.problem(exc))
    return _credentials_page(ui, creds, _("New credentials for %(device)s") % {"device": creds.device_id})


def _registered(ui: UiView, link: DeviceLink | None, device_id: str) -> tuple[DeviceLink, DeviceView] | str:
    """The device to command, or the error to show."""
    _ = ui._
    if link is None:
        return _("Devices are off on this hub.")
    view = next((v for v in device_views(link) if v.device_id == device_id), None)
    if view is None:
        return _("There is no registered device %(device)s.") % {"device": device_id[:64]}
    return link, view


@post("/ui/devices/{device_id:str}/test-print", opt=page("devices.command"))
async def test_print(request: Request[Any, Any, Any], device_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    found = _registered(ui, _link(request), device_id)
    if isinstance(found, str):
        return ui.redirect("/ui/devices", error=found)
    link, view = found
    if "print" not in view.capabilities:
        return ui.redirect("/ui/devices", error=_("%(device)s cannot print.") % {"device": device_id})
    cmd_id = form.get("cmd_id", "").strip()
    if not 1 <= len(cmd_id) <= 64:
        cmd_id = _new_id()
    lines = [ui.store_name, _("Test page"), _("Printer %(device)s") % {"device": device_id},
             ui.fmt.when(ui.hub.clock.stamp()), "中文 ABC 123"]
    try:
        result = await link.command(device_id, topics.PrintCommand(cmd_id=cmd_id, lines=lines), PRINT_TIMEOUT_S)
    except DeviceTimeout:
        return ui.redirect("/ui/devices", error=_(
            "%(device)s did not answer within %(seconds)s seconds. The page stays queued and prints when the "
            "printer is back.") % {"device": device_id, "seconds": f"{PRINT_TIMEOUT_S:g}"})
    except LinkDown:
        return ui.redirect("/ui/devices", error=_("Devices are off on this hub."))
    if not result.ok:
        return ui.redirect("/ui/devices", error=_("%(device)s did not print: %(reason)s") % {
            "device": device_id, "reason": result.error or "?"})
    return ui.redirect("/ui/devices", notice=_("%(device)s printed the test page.") % {"device": device_id})


def _fresh(event: topics.WeightEvent, within_s: float) -> bool:
    try:
        at = datetime.datetime.fromisoformat(event.ts)
    except ValueError:
        return False
    if at.tzinfo is None:
        return False
    return (datetime.datetime.now(datetime.UTC) - at).total_seconds() <= within_s


async def read_weight(link: DeviceLink, device_id: str, timeout_s: float = WEIGHT_TIMEOUT_S) -> topics.WeightEvent:
    """The scale's current weight. The protocol has no "weigh" command: the bridge polls the scale and
    publishes each change and a heartbeat every few seconds, so a reading younger than the heartbeat is
    the current weight; otherwise wait for the next one. DeviceTimeout when none comes."""
    live = link.board.devices.get(device_id)
    last = live.data.get("weight") if live is not None else None
    if last is not None:
        with contextlib.suppress(msgspec.DecodeError):
            event = msgspec.json.decode(last, type=topics.WeightEvent)
            if _fresh(event, HEARTBEAT_S):
                return event
    queue = link.subscribe(device_id)
    deadline = time.monotonic() + timeout_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            if item is None:
                raise LinkDown("the hub is stopping")
            name, payload = item
            if name == "weight":
                with contextlib.suppress(msgspec.DecodeError):
                    return msgspec.json.decode(payload, type=topics.WeightEvent)
    finally:
        link.unsubscribe(device_id, queue)
    raise DeviceTimeout(f"{device_id} sent no weight within {timeout_s:g} s")


@post("/ui/devices/{device_id:str}/read-weight", opt=page("devices.command"))
async def weight(request: Request[Any, Any, Any], device_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    await ui.form()
    found = _registered(ui, _link(request), device_id)
    if isinstance(found, str):
        return ui.redirect("/ui/devices", error=found)
    link, view = found
    if view.kind != "scale":
        return ui.redirect("/ui/devices", error=_("%(device)s is not a scale.") % {"device": device_id})
    if view.status == "offline":
        return ui.redirect("/ui/devices", error=_("%(device)s is offline.") % {"device": device_id})
    try:
        event = await read_weight(link, device_id)
    except DeviceTimeout:
        return ui.redirect("/ui/devices", error=_(
            "%(device)s sent no reading within %(seconds)s seconds. Check that the scale is on and its bridge "
            "runs.") % {"device": device_id, "seconds": f"{WEIGHT_TIMEOUT_S:g}"})
    except LinkDown:
        return ui.redirect("/ui/devices", error=_("Devices are off on this hub."))
    state = _(WEIGHT_STATES.get(event.state, event.state))
    if event.grams is None:
        return ui.redirect("/ui/devices", notice=_("%(device)s shows no weight (%(state)s).") % {
            "device": device_id, "state": state})
    return ui.redirect("/ui/devices", notice=_("%(device)s reads %(weight)s (%(state)s).") % {
        "device": device_id, "weight": ui.fmt.grams(event.grams), "state": state})


ROUTES: list[Any] = [devices_page, devices_events, approve, rotate, test_print, weight]
