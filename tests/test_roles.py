"""Who may do what, over HTTP: the permission matrix, price changes, phone masking, and who sold.

Roles in the demo data: manager (store_manager), region (region_manager), cashier and guide
(sales_guide, PIN 5678). A refused call is 403 `forbidden` and writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Hub

SOLD = "$SOLD"  # a sale committed by the `sold` fixture
WATCHED = ("journal", "outbox", "sales", "returns", "topups", "client_requests", "stock_movements", "audit")


def new_id() -> str:
    return str(uuid.uuid4())


def a_sale() -> dict[str, Any]:
    return {"sale_id": new_id(), "till_id": "T1", "lines": [{"sku": "SKU00011", "qty": 1}],
            "tenders": [{"method": "cash", "amount": 1000}]}


def a_return() -> dict[str, Any]:
    return {"return_id": new_id(), "sale_id": SOLD, "lines": [{"line_no": 1, "qty": 1}]}


def a_receipt() -> dict[str, Any]:
    return {"receipt_id": new_id(), "lines": [{"sku": "SKU00031", "qty": 5}]}


def an_adjustment() -> dict[str, Any]:
    return {"adjustment_id": new_id(), "sku": "SKU00031", "kind": "adjustment", "qty": -1, "reason": "damaged"}


def a_topup() -> dict[str, Any]:
    return {"topup_id": new_id(), "amount": 1000, "method": "cash"}


def a_price() -> dict[str, Any]:
    return {"price": 700, "reason": "supplier cost up"}


def a_quote() -> dict[str, Any]:
    return {"lines": [{"sku": "SKU00011", "qty": 2}], "member_id": "M000002"}


Body = Callable[[], dict[str, Any]] | None

FORBIDDEN: list[tuple[str, str, str, Body]] = [
    ("cashier", "PUT", "/api/v1/items/SKU00020/price", a_price),
    ("cashier", "POST", "/api/v1/stock/receipts", a_receipt),
    ("cashier", "POST", "/api/v1/stock/adjustments", an_adjustment),
    ("cashier", "GET", "/api/v1/journal/verify", None),
    ("guide", "POST", "/api/v1/sales", a_sale),
    ("guide", "POST", "/api/v1/returns", a_return),
    ("guide", "POST", "/api/v1/members/M000001/topups", a_topup),
    ("guide", "GET", f"/api/v1/sales/{SOLD}", None),
    ("guide", "PUT", "/api/v1/items/SKU00020/price", a_price),
    ("guide", "POST", "/api/v1/stock/receipts", a_receipt),
    ("guide", "POST", "/api/v1/stock/adjustments", an_adjustment),
]

ALLOWED: list[tuple[str, str, str, Body, int]] = [
    ("guide", "POST", "/api/v1/quote", a_quote, 200),
    ("guide", "GET", "/api/v1/items/lookup?barcode=6964985006195", None, 200),
    ("guide", "GET", "/api/v1/members/lookup?card=8800000001", None, 200),
    ("guide", "GET", "/api/v1/stock/SKU00031", None, 200),
    ("cashier", "POST", "/api/v1/quote", a_quote, 200),
    ("cashier", "POST", "/api/v1/sales", a_sale, 201),
    ("cashier", "POST", "/api/v1/returns", a_return, 201),
    ("cashier", "POST", "/api/v1/members/M000002/topups", a_topup, 201),
    ("cashier", "GET", f"/api/v1/sales/{SOLD}", None, 200),
    ("manager", "POST", "/api/v1/stock/receipts", a_receipt, 201),
    ("manager", "POST", "/api/v1/stock/adjustments", an_adjustment, 201),
    ("manager", "GET", "/api/v1/journal/verify", None, 200),
    ("region", "PUT", "/api/v1/items/SKU00021/price", a_price, 200),
    ("region", "POST", "/api/v1/stock/receipts", a_receipt, 201),
]


@pytest.fixture(scope="module")
def users(hub: Hub) -> dict[str, httpx.Client]:
    return {name: hub.login(name) for name in ("manager", "region", "cashier", "guide")}


@pytest.fixture(scope="module")
def sold(users: dict[str, httpx.Client]) -> str:
    """A cashier's sale of 3 cherry tomatoes, for the return and sale-read rows."""
    body = {**a_sale(), "lines": [{"sku": "SKU00011", "qty": 3}], "tenders": [{"method": "cash", "amount": 3000}]}
    resp = users["cashier"].post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return str(body["sale_id"])


def call(client: httpx.Client, method: str, path: str, body: Body, sold: str) -> httpx.Response:
    path = path.replace(SOLD, sold)
    if body is None:
        return client.request(method, path)
    return client.request(method, path, json=json.loads(json.dumps(body()).replace(SOLD, sold)))


@pytest.mark.parametrize(("who", "method", "path", "body"), FORBIDDEN,
                         ids=[f"{w}-{m}-{p.removeprefix('/api/v1/')}" for w, m, p, _ in FORBIDDEN])
def test_a_role_without_the_permission_is_refused_and_nothing_is_written(
    hub: Hub, users: dict[str, httpx.Client], sold: str, who: str, method: str, path: str, body: Body,
) -> None:
    before = hub.counts(WATCHED)
    resp = call(users[who], method, path, body, sold)
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "forbidden"
    assert hub.counts(WATCHED) == before


@pytest.mark.parametrize(("who", "method", "path", "body", "status"), ALLOWED,
                         ids=[f"{w}-{m}-{p.removeprefix('/api/v1/')}" for w, m, p, _, _ in ALLOWED])
def test_a_role_with_the_permission_is_served(
    users: dict[str, httpx.Client], sold: str, who: str, method: str, path: str, body: Body, status: int,
) -> None:
    resp = call(users[who], method, path, body, sold)
    assert resp.status_code == status, resp.text


def test_a_refused_price_change_leaves_the_price(users: dict[str, httpx.Client]) -> None:
    cashier = users["cashier"]
    assert cashier.put("/api/v1/items/SKU00010/price", json={"price": 1}).status_code == 403
    assert cashier.get("/api/v1/items/SKU00010").json()["price"] == 1990


def test_a_managers_price_change_shows_in_lookups_quotes_and_sales(
    hub: Hub, users: dict[str, httpx.Client],
) -> None:
    manager, cashier = users["manager"], users["cashier"]
    coconut = "6964985006836"  # SKU00014, 890 in the demo catalog
    assert cashier.get("/api/v1/items/lookup", params={"barcode": coconut}).json()["price"] == 890

    changed = manager.put("/api/v1/items/SKU00014/price", json={"price": 1290, "reason": "season"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["sku"], changed.json()["price"]) == ("SKU00014", 1290)

    assert cashier.get("/api/v1/items/lookup", params={"barcode": coconut}).json()["price"] == 1290
    assert cashier.get("/api/v1/items/SKU00014").json()["price"] == 1290
    quote = cashier.post("/api/v1/quote", json={"lines": [{"barcode": coconut, "qty": 2}], "member_id": "M000001"})
    line = quote.json()["lines"][0]
    assert (line["unit_price"], line["gross"], line["discount"], line["net"]) == (1290, 2580, 258, 2322)
    sale = cashier.post("/api/v1/sales", json={**a_sale(), "lines": [{"barcode": coconut, "qty": 1}],
                                               "tenders": [{"method": "cash", "amount": 1290}]})
    assert (sale.status_code, sale.json()["total"], sale.json()["change"]) == (201, 1290, 0)

    audit = hub.query("SELECT user_id, action, target, detail FROM audit WHERE target = 'SKU00014'")
    assert [(u, a, t, json.loads(d)) for u, a, t, d in audit] == [
        ("U-manager", "price.set", "SKU00014", {"old": 890, "new": 1290, "reason": "season"})]


@pytest.mark.parametrize(("who", "phone", "masked"), [
    ("cashier", "138****8000", True),
    ("guide", "138****8000", True),
    ("manager", "13800138000", False),
    ("region", "13800138000", False),
])
def test_only_managers_see_a_members_full_phone(
    users: dict[str, httpx.Client], who: str, phone: str, masked: bool,
) -> None:
    client = users[who]
    for resp in (client.get("/api/v1/members/lookup", params={"phone": "13800138000"}),
                 client.get("/api/v1/members/lookup", params={"card": "8800000001"}),
                 client.get("/api/v1/members/M000001")):
        assert resp.status_code == 200, resp.text
        found = resp.json()
        assert (found["member_id"], found["tier"]) == ("M000001", "gold")
        assert (found["phone"], found["phone_masked"]) == (phone, masked)


def test_every_sale_and_return_records_who_made_it_at_which_till(hub: Hub) -> None:
    sellers = [
        (hub.login("cashier", pin="1234", till_id="T7"), "T7", "U-cashier"),
        (hub.login("manager"), "T9", "U-manager"),
        (hub.login("region"), "T3", "U-region"),
    ]
    made = []
    for client, till, user in sellers:
        body = {**a_sale(), "till_id": till}
        resp = client.post("/api/v1/sales", json=body)
        assert resp.status_code == 201, resp.text
        assert resp.json()["till_id"] == till
        made.append((body["sale_id"], user, till))
    for sale_id, user, till in made:
        assert hub.query("SELECT user_id, till_id FROM sales WHERE sale_id = ?", (sale_id,)) == [(user, till)]
        (journal_body,) = hub.query("SELECT body FROM journal WHERE kind = 'sale' AND ref = ?", (sale_id,))[0]
        data = json.loads(journal_body)["data"]
        assert (data["user_id"], data["till_id"]) == (user, till)

    cashier = sellers[0][0]
    back = cashier.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": made[1][0],
                                                 "lines": [{"line_no": 1, "qty": 1}]})
    assert back.status_code == 201, back.text
    assert hub.query("SELECT user_id, till_id FROM returns WHERE return_id = ?",
                     (back.json()["return_id"],)) == [("U-cashier", "T7")]


def test_a_standalone_hub_shows_its_whole_outbox_as_queued_for_hq(hub: Hub) -> None:
    manager = hub.login("manager")
    before = manager.get("/api/v1/sync").json()
    assert (before["paired"], before["acked_seq"], before["queued"]) == (False, 0, before["outbox_head"])
    sale = hub.login("cashier").post("/api/v1/sales", json={
        "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00010", "qty": 1}],
        "tenders": [{"method": "card", "amount": 1990}]})
    assert sale.status_code == 201, sale.text
    after = manager.get("/api/v1/sync").json()
    assert after["outbox_head"] == before["outbox_head"] + 1 == after["queued"]
    assert hub.login("guide").get("/api/v1/sync").status_code == 403
