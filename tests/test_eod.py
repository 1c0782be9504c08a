"""End of day against a real hub: X report, cash counts, the Z report, reconciliation anomalies.

The day of trade (`trade`), worked out by hand from edge/seed/demo/items.csv (no member, no promotion
on fresh fruit; VAT 9 %, tax = net - round(net / 1.09)); opening float 50000 per till (HubConfig):
  till T1 (cashier):  A  2 x blueberries 1990 = 3980, tax 329, paid cash 5000, change 1020
                      B  1 x navel oranges 2990, tax 247, paid card 2990 (reference CARD-0001)
                      return of one blueberry from A: 1990 back in cash
                      top-up of member M000001: 10000 in cash
  till T2 (manager):  C  grapes 2990 (tax 247) + cherry tomatoes 990 (tax 82) = 3980, tax 329, alipay 3980
  T1 expected cash = 50000 + 5000 - 1020 - 1990 + 10000 = 61990;  T2 = 50000 (no cash taken)
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from edge.eod.anomalies import first_negative

if TYPE_CHECKING:
    from conftest import Hub

BLUEBERRIES, ORANGES, GRAPES, TOMATOES = "SKU00010", "SKU00012", "SKU00013", "SKU00011"
NO_TENDERS = {"cash": 0, "card": 0, "alipay": 0, "wechat": 0, "unionpay": 0, "stored_value": 0, "points": 0}


def new_id() -> str:
    return str(uuid.uuid4())


def sell(client: httpx.Client, till_id: str, lines: list[tuple[str, int]], tenders: list[dict[str, Any]]
         ) -> dict[str, Any]:
    resp = client.post("/api/v1/sales", json={"sale_id": new_id(), "till_id": till_id, "tenders": tenders,
                                              "lines": [{"sku": sku, "qty": qty} for sku, qty in lines]})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def trade(hub: Hub) -> dict[str, Any]:
    cashier, manager = hub.login("cashier"), hub.login("manager")
    a = sell(cashier, "T1", [(BLUEBERRIES, 2)], [{"method": "cash", "amount": 5000}])
    b = sell(cashier, "T1", [(ORANGES, 1)], [{"method": "card", "amount": 2990, "reference": "CARD-0001"}])
    c = sell(manager, "T2", [(GRAPES, 1), (TOMATOES, 1)], [{"method": "alipay", "amount": 3980, "reference": "ALI-1"}])
    assert (a["total"], a["change"], b["total"], c["total"]) == (3980, 1020, 2990, 3980)
    returned = cashier.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": a["sale_id"],
                                                     "lines": [{"line_no": 1, "qty": 1}]})
    assert returned.status_code == 201, returned.text
    assert returned.json()["refunds"] == [{"method": "cash", "amount": 1990}]
    topup = cashier.post("/api/v1/members/M000001/topups", json={"topup_id": new_id(), "amount": 10000,
                                                                  "method": "cash"})
    assert topup.status_code == 201, topup.text
    return {"cashier": cashier, "manager": manager, "a": a, "b": b, "c": c}


def count(client: httpx.Client, till_id: str, counted: int, **extra: Any) -> httpx.Response:
    return client.post("/api/v1/eod/cash-counts", json={"count_id": new_id(), "till_id": till_id,
                                                        "counted": counted, **extra})


def test_x_report_adds_up_the_day_per_till_and_for_the_store(fresh_hub: Hub) -> None:
    day = trade(fresh_hub)
    resp = day["manager"].get("/api/v1/eod/x")
    assert resp.status_code == 200, resp.text
    x = resp.json()
    assert (x["closed"], x["z_no"]) == (False, None)
    t1, t2 = x["tills"]
    assert t1["till_id"] == "T1"
    assert (t1["tickets"], t1["gross"], t1["discount"], t1["net"], t1["tax"]) == (2, 6970, 0, 6970, 576)
    assert (t1["returns"], t1["refunded"], t1["refunds"]) == (1, 1990, {"cash": 1990})
    assert (t1["topups"], t1["topped_up"], t1["topups_by_method"]) == (1, 10000, {"cash": 10000})
    assert t1["tenders"] == {**NO_TENDERS, "cash": 5000, "card": 2990}
    assert t1["cash"] == {"opening_float": 50000, "tendered": 5000, "change": 1020, "refunds": 1990,
                          "topups": 10000, "expected": 61990}
    assert t1["count"] is None
    assert t2["till_id"] == "T2"
    assert (t2["tickets"], t2["net"], t2["tax"], t2["returns"], t2["topups"]) == (1, 3980, 329, 0, 0)
    assert t2["tenders"] == {**NO_TENDERS, "alipay": 3980}
    assert t2["cash"]["expected"] == 50000
    store = x["store"]
    assert (store["tickets"], store["gross"], store["net"], store["tax"], store["refunded"]) == (3, 10950, 10950,
                                                                                                  905, 1990)
    assert store["tenders"] == {**NO_TENDERS, "cash": 5000, "card": 2990, "alipay": 3980}
    assert store["cash"] == {"opening_float": 100000, "tendered": 5000, "change": 1020, "refunds": 1990,
                             "topups": 10000, "expected": 111990}

    # A cashier sees his own till only, and no store totals.
    own = day["cashier"].get("/api/v1/eod/x").json()
    assert (own["store"], [t["till_id"] for t in own["tills"]]) == (None, ["T1"])
    assert own["tills"][0]["cash"]["expected"] == 61990
    assert day["cashier"].get("/api/v1/eod/x", params={"till_id": "T2"}).status_code == 403

    # A float the manager sets for the day moves the expected cash.
    floated = day["manager"].post("/api/v1/eod/floats", json={"till_id": "T2", "amount": 30000})
    assert floated.status_code == 200, floated.text
    t2 = day["manager"].get("/api/v1/eod/x", params={"till_id": "T2"}).json()["tills"][0]
    assert t2["cash"]["opening_float"] == 30000 and t2["cash"]["expected"] == 30000

    # Yesterday had no trade.
    empty = day["manager"].get("/api/v1/eod/x", params={"day": "2020-01-01"}).json()
    assert (empty["tills"], empty["store"]["tickets"], empty["store"]["cash"]["expected"]) == ([], 0, 0)


def test_cash_count_records_the_variance_against_the_drawer(fresh_hub: Hub) -> None:
    day = trade(fresh_hub)
    cashier, manager = day["cashier"], day["manager"]
    count_id = new_id()
    body = {"count_id": count_id, "till_id": "T1", "counted": 61490,
            "denominations": {"10000": 5, "5000": 2, "1000": 1, "200": 2, "50": 1, "20": 2}}
    first = cashier.post("/api/v1/eod/cash-counts", json=body)
    assert first.status_code == 201, first.text
    counted = first.json()
    assert (counted["counted"], counted["expected"], counted["variance"]) == (61490, 61990, -500)
    assert counted["denominations"] == {"10000": 5, "5000": 2, "1000": 1, "200": 2, "50": 1, "20": 2}
    again = cashier.post("/api/v1/eod/cash-counts", json=body)  # a retry: the same answer, nothing new
    assert (again.status_code, again.json()) == (201, counted)
    assert cashier.post("/api/v1/eod/cash-counts", json={**body, "counted": 61000}).status_code == 409
    assert fresh_hub.query("SELECT count(*) FROM cash_counts") == [(1,)]

    # A cashier counts only his own till; a manager any.
    assert count(cashier, "T2", 50000).status_code == 403
    recount = count(manager, "T1", 61990)
    assert recount.status_code == 201 and recount.json()["variance"] == 0
    t1 = manager.get("/api/v1/eod/x", params={"till_id": "T1"}).json()["tills"][0]
    assert (t1["count"]["count_id"], t1["count"]["variance"]) == (recount.json()["count_id"], 0)


def test_z_report_closes_the_day_once_and_is_journaled(fresh_hub: Hub) -> None:
    day = trade(fresh_hub)
    cashier, manager = day["cashier"], day["manager"]
    assert count(manager, "T1", 61990).status_code == 201
    assert count(manager, "T2", 50000).status_code == 201
    assert cashier.post("/api/v1/eod/z", json={}).status_code == 403

    closed = manager.post("/api/v1/eod/z", json={})
    assert closed.status_code == 201, closed.text
    z = closed.json()
    assert (z["z_no"], z["x"]["closed"], z["x"]["z_no"], z["x"]["store"]["net"]) == (1, True, 1, 10950)
    assert [(c["till_id"], c["variance"]) for c in z["counts"]] == [("T1", 0), ("T2", 0)]
    assert z["anomalies"] == []
    again = manager.post("/api/v1/eod/z", json={"day": z["day"]})
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["z_no"]) == ("day_closed", 1)

    assert fresh_hub.query("SELECT kind, ref, seq FROM journal WHERE kind = 'z_report'") == [
        ("z_report", "Z1", z["journal_seq"])]
    assert fresh_hub.query("SELECT kind, ref FROM outbox WHERE kind = 'z_report'") == [("z_report", "Z1")]
    verified = fresh_hub.backroom("journal", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # After Z the day reads from the frozen report: a later sale does not change it, counts are refused.
    sell(cashier, "T1", [(TOMATOES, 1)], [{"method": "cash", "amount": 990}])
    x = manager.get("/api/v1/eod/x").json()
    assert (x["closed"], x["z_no"], x["store"]["tickets"], x["store"]["net"]) == (True, 1, 3, 10950)
    assert count(manager, "T1", 1).status_code == 409

    listed = manager.get("/api/v1/eod/z").json()
    assert listed["total"] == 1
    assert [(r["z_no"], r["day"], r["tickets"], r["net"], r["cash_expected"], r["cash_counted"], r["cash_variance"])
            for r in listed["z_reports"]] == [(1, z["day"], 3, 10950, 111990, 111990, 0)]
    assert manager.get("/api/v1/eod/z/1").json() == z
    assert manager.get("/api/v1/eod/z/2").status_code == 404
    assert cashier.get("/api/v1/eod/z").status_code == 403


def test_anomalies_name_a_duplicate_card_reference_and_a_cash_shortage(fresh_hub: Hub) -> None:
    day = trade(fresh_hub)
    cashier, manager = day["cashier"], day["manager"]
    forged = sell(cashier, "T1", [(TOMATOES, 1)], [{"method": "card", "amount": 990, "reference": "CARD-0001"}])
    no_ref = sell(manager, "T2", [(TOMATOES, 1)], [{"method": "wechat", "amount": 990}])
    other_method = cashier.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": day["c"]["sale_id"],
                                                         "lines": [{"line_no": 2, "qty": 1}], "refund_method": "cash"})
    assert other_method.status_code == 201, other_method.text
    short = count(cashier, "T1", 59000)  # expected 61990 - 990 refunded in cash = 61000: 2000 short
    assert short.status_code == 201 and short.json()["variance"] == -2000

    resp = manager.get("/api/v1/eod/anomalies")
    assert resp.status_code == 200, resp.text
    found = {a["kind"]: a for a in resp.json()["anomalies"]}
    assert set(found) == {"duplicate_reference", "cash_variance", "missing_reference", "refund_method_mismatch",
                          "missing_cash_count"}
    dup = found["duplicate_reference"]
    assert (dup["severity"], dup["till_id"]) == ("critical", "T1")
    assert dup["refs"] == [day["b"]["sale_id"], forged["sale_id"]]
    assert "CARD-0001" in dup["message"]
    cash = found["cash_variance"]
    assert (cash["severity"], cash["till_id"], cash["amount"], cash["refs"]) == ("warning", "T1", -2000,
                                                                                 [short.json()["count_id"]])
    assert (found["missing_reference"]["till_id"], found["missing_reference"]["refs"]) == ("T2", [no_ref["sale_id"]])
    assert found["refund_method_mismatch"]["refs"][1] == day["c"]["sale_id"]
    assert (found["missing_cash_count"]["till_id"], found["missing_cash_count"]["amount"]) == ("T2", 50000)

    z = manager.post("/api/v1/eod/z").json()  # no body: today
    assert [a["kind"] for a in z["anomalies"]] == [a["kind"] for a in resp.json()["anomalies"]]
    frozen = manager.get("/api/v1/eod/anomalies").json()
    assert (frozen["closed"], frozen["z_no"], frozen["anomalies"]) == (True, 1, z["anomalies"])


def test_a_refund_beyond_the_drawer_is_an_anomaly(fresh_hub: Hub) -> None:
    manager = fresh_hub.login("manager")
    assert manager.post("/api/v1/eod/floats", json={"till_id": "T3", "amount": 0}).status_code == 200
    sale = sell(manager, "T3", [(ORANGES, 1)], [{"method": "card", "amount": 2990, "reference": "CARD-9"}])
    back = manager.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": sale["sale_id"], "till_id": "T3",
                                                 "lines": [{"line_no": 1, "qty": 1}], "refund_method": "cash"})
    assert back.status_code == 201, back.text
    found = manager.get("/api/v1/eod/anomalies").json()["anomalies"]
    negative = [a for a in found if a["kind"] == "drawer_negative"]
    assert [(a["till_id"], a["amount"], a["refs"]) for a in negative] == [("T3", -2990, [back.json()["return_id"]])]


def test_bad_requests_get_4xx(fresh_hub: Hub) -> None:
    manager, cashier = fresh_hub.login("manager"), fresh_hub.login("cashier")
    for body, status, code in (
        ({"count_id": "not-a-uuid", "till_id": "T1", "counted": 100}, 400, "invalid_field"),
        ({"count_id": new_id(), "till_id": "T1", "counted": -1}, 400, "invalid_field"),
        ({"count_id": new_id(), "till_id": "T1", "counted": "100"}, 400, "invalid_field"),
        ({"count_id": new_id(), "till_id": "T1", "counted": 100, "denominations": {"100": 2}}, 422,
         "denominations_mismatch"),
        ({"count_id": new_id(), "till_id": "T1", "counted": 300, "denominations": {"300": 1}}, 422,
         "unknown_denomination"),
        ({"count_id": new_id(), "till_id": "T1", "counted": 100, "denominations": {"0100": 1}}, 400, "invalid_field"),
        ({"count_id": new_id(), "till_id": "T1", "counted": 100, "day": "2020-02-30"}, 400, "invalid_day"),
        ({"count_id": new_id(), "till_id": "T1", "counted": 100, "day": "2999-01-01"}, 422, "future_day"),
        ({"count_id": new_id(), "till_id": "", "counted": 100}, 400, "invalid_field"),
    ):
        resp = manager.post("/api/v1/eod/cash-counts", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), (body, resp.text)
    assert manager.post("/api/v1/eod/z", json={"day": "yesterday"}).status_code == 400
    assert manager.post("/api/v1/eod/z", json={"day": "2999-01-01"}).json()["code"] == "future_day"
    assert manager.post("/api/v1/eod/z", content=b"{").json()["code"] == "invalid_json"
    assert manager.post("/api/v1/eod/floats", json={"till_id": "T1"}).status_code == 400
    assert manager.get("/api/v1/eod/x", params={"day": "2024-13-01"}).json()["code"] == "invalid_day"
    assert manager.get("/api/v1/eod/anomalies", params={"day": "x"}).status_code == 400
    assert manager.get("/api/v1/eod/z", params={"limit": 0}).status_code == 400
    assert cashier.post("/api/v1/eod/floats", json={"till_id": "T1", "amount": 1}).status_code == 403
    assert cashier.get("/api/v1/eod/anomalies").status_code == 403
    assert fresh_hub.query("SELECT count(*) FROM cash_counts") == [(0,)]
    assert fresh_hub.query("SELECT count(*) FROM z_reports") == [(0,)]
    paths = set(httpx.get(f"{fresh_hub.base_url}/schema/openapi.json").json()["paths"])
    assert {"/api/v1/eod/x", "/api/v1/eod/cash-counts", "/api/v1/eod/z", "/api/v1/eod/z/{z_no}",
            "/api/v1/eod/anomalies", "/api/v1/eod/floats"} <= paths


@pytest.mark.parametrize(("opening", "events", "expected"), [
    (0, [], None),
    (1000, [("10:00", -1000, "r1")], None),
    (1000, [("10:00", -1001, "r1")], ("r1", -1)),
    (0, [("10:05", -500, "r2"), ("10:00", 800, "s1"), ("10:10", -400, "r3")], ("r3", -100)),
    (0, [("10:00", -300, "r1"), ("10:00", 300, "s1")], None),  # money in before money out at the same instant
    (0, [("09:00", -1, "r0"), ("10:00", -5, "r1")], ("r0", -1)),  # the first time only
])
def test_the_drawer_goes_negative_at_the_first_event_below_zero(
        opening: int, events: list[tuple[str, int, str]], expected: tuple[str, int] | None) -> None:
    assert first_negative(opening, events) == expected
