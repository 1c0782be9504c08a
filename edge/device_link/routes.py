"""The devices API: list, command, follow a device's readings (SSE), approve pending devices, rotate credentials.

    GET  /api/v1/devices                            devices.read    registered devices, live status, last reading
    POST /api/v1/devices/{id}/cmd/{action}          devices.command the MQTT command body -> its result
    GET  /api/v1/devices/{id}/stream                devices.read    Server-Sent Events: weight, scan, status
    GET  /api/v1/devices/pending                    devices.manage  seen on mDNS, not approved
    POST /api/v1/devices/pending/{name}/approve     devices.manage  register it: its credentials, once
    POST /api/v1/devices/{id}/rotate                devices.manage  new credentials, once
    GET  /api/v1/tills/{till_id}/devices            devices.read    the till's paired printer, drawer, display, ...

`print` with a `sale_id` is filled in here: the hub sends the sale's receipt document, so bridges
never read the hub's database.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.response import ServerSentEvent, ServerSentEventMessage
from msgspec import Meta

from devices import broker, topics
from edge.api.openapi import body_operation
from edge.config import TillDevices
from edge.device_link.link import DeviceLink, DeviceTimeout, LinkDown, link_of
from edge.device_link.live import DeviceView
from edge.device_link.receipts import decode_sale
from edge.errors import ApiError
from edge.hub import Hub

KEEPALIVE_S = 15.0
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _link(request: Request[Any, Any, Any]) -> DeviceLink:
    try:
        return link_of(request.app.state)
    except LinkDown as exc:
        raise ApiError(503, "devices_unavailable", str(exc)) from None


def _record(link: DeviceLink, device_id: str) -> broker.DeviceRecord:
    record = link.registered().get(device_id)
    if record is None:
        raise ApiError(404, "unknown_device", f"no registered device {device_id[:64]}")
    return record


# -- list --------------------------------------------------------------------------------------------

class DeviceList(msgspec.Struct):
    devices: list[DeviceView]


def device_views(link: DeviceLink) -> list[DeviceView]:
    """Every registered device with its live status and last readings, by id (the API's list and the tablet's)."""
    views = []
    for record in link.registered().values():
        profile = link.profile(record.profile)
        views.append(link.board.view(
            record, kind=profile.kind if profile else "unknown", vendor=profile.vendor if profile else "",
            model=profile.model if profile else "", capabilities=list(profile.capabilities) if profile else []))
    return sorted(views, key=lambda v: v.device_id)


@get("/api/v1/devices", opt=_perm("devices.read"), sync_to_thread=False)
def list_devices(request: Request[Any, Any, Any]) -> DeviceList:
    return DeviceList(device_views(_link(request)))


# -- commands ----------------------------------------------------------------------------------------

class CommandBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The MQTT command's body (docs/devices.md); `cmd_id` defaults to a new UUID. For the OpenAPI document."""

    cmd_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    sale_id: uuid.UUID | None = None
    lines: list[str] | None = None
    pin: Literal[2, 5] | None = None  # the drawer's kick pin (devices/topics.py)
    cut: bool | None = None


async def _command_of(request: Request[Any, Any, Any], hub: Hub, link: DeviceLink, action: str) -> topics.Command:
    raw = (await request.body()).strip() or b"{}"
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the command body must be a JSON object")
    cmd_id = body.get("cmd_id")
    if cmd_id is None:
        body["cmd_id"] = cmd_id = str(uuid.uuid4())
    if not isinstance(cmd_id, str) or not 1 <= len(cmd_id) <= 64:
        raise ApiError(400, "invalid_field", "cmd_id must be a string of 1 to 64 characters (a UUID)")
    if "receipt" in body:
        raise ApiError(400, "invalid_field", "send a sale_id; the hub fills in the receipt")
    if action == "print" and body.get("sale_id") is not None:
        sale_id = body["sale_id"]
        try:
            sale_uuid = uuid.UUID(str(sale_id))
        except ValueError:
            raise ApiError(400, "invalid_field", "sale_id must be a UUID") from None
        row = hub.db.reader().execute("SELECT response FROM sales WHERE sale_id = ?", (str(sale_uuid),)).fetchone()
        if row is None:
            raise ApiError(404, "unknown_sale", f"no sale {sale_uuid}")
        body.pop("sale_id")
        try:
            command = topics.decode_command(action, msgspec.json.encode(body))
        except topics.BadCommand as exc:
            raise ApiError(400, "invalid_field", str(exc)) from None
        assert isinstance(command, topics.PrintCommand)
        receipt = link.receipt(decode_sale(bytes(row[0])))
        return msgspec.structs.replace(command, sale_id=str(sale_uuid), receipt=receipt)
    try:
        return topics.decode_command(action, msgspec.json.encode(body))
    except topics.BadCommand as exc:
        raise ApiError(400, "invalid_field", str(exc)) from None


@post("/api/v1/devices/{device_id:str}/cmd/{action:str}", opt=_perm("devices.command"), status_code=200,
      operation_class=body_operation(CommandBody))
async def device_command(request: Request[Any, Any, Any], hub: Hub, device_id: str,
                         action: str) -> topics.CommandResult:
    link = _link(request)
    record = _record(link, device_id)
    if action not in topics.ACTIONS:
        raise ApiError(422, "unsupported_action", f"unknown action {action[:32]!r}; one of {', '.join(topics.ACTIONS)}")
    profile = link.profile(record.profile)
    if profile is not None and not profile.can(action):
        raise ApiError(422, "unsupported_action", f"{device_id} ({profile.id}) cannot {action}")
    command = await _command_of(request, hub, link, action)
    if command.__struct_config__.tag == "print" and isinstance(command, topics.PrintCommand) \
            and command.receipt is None and command.lines is None:
        raise ApiError(400, "invalid_field", "print needs a sale_id or lines")
    try:
        return await link.command(device_id, command)
    except DeviceTimeout as exc:
        queued = "; the job stays queued and prints when the printer is back" if action == "print" else ""
        raise ApiError(504, "device_timeout", f"{exc}{queued}", cmd_id=command.cmd_id) from None
    except LinkDown as exc:
        raise ApiError(503, "devices_unavailable", str(exc)) from None


# -- the reading stream --------------------------------------------------------------------------------

@get("/api/v1/devices/{device_id:str}/stream", opt=_perm("devices.read"))
async def device_stream(request: Request[Any, Any, Any], device_id: str) -> ServerSentEvent:
    """`event: weight|scan|status`, `data:` the MQTT payload. The current status and last reading come first."""
    link = _link(request)
    _record(link, device_id)
    queue = link.subscribe(device_id)
    live = link.board.devices.get(device_id)
    first: list[tuple[str, bytes]] = [("status", msgspec.json.encode(link.board.status(device_id)))]
    if live is not None:
        first += [(name, payload) for name, payload in live.data.items()]

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        try:
            for name, payload in first:
                yield ServerSentEventMessage(data=payload.decode("utf-8", "replace"), event=name)
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                if item is None:  # the hub is stopping
                    return
                name, payload = item
                yield ServerSentEventMessage(data=payload.decode("utf-8", "replace"), event=name)
        finally:
            link.unsubscribe(device_id, queue)

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- pending devices and credentials ----------------------------------------------------------------

class PendingView(msgspec.Struct):
    name: str
    service_type: str
    host: str
    port: int
    addresses: list[str]
    properties: dict[str, str]


class PendingList(msgspec.Struct):
    pending: list[PendingView]


@get("/api/v1/devices/pending", opt=_perm("devices.manage"), sync_to_thread=False)
def pending_devices(request: Request[Any, Any, Any]) -> PendingList:
    link = _link(request)
    found = link.browser.pending() if link.browser is not None else []
    return PendingList([PendingView(p.name, p.service_type, p.host, p.port, p.addresses, p.properties)
                        for p in found])


class ApproveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    device_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] | None = None
    profile: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class DeviceCredentials(msgspec.Struct):
    device_id: str
    username: str
    password: str
    mqtt_url: str
    profile: str
    port: str | None = None  # where the bridge finds the device (a network printer), when known


async def _approve_body(request: Request[Any, Any, Any]) -> ApproveRequest:
    raw = (await request.body()).strip() or b"{}"
    try:
        return msgspec.json.decode(raw, type=ApproveRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_field", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON: {exc}") from None


@post("/api/v1/devices/pending/{name:str}/approve", opt=_perm("devices.manage"), status_code=201,
      operation_class=body_operation(ApproveRequest))
async def approve_device(request: Request[Any, Any, Any], name: str) -> DeviceCredentials:
    """Register a device seen on mDNS. The answer carries its password: shown once, stored only hashed."""
    link = _link(request)
    return await approve_pending(link, name, await _approve_body(request))


async def approve_pending(link: DeviceLink, name: str, req: ApproveRequest) -> DeviceCredentials:
    """Register the pending device `name` (the API's approve and the tablet's Approve button)."""
    found = next((p for p in (link.browser.pending() if link.browser else []) if p.name == name), None)
    if found is None:
        raise ApiError(404, "unknown_pending", f"no pending device {name[:128]!r}")
    profile_id = req.profile or found.properties.get("profile")
    if not profile_id:
        raise ApiError(400, "profile_required", "name the device's firmware profile (`backroom profiles list`)")
    profile = link.profile(profile_id)
    if profile is None:
        raise ApiError(400, "unknown_profile", f"no firmware profile {profile_id[:64]!r}")
    device_id = req.device_id or found.properties.get("device_id") \
        or _SLUG.sub("-", name.split("._", 1)[0]).strip("-.").lower()[:64]
    if not topics.valid_segment(device_id):
        raise ApiError(400, "invalid_field", f"device id {device_id!r}: letters, digits, '_', '.', '-' only")
    if device_id in link.registered():
        raise ApiError(409, "device_exists", f"{device_id} is already registered; rotate its credentials instead")
    assert link.browser is not None
    link.browser.approve(name)
    creds = await asyncio.to_thread(broker.add_device, link.data_dir, device_id, profile.id)
    port = f"tcp://{found.addresses[0] if found.addresses else found.host}:{found.port}" \
        if profile.kind == "printer" and found.port else None
    return DeviceCredentials(device_id=device_id, username=creds.username, password=creds.password,
                             mqtt_url=creds.mqtt_url, profile=profile.id, port=port)


@post("/api/v1/devices/{device_id:str}/rotate", opt=_perm("devices.manage"), status_code=200)
async def rotate_device(request: Request[Any, Any, Any], device_id: str) -> DeviceCredentials:
    """New broker credentials for a device; the old password stops working at the device's next connection."""
    return await rotate_credentials(_link(request), device_id)


async def rotate_credentials(link: DeviceLink, device_id: str) -> DeviceCredentials:
    """New broker credentials for a registered device (the API's rotate and the tablet's button)."""
    record = _record(link, device_id)
    creds = await asyncio.to_thread(broker.rotate, link.data_dir, device_id)
    return DeviceCredentials(device_id=device_id, username=creds.username, password=creds.password,
                             mqtt_url=creds.mqtt_url, profile=record.profile)


# -- till pairing ------------------------------------------------------------------------------------------

class TillPairing(msgspec.Struct):
    till_id: str
    printer: str | None
    drawer: str | None
    display: str | None
    scale: str | None
    scanner: str | None


@get("/api/v1/tills/{till_id:str}/devices", opt=_perm("devices.read"), sync_to_thread=False)
def till_devices(hub: Hub, till_id: str) -> TillPairing:
    """Which devices a till uses (config `[tills.ID]`, else `[tills."*"]`): the scale to follow, the scanner..."""
    paired = hub.config.tills.get(till_id) or hub.config.tills.get("*") or TillDevices()
    return TillPairing(till_id=till_id[:64], printer=paired.printer, drawer=paired.drawer, display=paired.display,
                       scale=paired.scale, scanner=paired.scanner)


DEVICE_ROUTES = [list_devices, pending_devices, device_command, device_stream, approve_device, rotate_device,
                 till_devices]
