"""Cashier shifts against a real hub: open, pay-out, safe drop, close; attribution, roles, retries, bad input.

Worked by hand from edge/seed/demo/items.csv (no member, no promotion on fresh fruit):
  shift S1 at till T1 (cashier 李娜), float 30000:
    sale A  2 x blueberries 1990 = 3980, cash 5000, change 1020
    sale B  1 x navel oranges 2990, wechat 2990
    return of one blueberry from A: 1990 back in cash
    top-up of member M000001: 10000 in cash
    pay-out 1500 (cleaning supplies), safe drop 20000 (manager)
  expected drawer = 30000 + 5000 - 1020 - 1990 + 10000 - 1500 - 20000 = 20490
  a sale at till T9, where no shift is open, still sells and belongs to no shift.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Hub, backroom, start_hub

BLUEBERRIES, ORANGES = "SKU00010", "SKU00012"


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(tmp_path_factory.mktemp("shifts"))
    manager = running.login("manager")
    made = manager.post("/api/v1/users", json={"username": "cashier2", "display_name": "王芳", "role": "cashier",
                                               "pin": "2580"})
    assert made.status_code in (200, 201), made.text
    yield running
    running.close()


def sell(client: httpx.Client, till_id: str, lines: list[tuple[str, int]], tenders: list[dict[str, Any]]
         ) -> dict[str, Any]:
    resp = client.post("/api/v1/sales", json={"sale_id": new_id(), "till_id": till_id, "tenders": tenders,
                                              "lines": [{"sku": sku, "qty": qty} for sku, qty in lines]})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_a_shift_holds_its_tills_trade_and_closes_with_the_counted_drawer(hub: Hub) -> None:
    cashier, manager = hub.login("cashier", till_id="T1"), hub.login("manager")
    other = hub.login("cashier2", pin="2580", till_id="T1")
    guide = hub.login("guide")
    shift_id = new_id()
    body = {"shift_id": shift_id, "till_id": "T1", "opening_float": 30000}
    assert guide.post("/api/v1/shifts", json=body).status_code == 403
    assert cashier.post("/api/v1/shifts", json={**body, "till_id": "T2"}).status_code == 403  # his login's till only
    opened = cashier.post("/api/v1/shifts", json=body)
    assert opened.status_code == 201, opened.text
    shift = opened.json()
    assert (shift["status"], shift["till_id"], shift["opening_float"], shift["figures"]["cash"]["expected"]) == (
        "open", "T1", 30000, 30000)
    assert cashier.post("/api/v1/shifts", json=body).json() == shift  # a retry: the first answer
    assert cashier.post("/api/v1/shifts", json={**body, "opening_float": 1}).status_code == 409
    second = other.post("/api/v1/shifts", json={"shift_id": new_id(), "till_id": "T1"})
    assert (second.status_code, second.json()["code"], second.json()["shift_id"]) == (409, "shift_open", shift_id)

    a = sell(cashier, "T1", [(BLUEBERRIES, 2)], [{"method": "cash", "amount": 5000}])
    sell(cashier, "T1", [(ORANGES, 1)], [{"method": "wechat", "amount": 2990, "reference": "WX-1"}])
    elsewhere = sell(manager, "T9", [(ORANGES, 1)], [{"method": "cash", "amount": 2990}])  # no shift at T9: sells
    back = cashier.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": a["sale_id"],
                                                 "lines": [{"line_no": 1, "qty": 1}]})
    assert back.status_code == 201, back.text
    top = cashier.post("/api/v1/members/M000001/topups", json={"topup_id": new_id(), "amount": 10000,
                                                                "method": "cash"})
    assert top.status_code == 201, top.text

    payout = {"payout_id": new_id(), "amount": 1500, "reason": "清洁用品 cleaning supplies"}
    paid = cashier.post(f"/api/v1/shifts/{shift_id}/payouts", json=payout)
    assert paid.status_code == 201, paid.text
    assert cashier.post(f"/api/v1/shifts/{shift_id}/payouts", json=payout).json() == paid.json()
    assert other.post(f"/api/v1/shifts/{shift_id}/payouts", json={**payout, "payout_id": new_id()}).json()["code"] \
        == "not_your_shift"
    drop = {"drop_id": new_id(), "amount": 20000, "reason": "午间投库 midday drop"}
    assert cashier.post(f"/api/v1/shifts/{shift_id}/drops", json=drop).status_code == 403  # a manager's act
    dropped = manager.post(f"/api/v1/shifts/{shift_id}/drops", json=drop)
    assert dropped.status_code == 201, dropped.text
    too_much = manager.post(f"/api/v1/shifts/{shift_id}/drops", json={**drop, "drop_id": new_id(), "amount": 20491})
    assert (too_much.status_code, too_much.json()["code"], too_much.json()["expected"]) == (422, "drawer_short",
                                                                                            20490)

    live = cashier.get(f"/api/v1/shifts/{shift_id}").json()
    f = live["figures"]
    assert (f["tickets"], f["net"], f["returns"], f["refunded"], f["topped_up"]) == (2, 6970, 1, 1990, 10000)
    assert (f["tenders"]["cash"], f["tenders"]["wechat"], f["refunds"]) == (5000, 2990, {"cash": 1990})
    assert f["cash"] == {"opening_float": 30000, "tendered": 5000, "change": 1020, "refunds": 1990, "topups": 10000,
                         "expected": 20490, "payouts": 1500, "drops": 20000}
    assert [(m["kind"], m["amount"]) for m in live["payouts"] + live["drops"]] == [("payout", 1500), ("drop", 20000)]

    # The day's X report takes the pay-out and the drop out of T1's drawer (the day's float is the default 50000).
    t1 = manager.get("/api/v1/eod/x", params={"till_id": "T1"}).json()["tills"][0]
    assert (t1["cash"]["payouts"], t1["cash"]["drops"], t1["cash"]["expected"]) == (1500, 20000, 40490)

    close = {"counted": 20400, "denominations": {"10000": 2, "200": 2}, "note": "少 0.90"}
    assert other.post(f"/api/v1/shifts/{shift_id}/close", json=close).json()["code"] == "not_your_shift"
    bad = cashier.post(f"/api/v1/shifts/{shift_id}/close", json={**close, "counted": 20500})
    assert (bad.status_code, bad.json()["code"]) == (422, "denominations_mismatch")
    closed = cashier.post(f"/api/v1/shifts/{shift_id}/close", json=close)
    assert closed.status_code == 200, closed.text
    report = closed.json()
    assert (report["status"], report["counted"], report["variance"], report["closed_by"]) == (
        "closed", 20400, -90, live["user_id"])
    assert report["figures"] == {**f, "cash": f["cash"]}
    assert cashier.post(f"/api/v1/shifts/{shift_id}/close", json=close).json() == report  # a retry
    again = manager.post(f"/api/v1/shifts/{shift_id}/close", json={"counted": 1})
    assert (again.status_code, again.json()["code"]) == (409, "shift_closed")
    late = cashier.post(f"/api/v1/shifts/{shift_id}/payouts", json={**payout, "payout_id": new_id()})
    assert (late.status_code, late.json()["code"]) == (409, "shift_closed")
    assert cashier.get(f"/api/v1/shifts/{shift_id}").json() == report  # frozen

    # After the close T1 sells on, in no shift; the next shift starts from nothing.
    sell(cashier, "T1", [(ORANGES, 1)], [{"method": "cash", "amount": 2990}])
    nxt = other.post("/api/v1/shifts", json={"shift_id": new_id(), "till_id": "T1"})
    assert nxt.status_code == 201 and nxt.json()["opening_float"] == 50000  # the hub's till_float
    assert other.get(f"/api/v1/shifts/{nxt.json()['shift_id']}").json()["figures"]["tickets"] == 0
    assert manager.post(f"/api/v1/shifts/{nxt.json()['shift_id']}/close", json={"counted": 50000}).status_code == 200

    listed = manager.get("/api/v1/shifts", params={"till_id": "T1"}).json()
    assert listed["total"] == 2 and [s["shift_id"] for s in listed["shifts"]][1] == shift_id
    assert cashier.get("/api/v1/shifts", params={"till_id": "T9"}).status_code == 403
    assert elsewhere["sale_id"] not in str(listed)

    kinds = [k for (k,) in hub.query("SELECT kind FROM journal WHERE kind LIKE 'shift.%' OR kind LIKE 'cash.%' "
                                     "ORDER BY seq")]
    assert kinds == ["shift.open", "cash.payout", "cash.drop", "shift.close", "shift.open", "shift.close"]
    verified = hub.backroom("journal", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_bad_shift_requests_get_4xx_and_commit_nothing(hub: Hub) -> None:
    manager = hub.login("manager")
    before = hub.query("SELECT count(*) FROM shifts")[0][0]
    for body in ({"shift_id": "nope", "till_id": "T5"}, {"shift_id": new_id(), "till_id": ""},
                 {"shift_id": new_id(), "till_id": "T5", "opening_float": -1},
                 {"shift_id": new_id(), "till_id": "T5", "opening_float": 10 ** 30},
                 {"shift_id": new_id(), "till_id": "T5", "opening_float": "100"}):
        resp = manager.post("/api/v1/shifts", json=body)
        assert (resp.status_code, resp.json()["code"]) == (400, "invalid_field"), (body, resp.text)
    assert manager.post("/api/v1/shifts", content=b"{").json()["code"] == "invalid_json"
    assert hub.query("SELECT count(*) FROM shifts")[0][0] == before
    shift_id = new_id()
    assert manager.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": "T5"}).status_code == 201
    for path, body in ((f"/api/v1/shifts/{shift_id}/payouts", {"payout_id": new_id(), "amount": 0, "reason": "x"}),
                       (f"/api/v1/shifts/{shift_id}/payouts", {"payout_id": new_id(), "amount": 10 ** 30,
                                                              "reason": "x"}),
                       (f"/api/v1/shifts/{shift_id}/payouts", {"payout_id": new_id(), "amount": 1, "reason": ""}),
                       (f"/api/v1/shifts/{shift_id}/drops", {"drop_id": new_id(), "amount": 1, "reason": "x" * 201}),
                       (f"/api/v1/shifts/{shift_id}/close", {"counted": -5}),
                       (f"/api/v1/shifts/{shift_id}/close", {"counted": 100, "denominations": {"0100": 1}})):
        resp = manager.post(path, json=body)
        assert (resp.status_code, resp.json()["code"]) == (400, "invalid_field"), (path, body, resp.text)
    unknown = manager.post(f"/api/v1/shifts/{new_id()}/close", json={"counted": 1})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_shift")
    assert manager.get("/api/v1/shifts/not-a-uuid").status_code in (400, 404)
    assert manager.get("/api/v1/shifts", params={"limit": 10 ** 30}).status_code == 400
    assert manager.get("/api/v1/shifts", params={"status": "maybe"}).status_code == 400
    assert manager.get("/api/v1/shifts", params={"day": "2024-02-30"}).json()["code"] == "invalid_day"
    assert hub.login("guide").get("/api/v1/shifts").status_code == 403
    assert hub.query("SELECT count(*) FROM cash_moves WHERE shift_id = ?", (shift_id,)) == [(0,)]
    paths = set(httpx.get(f"{hub.base_url}/schema/openapi.json").json()["paths"])
    assert {"/api/v1/shifts", "/api/v1/shifts/{shift_id}", "/api/v1/shifts/{shift_id}/close",
            "/api/v1/shifts/{shift_id}/payouts", "/api/v1/shifts/{shift_id}/drops",
            "/api/v1/shifts/{shift_id}/print", "/api/v1/eod/z/{z_no}/print"} <= paths


def test_a_shift_short_beyond_the_alert_and_trade_outside_shifts_are_anomalies(hub: Hub) -> None:
    manager = hub.login("manager")
    shift_id = new_id()
    assert manager.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": "T7",
                                                "opening_float": 10000}).status_code == 201
    inside = sell(manager, "T7", [(ORANGES, 1)], [{"method": "cash", "amount": 2990}])
    assert manager.post(f"/api/v1/shifts/{shift_id}/close", json={"counted": 7990}).json()["variance"] == -5000
    after = sell(manager, "T7", [(ORANGES, 1)], [{"method": "wechat", "amount": 2990, "reference": "WX-T7"}])
    found = [a for a in manager.get("/api/v1/eod/anomalies").json()["anomalies"]
             if a["till_id"] == "T7" and a["kind"] != "missing_cash_count"]  # the day's count is another matter
    assert [(a["kind"], a["severity"], a["refs"], a["amount"]) for a in found] == [
        ("shift_variance", "warning", [shift_id], -5000), ("outside_shift", "info", [after["sale_id"]], 2990)]
    assert inside["sale_id"] not in str(found)


def test_printing_without_a_printer_says_so(hub: Hub, tmp_path: Path) -> None:
    manager = hub.login("manager")
    shift_id = new_id()
    assert manager.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": "T6"}).status_code == 201
    printed = manager.post(f"/api/v1/shifts/{shift_id}/print")
    assert printed.status_code == 200, printed.text
    doc = printed.json()
    assert (doc["printed"], doc["till_id"]) == (False, "T6")  # devices are off on this hub
    assert "交接班 Shift report" in doc["lines"]
    assert any(line.startswith("应有现金 Expected") and line.endswith("500.00") for line in doc["lines"])


def test_the_shift_bench_prints_its_figures_as_json_last() -> None:
    done = backroom("bench", "shifts", "--tills", "1", "--json")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert (figures["bench"], figures["sales"], figures["shift_tickets"], figures["verify_ok"]) == (
        "shifts", 250, 125, True)
    assert figures["report_median_ms"] > 0 and figures["close_ms"] > 0


def test_a_reason_with_control_characters_prints_without_them(hub: Hub) -> None:
    manager = hub.login("manager")
    shift_id = new_id()
    assert manager.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": "T8"}).status_code == 201
    paid = manager.post(f"/api/v1/shifts/{shift_id}/payouts", json={"payout_id": new_id(), "amount": 100,
                                                                    "reason": "ice\x1bp\x00\x19\x19\nbag"})
    assert paid.status_code == 201, paid.text
    lines = manager.post(f"/api/v1/shifts/{shift_id}/print").json()["lines"]
    assert " 支出 ice p    bag          1.00" in lines
    assert not any(ch < " " for line in lines for ch in line)
