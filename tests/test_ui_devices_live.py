"""The tablet's Devices page with devices that answer: a hub with devices on, `printer-1` (an Epson TM-T20III
simulator on TCP) and `scale-1` (a Mettler Toledo 8217 simulator on a pty), each behind its real bridge.
The live table shows both online; "Test print" prints the test page (the store's Chinese name in GB18030,
then the cut); "Read weight" shows the scale's reading; a sales guide may do neither."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from test_devices_support import Rig, device_rig

from tests.conftest import Hub
from tests.ui_support import csrf_of, post_form, ui_login

CONFIG = """
store_name = "鲜果铺 中山路店"

[tills."*"]
printer = "printer-1"
scale = "scale-1"
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with device_rig(tmp_path_factory.mktemp("uidevices-live"), CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def hub(rig: Rig) -> Hub:
    return Hub(rig.hub, rig.url, rig.data, rig.log)


def _row(html: str, device_id: str) -> str:
    row = html[html.index(f"<td>{device_id}<br>"):]
    return row[:row.index("</tr>")]


def _wait_row(tablet: httpx.Client, device_id: str, *texts: str, timeout_s: float = 15) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        row = _row(tablet.get("/ui/devices").text, device_id)
        if all(text in row for text in texts):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"{device_id} never showed {texts}; last row:\n{row}")
        time.sleep(0.2)


def _scale(rig: Rig, line: str) -> None:
    assert rig.scale.stdin is not None
    rig.scale.stdin.write(line + "\n")
    rig.scale.stdin.flush()


def _flash(tablet: httpx.Client) -> str:
    page = tablet.get("/ui/devices").text
    start = page.index('<p class="flash')
    return page[page.index(">", start) + 1:page.index("</p>", start)]


def test_the_live_table_shows_the_printer_and_the_scale_online(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    printer = _wait_row(tablet, "printer-1", '<span class="tag good">在线</span>')
    scale = _wait_row(tablet, "scale-1", '<span class="tag good">在线</span>', "0.000 kg")
    assert "小票打印机" in printer and "Epson" in printer and "打印测试页" in printer
    assert "电子秤" in scale and "Mettler Toledo" in scale and "读取重量" in scale
    with tablet.stream("GET", "/ui/devices/events", timeout=10) as events:
        lines = events.iter_lines()
        assert next(lines) == "event: fragments"
        data = next(lines)
    table = json.loads(data.removeprefix("data: "))["device-table"]
    assert '<span class="tag good">在线</span>' in _row(table, "printer-1")
    assert '<span class="tag good">在线</span>' in _row(table, "scale-1")


def test_a_manager_prints_the_test_page_in_chinese_ending_with_a_cut(hub: Hub, rig: Rig) -> None:
    tablet = ui_login(hub, "manager")
    _wait_row(tablet, "printer-1", "在线")
    cmd_id = str(uuid.uuid4())
    resp = post_form(tablet, "/ui/devices", "/ui/devices/printer-1/test-print", {"cmd_id": cmd_id})
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/devices")
    assert _flash(tablet) == "printer-1 已打印测试页。"
    page = rig.printer.page(timeout=10).splitlines()
    assert page[:3] == ["鲜果铺 中山路店", "测试页", "打印机 printer-1"]
    assert re.fullmatch(r"20\d\d/\d{1,2}/\d{1,2} \d\d:\d\d", page[3])  # when it printed
    assert page[4:] == ["中文 ABC 123", "[PARTIAL CUT]"]
    again = post_form(tablet, "/ui/devices", "/ui/devices/printer-1/test-print", {"cmd_id": cmd_id})
    assert again.status_code == 303
    assert _flash(tablet) == "printer-1 已打印测试页。"
    with pytest.raises(AssertionError):
        rig.printer.page(timeout=1.5)  # a double tap (the same cmd_id) prints once


def test_a_cashier_prints_the_test_page_in_english(hub: Hub, rig: Rig) -> None:
    tablet = ui_login(hub, "cashier", lang="en")
    resp = post_form(tablet, "/ui/devices", "/ui/devices/printer-1/test-print", {"cmd_id": str(uuid.uuid4())})
    assert resp.status_code == 303
    assert _flash(tablet) == "printer-1 printed the test page."
    page = rig.printer.page(timeout=10).splitlines()
    assert page[:3] == ["鲜果铺 中山路店", "Test page", "Printer printer-1"]
    assert page[4:] == ["中文 ABC 123", "[PARTIAL CUT]"]


def test_a_cashier_reads_a_stable_weight_from_the_scale(hub: Hub, rig: Rig) -> None:
    tablet = ui_login(hub, "cashier")
    _scale(rig, "weight 1500")
    _wait_row(tablet, "scale-1", '1.500 kg <span class="tag good">稳定</span>')
    resp = post_form(tablet, "/ui/devices", "/ui/devices/scale-1/read-weight", {})
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/devices")
    assert _flash(tablet) == "scale-1 读数为 1.500 kg（稳定）。"


def test_a_manager_reads_an_overloaded_scale_as_no_weight(hub: Hub, rig: Rig) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    _scale(rig, "overload")
    _wait_row(tablet, "scale-1", '<span class="tag warn">over capacity</span>')
    resp = post_form(tablet, "/ui/devices", "/ui/devices/scale-1/read-weight", {})
    assert resp.status_code == 303
    assert _flash(tablet) == "scale-1 shows no weight (over capacity)."
    _scale(rig, "remove")
    _wait_row(tablet, "scale-1", '0.000 kg <span class="tag good">stable</span>')
    post_form(tablet, "/ui/devices", "/ui/devices/scale-1/read-weight", {})
    assert _flash(tablet) == "scale-1 reads 0.000 kg (stable)."


def test_a_sales_guide_may_neither_print_nor_read_the_scale(hub: Hub, rig: Rig) -> None:
    guide = ui_login(hub, "guide")
    page = guide.get("/ui/devices")
    assert page.status_code == 200 and "<td>printer-1<br>" in page.text
    assert "打印测试页" not in page.text and "读取重量" not in page.text
    token = csrf_of(page.text)  # the log-out form's
    printing = guide.post("/ui/devices/printer-1/test-print", data={"csrf": token, "cmd_id": str(uuid.uuid4())})
    weighing = guide.post("/ui/devices/scale-1/read-weight", data={"csrf": token})
    assert (printing.status_code, weighing.status_code) == (403, 403)
    assert "无权操作" in printing.text and "无权操作" in weighing.text
    with pytest.raises(AssertionError):
        rig.printer.page(timeout=1.5)  # nothing printed
