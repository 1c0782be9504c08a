"""Bad input gets a 4xx with a JSON `code` and writes nothing; no input gets a 5xx.

Each case runs against a real `backroom serve` on the demo data and checks the status, the code,
and that the journal, the outbox and the sales table did not grow.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Hub

SALE_ID = "9b2f3c1e-5d4a-4c7b-8e6f-0a1b2c3d4e5f"
SOLD = "$SOLD"  # replaced by the id of a sale committed before the cases run
MISSING = object()


def sale(**fields: Any) -> dict[str, Any]:
    """A valid one-item cash sale (1990 fen, no member) with `fields` replaced; MISSING drops a field."""
    body: dict[str, Any] = {"sale_id": SALE_ID, "till_id": "T1", "lines": [{"sku": "SKU00010", "qty": 1}],
                            "tenders": [{"method": "cash", "amount": 1990}]}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not MISSING}


def quote(*lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"lines": list(lines), **fields}


def give_back(*lines: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"return_id": "0d8e7f6a-1b2c-4d3e-9f4a-5b6c7d8e9f0a", "sale_id": SOLD, "lines": list(lines), **fields}
    return {k: v for k, v in body.items() if v is not MISSING}


GOLD_ORANGES = [{"sku": "SKU00012", "qty": 10}]  # 29900 less 10 % = 26910, more than M000001 holds
BIG = b'{"lines": [{"sku": "SKU00010", "qty": 1}], "pad": "' + b"x" * (300 * 1024) + b'"}'

CASES = [
    # wrong types
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "qty": "1"}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "qty": 1.0}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", {"lines": {"sku": "SKU00010", "qty": 1}}, 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": 10, "qty": 1}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "cash", "amount": 10.5}]), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(sale_id="sale-0001"), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(lines="SKU00010"), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "bitcoin", "amount": 1990}]), 400,
     "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "cash", "amount": 0}]), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(lines=[{"sku": "SKU00010", "qty": 10**30}]), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", b"null", 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", b"[]", 400, "invalid_field"),
    # missing fields
    ("cashier", "POST", "/api/v1/quote", {}, 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote(), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=MISSING), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(till_id=MISSING), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(sale_id=MISSING), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/sales", sale(lines=[]), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"qty": 1}), 400, "invalid_line"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "barcode": "6953686088258"}), 400,
     "invalid_line"),
    # what the codes name does not exist or does not check
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU99999", "qty": 1}), 422, "unknown_item"),
    ("cashier", "POST", "/api/v1/quote", quote({"barcode": "6901234567892"}), 422, "unknown_barcode"),
    ("cashier", "POST", "/api/v1/quote", quote({"barcode": "6953686088259"}), 400, "invalid_barcode"),
    ("cashier", "POST", "/api/v1/quote", quote({"barcode": "2199999010003"}), 422, "unknown_barcode"),
    ("cashier", "POST", "/api/v1/quote", quote({"barcode": "2130001005006"}), 422, "not_weighed"),
    ("cashier", "POST", "/api/v1/sales", sale(lines=[{"barcode": "6953686088259", "qty": 1}]), 400,
     "invalid_barcode"),
    ("cashier", "GET", "/api/v1/items/lookup?barcode=6901234567892", None, 404, "unknown_barcode"),
    ("cashier", "GET", "/api/v1/items/lookup?barcode=6953686088259", None, 400, "invalid_barcode"),
    ("cashier", "GET", "/api/v1/items/lookup?barcode=%E8%8B%B9%E6%9E%9C", None, 400, "invalid_barcode"),
    ("cashier", "GET", "/api/v1/items/lookup", None, 400, "invalid_parameter"),
    ("cashier", "GET", "/api/v1/items?limit=0", None, 400, "invalid_parameter"),
    ("cashier", "GET", "/api/v1/items?limit=many", None, 400, "invalid_parameter"),
    ("cashier", "GET", "/api/v1/items/SKU99999", None, 404, "unknown_item"),
    ("cashier", "GET", "/api/v1/stock/SKU99999", None, 404, "unknown_item"),
    ("cashier", "GET", f"/api/v1/sales/{SALE_ID}", None, 404, "unknown_sale"),
    ("cashier", "GET", "/api/v1/members/M999999", None, 404, "unknown_member"),
    ("cashier", "GET", "/api/v1/members/lookup?phone=13900000000", None, 404, "unknown_member"),
    ("cashier", "GET", "/api/v1/members/lookup", None, 400, "invalid_query"),
    # quantities
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "qty": -1}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "qty": 0}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00001", "weight_g": 0}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "weight_g": 500}), 400, "invalid_quantity"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00001", "qty": 2}), 400, "invalid_quantity"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00001"}), 400, "weight_required"),
    ("cashier", "POST", "/api/v1/quote", quote({"barcode": "2112345015002", "weight_g": 900}), 400,
     "invalid_quantity"),
    ("cashier", "POST", "/api/v1/sales", sale(lines=[{"sku": "SKU00001", "qty": 1}]), 400, "weight_required"),
    # tenders
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "cash", "amount": 1989}]), 422, "tenders_short"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[]), 422, "tenders_short"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "card", "amount": 2000}]), 422, "overtendered"),
    ("cashier", "POST", "/api/v1/sales",
     sale(tenders=[{"method": "wechat", "amount": 1000}, {"method": "alipay", "amount": 1000}]), 422, "overtendered"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "stored_value", "amount": 1990}]), 422,
     "member_required"),
    ("cashier", "POST", "/api/v1/sales", sale(tenders=[{"method": "points", "amount": 1990}]), 422,
     "member_required"),
    ("cashier", "POST", "/api/v1/sales",
     sale(member_id="M000001", lines=GOLD_ORANGES, tenders=[{"method": "stored_value", "amount": 26910}]), 402,
     "insufficient_balance"),
    ("cashier", "POST", "/api/v1/sales",
     sale(member_id="M000001", lines=GOLD_ORANGES, tenders=[{"method": "points", "amount": 26910}]), 402,
     "insufficient_points"),
    ("cashier", "POST", "/api/v1/sales",
     sale(member_id="M000001", tenders=[{"method": "points", "amount": 1791}, {"method": "stored_value",
                                                                               "amount": 25000}]), 422,
     "overtendered"),
    ("cashier", "POST", "/api/v1/sales", sale(member_id="M999999"), 422, "unknown_member"),
    ("cashier", "POST", "/api/v1/quote", quote({"sku": "SKU00010", "qty": 1}, member_id="M999999"), 422,
     "unknown_member"),
    ("cashier", "POST", "/api/v1/sales", sale(coupon_codes=["FREE100"]), 422, "unknown_coupon"),
    # bodies
    ("cashier", "POST", "/api/v1/sales", b'{"sale_id": "' + SALE_ID.encode() + b'", "lines": [', 400,
     "invalid_json"),
    ("cashier", "POST", "/api/v1/quote", b"{'lines': []}", 400, "invalid_json"),
    ("cashier", "POST", "/api/v1/sales", b"", 400, "invalid_json"),
    ("cashier", "POST", "/api/v1/quote", b"   \n", 400, "invalid_json"),
    ("cashier", "POST", "/api/v1/quote", BIG, 413, "body_too_large"),
    ("cashier", "POST", "/api/v1/sales", BIG, 413, "body_too_large"),
    # returns
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 1}, {"line_no": 1, "qty": 1}), 400,
     "duplicate_line"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 1}, sale_id=SALE_ID), 404,
     "unknown_sale"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 9, "qty": 1}), 422, "unknown_line"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 3}), 422, "over_return"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "weight_g": 100}), 400, "invalid_quantity"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 0}), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 1}, return_id="r-1"), 400,
     "invalid_field"),
    ("cashier", "POST", "/api/v1/returns", give_back(), 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/returns", give_back({"line_no": 1, "qty": 1}, refund_method="stored_value"), 422,
     "member_required"),
    # members
    ("cashier", "POST", "/api/v1/members/M999999/topups",
     {"topup_id": SALE_ID, "amount": 5000, "method": "cash"}, 404, "unknown_member"),
    ("cashier", "POST", "/api/v1/members/M000001/topups",
     {"topup_id": SALE_ID, "amount": 0, "method": "cash"}, 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/members/M000001/topups",
     {"topup_id": SALE_ID, "amount": 5000, "method": "stored_value"}, 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/members", {"phone": "12345"}, 400, "invalid_field"),
    ("cashier", "POST", "/api/v1/members", {"phone": "13800138000"}, 409, "member_exists"),
    ("cashier", "POST", "/api/v1/members", {"phone": "13911112222", "tier": "platinum"}, 422, "unknown_tier"),
    # stock (the manager may; the input is wrong)
    ("manager", "POST", "/api/v1/stock/receipts", {"receipt_id": SALE_ID, "lines": [{"sku": "SKU99999", "qty": 5}]},
     422, "unknown_item"),
    ("manager", "POST", "/api/v1/stock/receipts", {"receipt_id": SALE_ID, "lines": [{"sku": "SKU00010", "qty": 0}]},
     400, "invalid_field"),
    ("manager", "POST", "/api/v1/stock/receipts",
     {"receipt_id": SALE_ID, "lines": [{"sku": "SKU00010", "qty": 5, "lot": "L1", "expiry": "31/01/2030"}]},
     400, "invalid_field"),
    ("manager", "POST", "/api/v1/stock/adjustments",
     {"adjustment_id": SALE_ID, "sku": "SKU00010", "kind": "count", "qty": -1, "reason": "count"}, 400,
     "invalid_quantity"),
    ("manager", "POST", "/api/v1/stock/adjustments",
     {"adjustment_id": SALE_ID, "sku": "SKU00010", "kind": "adjustment", "qty": 0, "reason": "none"}, 400,
     "invalid_quantity"),
    ("manager", "POST", "/api/v1/stock/adjustments",
     {"adjustment_id": SALE_ID, "sku": "SKU00010", "kind": "adjustment", "qty": -1, "reason": ""}, 400,
     "invalid_field"),
    ("manager", "POST", "/api/v1/stock/adjustments",
     {"adjustment_id": SALE_ID, "sku": "SKU00010", "kind": "count", "qty": 3, "reason": "x", "lot": "NOPE"}, 422,
     "unknown_batch"),
    ("manager", "PUT", "/api/v1/items/SKU99999/price", {"price": 100}, 404, "unknown_item"),
    ("manager", "PUT", "/api/v1/items/SKU00010/price", {"price": -1}, 400, "invalid_field"),
    # logins
    ("anonymous", "POST", "/api/v1/auth/login", {"username": "guide", "pin": "0000", "till_id": "T1"}, 401,
     "bad_credentials"),
    ("anonymous", "POST", "/api/v1/auth/login", {"username": "nobody", "password": "x"}, 401, "bad_credentials"),
    ("anonymous", "POST", "/api/v1/auth/login", {"username": "cashier", "pin": "1234"}, 400, "till_required"),
    ("anonymous", "POST", "/api/v1/auth/login", {"username": "manager"}, 400, "invalid_login"),
    ("anonymous", "POST", "/api/v1/auth/login",
     {"username": "manager", "password": "manager-demo", "pin": "1234", "till_id": "T1"}, 400, "invalid_login"),
    ("anonymous", "POST", "/api/v1/auth/login", {"username": "cashier", "pin": "12a4", "till_id": "T1"}, 400,
     "invalid_field"),
    # tokens
    ("anonymous", "GET", "/api/v1/items", None, 401, "unauthenticated"),
    ("anonymous", "POST", "/api/v1/sales", sale(), 401, "unauthenticated"),
    ("Bearer abc.def", "GET", "/api/v1/items", None, 401, "invalid_token"),
    ("Bearer garbage", "POST", "/api/v1/sales", sale(), 401, "invalid_token"),
    ("Bearer", "GET", "/api/v1/items", None, 401, "unauthenticated"),
    ("Basic bWFuYWdlcjptYW5hZ2VyLWRlbW8=", "GET", "/api/v1/items", None, 401, "unauthenticated"),
]


def _case_id(case: tuple[Any, ...]) -> str:
    who, method, path, _body, status, code = case
    return f"{status}-{code}-{method}-{path.split('?')[0].removeprefix('/api/v1/')}"


@pytest.fixture(scope="module")
def callers(hub: Hub) -> dict[str, httpx.Client]:
    return {"cashier": hub.login("cashier"), "manager": hub.login("manager"), "anonymous": hub.client()}


@pytest.fixture(scope="module")
def sold(callers: dict[str, httpx.Client]) -> str:
    """A committed two-unit cash sale (no member) for the return cases."""
    sale_id = str(uuid.uuid4())
    resp = callers["cashier"].post("/api/v1/sales", json=sale(
        sale_id=sale_id, lines=[{"sku": "SKU00011", "qty": 2}], tenders=[{"method": "cash", "amount": 2000}]))
    assert resp.status_code == 201, resp.text
    return sale_id


def send(client: httpx.Client, method: str, path: str, body: object, headers: dict[str, str] | None = None,
         ) -> httpx.Response:
    if body is None:
        return client.request(method, path, headers=headers)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.request(method, path, content=raw, headers={"Content-Type": "application/json", **(headers or {})})


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "code"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_refused_with_a_code_and_writes_nothing(
    hub: Hub, callers: dict[str, httpx.Client], sold: str,
    who: str, method: str, path: str, body: object, status: int, code: str,
) -> None:
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace(SOLD, sold))
    headers = None
    client = callers.get(who)
    if client is None:
        client, headers = callers["anonymous"], {"Authorization": who}
    before = hub.counts()
    resp = send(client, method, path, body, headers)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert hub.counts() == before


def test_a_tampered_token_is_refused(hub: Hub) -> None:
    token = httpx.post(f"{hub.base_url}/api/v1/auth/login",
                       json={"username": "guide", "pin": "5678", "till_id": "T1"}).json()["token"]
    body, sig = token.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig  # e.g. to claim another role
    resp = httpx.get(f"{hub.base_url}/api/v1/items", headers={"Authorization": f"Bearer {forged}"})
    assert (resp.status_code, resp.json()["code"]) == (401, "invalid_token")


def test_a_token_from_another_hub_is_refused(hub: Hub, hub_factory: Callable[..., Hub]) -> None:
    other = hub_factory()
    token = other.login("manager").headers["Authorization"]
    resp = httpx.get(f"{hub.base_url}/api/v1/items", headers={"Authorization": token})
    assert (resp.status_code, resp.json()["code"]) == (401, "invalid_token")


def test_an_expired_token_is_refused_and_commits_nothing(hub_factory: Callable[..., Hub]) -> None:
    short = hub_factory(token_ttl_s=2)  # whole seconds: a 2 s token lives at least 1 s
    login = httpx.post(f"{short.base_url}/api/v1/auth/login",
                       json={"username": "cashier", "pin": "1234", "till_id": "T1"}).json()
    cashier = short.client(login["token"])
    assert cashier.get("/api/v1/items", params={"limit": 1}).status_code == 200
    expires = datetime.datetime.fromisoformat(login["expires_at"]).timestamp()
    assert expires - time.time() <= 2
    time.sleep(max(0.0, expires - time.time()) + 0.2)
    before = short.counts()
    resp = cashier.get("/api/v1/items", params={"limit": 1})
    assert (resp.status_code, resp.json()["code"]) == (401, "token_expired")
    resp = cashier.post("/api/v1/sales", json=sale(sale_id=str(uuid.uuid4())))
    assert (resp.status_code, resp.json()["code"]) == (401, "token_expired")
    assert short.counts() == before
    assert "Traceback" not in short.log()


def test_the_openapi_document_is_served(hub: Hub) -> None:
    resp = httpx.get(f"{hub.base_url}/schema/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].split(";")[0] in ("application/json", "application/vnd.oai.openapi+json")
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/auth/login", "/api/v1/quote", "/api/v1/sales", "/api/v1/returns"} <= set(doc["paths"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_odd = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0, "1", None])
_count = st.integers(1, 2000) | _odd
_code = {"sku": st.sampled_from(["SKU00010", "SKU00001", "SKU00051", "SKU00012", "SKU99999", "", 5]),
         "barcode": st.sampled_from(["6953686088258", "2112345015002", "2312345005007", "6901234567892", "123"])}
_line = st.one_of(*(st.fixed_dictionaries({key: codes}, optional={"qty": _count, "weight_g": _count})
                    for key, codes in _code.items()), _json)
_tender = st.fixed_dictionaries({"method": st.sampled_from(["cash", "card", "stored_value", "points", "gold"]),
                                 "amount": st.integers(1, 300_000) | _odd})
_sale = st.fixed_dictionaries(
    {"sale_id": st.uuids().map(str), "till_id": st.sampled_from(["T1", "", "T" * 80]),
     "lines": st.lists(_line, min_size=1, max_size=3), "tenders": st.lists(_tender, max_size=3)},
    optional={"member_id": st.sampled_from(["M000001", "M000002", "M999999", ""])})


@pytest.fixture(scope="module")
def fuzz_client(hub: Hub) -> httpx.Client:
    return hub.login("cashier")


def _checked(resp: httpx.Response) -> httpx.Response:
    assert resp.status_code < 500, (resp.request.url, resp.request.content[:2000], resp.text)
    event(f"{resp.request.url.path} {resp.status_code}")
    if resp.status_code >= 400:
        assert isinstance(resp.json()["code"], str)
    elif resp.request.url.path == "/api/v1/sales":
        done = resp.json()
        assert done["total"] == sum(line["net"] for line in done["lines"])
        assert done["change"] == done["tendered"] - done["total"] >= 0
    return resp


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_sale | _json, data=st.data())
def test_no_body_gets_a_5xx(fuzz_client: httpx.Client, body: Any, data: st.DataObject) -> None:
    """Any body, quoted and sold; a basket that quotes is also sold with tenders drawn around its total."""
    quoted = _checked(fuzz_client.post("/api/v1/quote", json=body))
    _checked(fuzz_client.post("/api/v1/sales", json=body))
    if quoted.status_code != 200 or not isinstance(body, dict) or "sale_id" not in body:
        return
    total = quoted.json()["total"]
    # Each amount is a drawn share of the total, not an integer drawn up to it: the total comes from the hub,
    # whose stock and balances the earlier examples changed, and a draw bounded by it made a different choice
    # when hypothesis replayed the example (FlakyStrategyDefinition, seen once in the full suite).
    tenders = [{"method": method, "amount": max(1, max(1, total) * data.draw(st.integers(1, 1000)) // 1000)}
               for method in data.draw(st.lists(st.sampled_from(["card", "wechat", "stored_value", "points"]),
                                                max_size=2))]
    cash = total - sum(t["amount"] for t in tenders) + data.draw(st.integers(-3, 5000))
    if cash > 0:
        tenders.append({"method": "cash", "amount": cash})
    sold = _checked(fuzz_client.post("/api/v1/sales", json={**body, "sale_id": str(uuid.uuid4()),
                                                             "till_id": "T1", "tenders": tenders}))
    if sold.status_code == 201:
        assert sold.json()["total"] == total


def test_the_server_never_logged_a_traceback(hub: Hub) -> None:
    log = hub.log()
    assert "Traceback" not in log, log[-4000:]
    assert "unhandled error" not in log
