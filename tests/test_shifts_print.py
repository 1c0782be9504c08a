"""A shift's close report and the Z closing print on the till's receipt printer: a real `backroom serve` with its
own Mosquitto, an Epson TM-T20III simulator on TCP behind its bridge (tests/test_devices_support.py's rig).

Worked by hand: float 20000; one sale of 2 x cherry tomatoes 990 = 1980 paid 2000 cash (change 20); a
pay-out of 500. Expected drawer 20000 + 2000 - 20 - 500 = 21480, counted 21500: variance +0.20.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from test_devices_support import Output, Rig, device_rig

CONFIG = """
[tills."*"]
printer = "printer-1"
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with device_rig(tmp_path_factory.mktemp("shiftprint"), CONFIG) as running:
        yield running


def _login(rig: Rig, body: dict[str, str]) -> httpx.Client:
    resp = httpx.post(f"{rig.url}/api/v1/auth/login", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return httpx.Client(base_url=rig.url, timeout=15, headers={"Authorization": f"Bearer {resp.json()['token']}"})


def _page_with(printer: Output, text: str, timeout_s: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        page = printer.page(timeout=max(0.1, deadline - time.monotonic()))
        if text in page:
            return page.splitlines()


def _online(client: httpx.Client) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        devices = {d["device_id"]: d for d in client.get("/api/v1/devices").json()["devices"]}
        if devices.get("printer-1", {}).get("status") == "online":
            return
        time.sleep(0.05)
    raise AssertionError("printer-1 did not come online")


def test_closing_a_shift_and_the_day_prints_both_reports(rig: Rig) -> None:
    cashier = _login(rig, {"username": "cashier", "pin": "1234", "till_id": "T1"})
    manager = _login(rig, {"username": "manager", "password": "manager-demo"})
    _online(manager)
    shift_id = str(uuid.uuid4())
    assert cashier.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": "T1",
                                                "opening_float": 20000}).status_code == 201
    sold = cashier.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1",
                                               "lines": [{"sku": "SKU00011", "qty": 2}],
                                               "tenders": [{"method": "cash", "amount": 2000}]})
    assert sold.status_code == 201, sold.text
    assert cashier.post(f"/api/v1/shifts/{shift_id}/payouts", json={
        "payout_id": str(uuid.uuid4()), "amount": 500, "reason": "冰块 ice"}).status_code == 201
    closed = cashier.post(f"/api/v1/shifts/{shift_id}/close", json={"counted": 21500})
    assert closed.status_code == 200, closed.text
    assert closed.json()["variance"] == 20

    page = _page_with(rig.printer, "交接班 Shift report")
    assert page[1:3] == ["交接班 Shift report", "Till T1           李娜（收银员）"]
    assert page[6:10] == ["单数 Tickets                   1", "销售 Net sales             19.80",
                          "税 Tax                      1.63", "现金 Cash                  20.00"]
    assert page[11:] == ["备用金 Float              200.00", "现金收入 Cash in           20.00",
                         "找零 Change                -0.20", "现金退款 Cash refunds       0.00",
                         "现金充值 Cash top-ups       0.00", "支出 Pay-outs              -5.00",
                         "投库 Safe drops             0.00", "应有现金 Expected         214.80",
                         " 支出 冰块 ice              5.00", "实点 Counted              215.00",
                         "差额 Variance               0.20", "-" * 32,
                         f"Journal {closed.json()['close_seq']} {closed.json()['journal_hash'][:16]}",
                         "[PARTIAL CUT]"]
    retry = cashier.post(f"/api/v1/shifts/{shift_id}/close", json={"counted": 21500})
    assert retry.json() == closed.json()  # a retried close prints nothing new
    with pytest.raises(AssertionError):
        _page_with(rig.printer, "交接班 Shift report", timeout_s=1.5)

    z = manager.post("/api/v1/eod/z", json={"till_id": "T1"})
    assert z.status_code == 201, z.text
    page = _page_with(rig.printer, "日结 Z closing 1")
    assert page[4] == "操作员 By           张伟（店长）"
    assert "应有现金 Expected         514.80" in page  # the day's float of T1 is the hub's 50000
    gt = page.index("总累计 Grand total (GT)")
    assert page[gt - 7:gt + 6] == [
        "本期 Period", " 单数 Tickets                  1", " 销售 Net                  19.80",
        " 税 Tax                     1.63",
        " 退款 Refunded              0.00", " 净额 Balance              19.80", " 绝对值 Absolute           19.80",
        "总累计 Grand total (GT)", " 单数 Tickets                  1", " 销售 Net                  19.80",
        " 税 Tax                     1.63", " 退款 Refunded              0.00", " 净额 Balance              19.80"]
    assert any(line.startswith(f"Journal {z.json()['journal_seq']} ") for line in page)

    again = manager.post("/api/v1/eod/z/1/print", json={"till_id": "T1"})
    assert (again.status_code, again.json()["printed"]) == (200, True)
    assert "日结 Z closing 1" in _page_with(rig.printer, "日结 Z closing 1")
