"""The tablet's Devices page: the empty state of a hub with devices off (the test default), and on a hub
with its own Mosquitto and mDNS: a device announced on the network is approved through the page's form,
its credentials are shown once and it is listed; the cashier may not approve or rotate; a scale that
sends nothing gives a clear error."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from zeroconf import ServiceInfo, Zeroconf

from devices import broker, discovery
from tests.conftest import Hub, backroom
from tests.hubproc import serve_with_devices, stop_with_devices
from tests.ui_support import csrf_of, post_form, ui_login

INTERFACE = broker.lan_address()
CONFIG = """
[tills."*"]
scale = "scale-9"
"""


# -- devices off ---------------------------------------------------------------------------------------------

def test_with_devices_off_the_page_explains_it_in_both_languages(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/devices")
    assert page.status_code == 200
    assert "<h1>设备</h1>" in page.text
    assert "本店中枢已关闭设备功能。" in page.text
    assert "data-live" not in page.text  # nothing to follow
    english = ui_login(hub, "cashier", lang="en").get("/ui/devices")
    assert english.status_code == 200
    assert "Devices are turned off on this hub." in english.text


def test_with_devices_off_an_approval_answers_with_a_notice_not_an_error(hub: Hub) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    resp = post_form(tablet, "/ui/devices", "/ui/devices/pending/approve",
                     {"name": "x", "device_id": "", "profile": ""})
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/devices")
    assert "Devices are off on this hub." in tablet.get("/ui/devices").text


# -- devices on: a hub with its broker and mDNS ---------------------------------------------------------------

@pytest.fixture(scope="module")
def devices_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("uidevices")
    data = root / "data"
    backroom("seed", "--demo", "--data", str(data))
    (root / "hub.toml").write_text(CONFIG, "utf-8")
    log_path = root / "serve.log"
    proc, url, _ = serve_with_devices(data, log_path, root / "hub.toml")
    running = Hub(proc, url, data, log_path)
    try:
        yield running
    finally:
        running.close()
        stop_with_devices(proc, data)


def _announce(device_id: str) -> tuple[Zeroconf, ServiceInfo]:
    name = f"Scale {uuid.uuid4().hex[:8]}.{discovery.DEVICE_SERVICE}"
    info = ServiceInfo(discovery.DEVICE_SERVICE, name, addresses=[socket.inet_aton(INTERFACE)], port=4001,
                       server=f"{device_id}.local.", properties={"profile": "cas-pd-ii", "device_id": device_id})
    zc = Zeroconf(interfaces=[INTERFACE])
    zc.register_service(info)
    return zc, info


def _wait_pending(tablet: httpx.Client, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if f'name="name" value="{name}"' in tablet.get("/ui/devices").text:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name} never showed as pending")


def _credentials(html: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>(?:<code>)?([^<]+)(?:</code>)?</dd>", html))


def test_a_manager_approves_a_device_announced_on_the_network_and_sees_it_listed(devices_hub: Hub) -> None:
    tablet = ui_login(devices_hub, "manager", lang="en")
    zc, info = _announce("scale-9")
    try:
        first = tablet.get("/ui/devices").text
        assert 'data-live="/ui/devices/events"' in first
        _wait_pending(tablet, info.name)
        approved = post_form(tablet, "/ui/devices", "/ui/devices/pending/approve",
                             {"name": info.name, "device_id": "scale-9", "profile": ""})
    finally:
        zc.unregister_service(info)
        zc.close()
    assert approved.status_code == 200, approved.text
    assert "<h1>Device scale-9 approved</h1>" in approved.text
    assert approved.headers["cache-control"] == "no-store"
    creds = _credentials(approved.text)
    assert {k: creds[k] for k in ("Device id", "User name", "Firmware profile")} == {
        "Device id": "scale-9", "User name": "dev-scale-9", "Firmware profile": "cas-pd-ii"}
    record = next(r for r in broker.devices(devices_hub.data_dir) if r.device_id == "scale-9")
    assert broker.verify_password(creds["Password"], record.password_hash)
    assert creds["Password"] not in devices_hub.log()  # shown once, never logged
    listed = tablet.get("/ui/devices").text
    row = listed[listed.index("<td>scale-9<br>"):]
    row = row[:row.index("</tr>")]
    assert "Scale" in row and "CAS" in row  # kind, and the profile's make
    assert '<span class="tag warn">Not seen yet</span>' in row  # registered; no bridge has connected
    assert "Every other till" in row  # config [tills."*"] scale = "scale-9"
    assert "Read weight" in row and "Rotate credentials" in row
    assert f'value="{info.name}"' not in listed  # no longer pending
    chinese = ui_login(devices_hub, "manager").get("/ui/devices").text
    assert "尚未上线" in chinese and "轮换凭据" in chinese


def test_a_bad_device_id_is_refused_with_a_notice_and_registers_nothing(devices_hub: Hub) -> None:
    tablet = ui_login(devices_hub, "manager", lang="en")
    zc, info = _announce("scale-8")
    try:
        _wait_pending(tablet, info.name)
        refused = post_form(tablet, "/ui/devices", "/ui/devices/pending/approve",
                            {"name": info.name, "device_id": "bad id/with slash", "profile": ""})
        assert (refused.status_code, refused.headers["location"]) == (303, "/ui/devices")
        page = tablet.get("/ui/devices").text
        assert "A device id is 1 to 64 letters" in page
        assert f'name="name" value="{info.name}"' in page  # still waiting
    finally:
        zc.unregister_service(info)
        zc.close()
    assert "scale-8" not in {r.device_id for r in broker.devices(devices_hub.data_dir)}


def test_a_manager_rotates_credentials_from_the_page(devices_hub: Hub) -> None:
    backroom("devices", "add", "--device-id", "printer-7", "--profile", "epson-tm-t20iii", "--data",
             str(devices_hub.data_dir))
    old = next(r for r in broker.devices(devices_hub.data_dir) if r.device_id == "printer-7")
    tablet = ui_login(devices_hub, "manager", lang="en")
    assert 'data-confirm="Give printer-7 new credentials?' in tablet.get("/ui/devices").text
    rotated = post_form(tablet, "/ui/devices", "/ui/devices/printer-7/rotate", {})
    assert rotated.status_code == 200 and "<h1>New credentials for printer-7</h1>" in rotated.text
    creds = _credentials(rotated.text)
    new = next(r for r in broker.devices(devices_hub.data_dir) if r.device_id == "printer-7")
    assert new.password_hash != old.password_hash
    assert broker.verify_password(creds["Password"], new.password_hash)


def test_a_cashier_sees_no_approve_or_rotate_and_a_forged_post_is_refused(devices_hub: Hub) -> None:
    backroom("devices", "add", "--device-id", "scale-5", "--profile", "mettler-toledo-8217", "--data",
             str(devices_hub.data_dir))
    cashier = ui_login(devices_hub, "cashier", lang="en")
    page = cashier.get("/ui/devices")
    assert page.status_code == 200 and "<td>scale-5<br>" in page.text
    assert "Read weight" in page.text  # devices.command
    assert "Rotate credentials" not in page.text and "Approve" not in page.text
    assert "Waiting for approval" not in page.text
    token = csrf_of(page.text)
    before = {r.device_id: r.password_hash for r in broker.devices(devices_hub.data_dir)}
    assert cashier.post("/ui/devices/scale-5/rotate", data={"csrf": token}).status_code == 403
    forged = cashier.post("/ui/devices/pending/approve", data={"csrf": token, "name": "x", "device_id": "evil-1"})
    assert forged.status_code == 403 and "Not allowed" in forged.text
    assert {r.device_id: r.password_hash for r in broker.devices(devices_hub.data_dir)} == before
    guide = ui_login(devices_hub, "guide", lang="en")
    assert "Read weight" not in guide.get("/ui/devices").text  # a sales guide only looks
    assert guide.post("/ui/devices/scale-5/read-weight", data={"csrf": token}).status_code == 403


def test_reading_a_scale_whose_bridge_never_came_says_so(devices_hub: Hub) -> None:
    backroom("devices", "add", "--device-id", "scale-6", "--profile", "mettler-toledo-8217", "--data",
             str(devices_hub.data_dir))
    cashier = ui_login(devices_hub, "cashier", lang="en")
    started = time.monotonic()
    resp = post_form(cashier, "/ui/devices", "/ui/devices/scale-6/read-weight", {})
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/devices")
    assert 5.5 < time.monotonic() - started < 10
    assert "scale-6 sent no reading within 6 seconds." in cashier.get("/ui/devices").text
    unknown = post_form(cashier, "/ui/devices", "/ui/devices/nope/test-print", {"cmd_id": str(uuid.uuid4())})
    assert unknown.status_code == 303
    assert "There is no registered device nope." in cashier.get("/ui/devices").text


def test_the_live_table_streams_fragments(devices_hub: Hub) -> None:
    tablet = ui_login(devices_hub, "manager", lang="en")
    with tablet.stream("GET", "/ui/devices/events", timeout=10) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        assert next(lines) == "event: fragments"
        data = next(lines)
    assert data.startswith('data: {"device-table":"<div id=\\"device-table\\"')
    assert '"pending-table":' in data  # a manager also gets the pending list
