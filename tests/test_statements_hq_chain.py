"""The chain merchant bill end to end (docs/payments-hq.md): a real HQ and two real hubs. Sales paid by
WeChat Pay and Alipay at both stores and a refund sync up; a WeChat trade bill covering both stores, with
anomalies planted, is uploaded through the API; the split and the anomalies are right; uploading it again
changes nothing; the region manager sees and resolves only his store's part; bad requests are 4xx JSON; and
the console's Statements page shows the split, resolves an anomaly and maps a provider's store field in a
real browser."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import console_support
import httpx
import pytest
from console_support import api, axe_problems, console_login, desk, desk_login
from sync_support import FAST, HqServer, SyncHub, wait_until

from edge.payments.bills import wechat_bill
from edge.payments.statements import StatementRow

browser = console_support.browser
TABLES = ("hq_statements", "hq_statement_rows", "hq_statement_stores", "hq_statement_anomalies", "hq_audit")


def _sale(till: httpx.Client, sku: str, method: str, reference: str) -> dict[str, Any]:
    q = till.post("/api/v1/quote", json={"lines": [{"sku": sku, "qty": 1}]})
    assert q.status_code == 200, q.text
    body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": sku, "qty": 1}],
            "tenders": [{"method": method, "amount": q.json()["total"], "reference": reference}]}
    r = till.post("/api/v1/sales", json=body)
    assert r.status_code == 201, r.text
    return {**r.json(), "sale_id": body["sale_id"]}


class Chain:
    def __init__(self, root: Path) -> None:
        self.hq = HqServer(str(root / "hq.sqlite3"), root)
        self.a = SyncHub(root, self.hq.url, store="demo-001", **FAST)
        self.b = SyncHub(root, self.hq.url, store="demo-002", **FAST)
        self.statement_id = ""
        self.planted: dict[str, Any] = {}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("hq-bill")
    c = Chain(root)
    c.hq.start()
    try:
        c.a.start()
        c.b.start()
        wait_until(lambda: c.a.paired() and c.b.paired(), 30, what="both stores paired")
        ta, tb = c.a.till(), c.b.till()
        a1 = _sale(ta, "SKU00027", "wechat", "4200000000001")
        a2 = _sale(ta, "SKU00033", "wechat", "4200000000002")
        a3 = _sale(ta, "SKU00027", "wechat", "4200000000003")
        _sale(ta, "SKU00033", "alipay", "2026120322000001")  # on the Alipay bill, not this one
        back = ta.post("/api/v1/returns", json={"return_id": str(uuid.uuid4()), "sale_id": a3["sale_id"],
                                                "lines": [{"line_no": 1, "qty": 1}],
                                                "refund_references": [{"tender_no": 1, "reference": "50300001"}]})
        assert back.status_code == 201, back.text
        b1 = _sale(tb, "SKU00027", "wechat", "4200000000101")
        b2 = _sale(tb, "SKU00033", "wechat", "4200000000102")
        wait_until(lambda: c.hq.query("SELECT count(*) FROM hq_pay_tenders")[0][0] == 7, 30,
                   what="the tenders and the refund at HQ")
        when = dict(c.hq.query("SELECT reference, at FROM hq_pay_tenders WHERE doc_kind = 'sale'"))
        refund_at = c.hq.query("SELECT at FROM hq_pay_tenders WHERE doc_kind = 'refund'")[0][0]
        assert c.hq.query("SELECT store_id, amount, reference FROM hq_pay_tenders WHERE doc_kind = 'refund'") == [
            ("demo-001", a3["total"], "50300001")]

        def pay(ref: str, amount: int, fee: int, at: str, **kw: str) -> StatementRow:
            return StatementRow(row_no=0, kind="payment", transaction_id=ref, amount=amount, fee=fee, time=at, **kw)

        rows = [pay("4200000000001", a1["total"], 3, when["4200000000001"]),
                pay("4200000000002", a2["total"] + 1, 3, when["4200000000002"]),  # amount_mismatch at A
                pay("4200000000003", a3["total"], 3, when["4200000000003"]),
                StatementRow(row_no=0, kind="refund", transaction_id="4200000000003", refund_id="50300001",
                             amount=a3["total"], fee=-3, time=refund_at),
                pay("4200000000101", b1["total"], 4, when["4200000000101"]),  # b2 missing: sale_no_payment at B
                pay("4200000000777", 1234, 7, when["4200000000101"], store="DEV-UNKNOWN")]  # nobody's
        c.planted = {"a1": a1, "a2": a2, "a3": a3, "b1": b1, "b2": b2, "bill": wechat_bill(rows)}
        finance = api(c.hq, "finance")
        r = finance.post("/hq/v1/statements", params={"provider": "wechat", "file_name": "wechat-chain.csv"},
                         content=c.planted["bill"])
        assert r.status_code == 201, r.text
        c.statement_id = r.json()["statement_id"]
        yield c
    finally:
        c.a.stop()
        c.b.stop()
        c.hq.stop()


def test_the_bill_is_split_by_store_with_the_planted_anomalies(chain: Chain) -> None:
    p = chain.planted
    got = api(chain.hq, "finance").get(f"/hq/v1/statements/{chain.statement_id}", params={"rows": 50}).json()
    split = {s["store_id"]: (s["rows"], s["paid"], s["refunded"], s["fees"], s["matched"], s["anomalies"])
             for s in got["stores"]}
    assert split == {
        "demo-001": (4, p["a1"]["total"] + p["a2"]["total"] + 1 + p["a3"]["total"], p["a3"]["total"], 6, 3, 1),
        "demo-002": (1, p["b1"]["total"], 0, 4, 1, 1),
        "": (1, 1234, 0, 7, 0, 1),
    }
    assert sorted((a["store_id"], a["kind"], a["reference"], a["expected"], a["actual"]) for a in got["anomalies"]) == [
        ("", "paid_no_sale", "4200000000777", None, 1234),
        ("demo-001", "amount_mismatch", "4200000000002", p["a2"]["total"], p["a2"]["total"] + 1),
        ("demo-002", "sale_no_payment", "4200000000102", p["b2"]["total"], None),
    ]
    assert {(r["transaction_id"], r["refund_id"]): r["matched"] for r in got["rows"]}[
        ("4200000000003", "50300001")] is True  # the refund, by the till's refund reference


def test_uploading_the_same_bill_again_changes_nothing(chain: Chain) -> None:
    before = [chain.hq.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES]
    again = api(chain.hq, "hq").post("/hq/v1/statements", params={"provider": "wechat"}, content=chain.planted["bill"])
    assert (again.status_code, again.json()["duplicate"], again.json()["statement_id"]) == (
        200, True, chain.statement_id)
    assert [chain.hq.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES] == before
    assert len(api(chain.hq, "finance").get("/hq/v1/statements").json()["statements"]) == 1


def test_the_region_manager_sees_and_resolves_his_store_only(chain: Chain) -> None:
    east = api(chain.hq, "region-east")
    mine = east.get(f"/hq/v1/statements/{chain.statement_id}", params={"rows": 50}).json()
    assert [s["store_id"] for s in mine["stores"]] == ["demo-001"]
    assert {a["store_id"] for a in mine["anomalies"]} == {r["store_id"] for r in mine["rows"]} == {"demo-001"}
    assert [(s["stores"], s["rows"]) for s in east.get("/hq/v1/statements").json()["statements"]] == [(1, 4)]
    everything = api(chain.hq, "finance").get(f"/hq/v1/statements/{chain.statement_id}").json()["anomalies"]
    theirs = next(a["anomaly_no"] for a in everything if a["store_id"] == "demo-002")
    ours = next(a["anomaly_no"] for a in everything if a["store_id"] == "demo-001")
    base = f"/hq/v1/statements/{chain.statement_id}/anomalies"
    refused = east.post(f"{base}/{theirs}/resolve", json={"note": "not mine"})
    assert (refused.status_code, refused.json()["code"]) == (403, "out_of_scope")
    done = east.post(f"{base}/{ours}/resolve", json={"note": "scale price rounding; refunded 0.01 at the till"})
    assert (done.status_code, done.json()["resolved_by"]) == (200, "region-east")
    assert chain.hq.query("SELECT actor, action FROM hq_audit WHERE action = 'statement.resolve'") == [
        ("region-east", "statement.resolve")]
    upload = east.post("/hq/v1/statements", params={"provider": "wechat"}, content=b"x")
    assert (upload.status_code, upload.json()["code"]) == (403, "forbidden")
    desk_east = console_login(chain.hq, "region-east", lang="en")
    page = desk_east.get(f"/hq/ui/statements/{chain.statement_id}")
    assert page.status_code == 200
    assert "demo-001" in page.text and "demo-002" not in page.text and "No store (chain)" not in page.text
    listing = desk_east.get("/hq/ui/statements")
    assert listing.status_code == 200 and chain.statement_id in listing.text
    assert 'action="/hq/ui/statements"' not in listing.text  # no upload form for him


def test_bad_requests_are_4xx_json(chain: Chain) -> None:
    finance = api(chain.hq, "finance")
    base = f"/hq/v1/statements/{chain.statement_id}"
    cases = [
        finance.post("/hq/v1/statements", params={"provider": "paypal"}, content=b"x"),
        finance.post("/hq/v1/statements", content=b"x"),  # no provider
        finance.post("/hq/v1/statements", params={"provider": "wechat"}, content=b"\xff\xfe garbage"),
        finance.post(f"{base}/anomalies/{'9' * 30}/resolve", json={"note": "x"}),
        finance.post(f"{base}/anomalies/1/resolve", json={"note": "x" * 501}),
        finance.post(f"{base}/anomalies/1/resolve", json={"note": 5}),
        finance.get("/hq/v1/statements", params={"limit": "9" * 30}),
        finance.get(base, params={"rows": -1}),
        finance.get("/hq/v1/statements/no-such-statement"),
        finance.put("/hq/v1/statement-csv-mapping", content=b"[columns]\n"),
        httpx.get(chain.hq.url + "/hq/v1/statements"),
    ]
    assert [(r.status_code, r.json()["code"]) for r in cases] == [
        (400, "bad_provider"), (400, "bad_request"), (422, "bad_statement"), (400, "bad_anomaly"),
        (400, "invalid_field"), (400, "invalid_field"), (400, "bad_request"), (400, "bad_request"),
        (404, "unknown_statement"), (422, "bad_mapping"), (401, "unauthenticated")]


def test_the_console_shows_the_split_and_resolves_an_anomaly(browser: Any, chain: Chain) -> None:
    found = desk(browser, chain.hq.url, lang="en")
    try:
        desk_login(found, "finance")
        assert found.goto("/hq/ui/statements") == 200
        assert found.click_to(found.page.locator("#statements tbody a").first) == 200
        assert [r.get_attribute("data-store") for r in found.page.locator("#split tbody tr").all()] == [
            "", "demo-001", "demo-002"]
        row = found.page.locator("#anomalies tr[data-kind=sale_no_payment]")
        row.locator("input[name=note]").fill("the customer's payment failed; he paid cash next day")
        assert found.click_to(row.get_by_role("button", name="Resolve")) == 200
        assert found.page.locator(".flash.notice").inner_text() == "Anomaly resolved."
        assert found.page.locator("#anomalies tr[data-kind=sale_no_payment]").count() == 0  # open ones only
        assert chain.hq.query("""SELECT resolved_by, note FROM hq_statement_anomalies
                                 WHERE kind = 'sale_no_payment'""") == [
            ("finance", "the customer's payment failed; he paid cash next day")]
        assert axe_problems(found.page) == []
        assert found.goto("/hq/ui/statements") == 200
        found.page.select_option("#sc-provider", "wechat")
        found.page.fill("#sc-code", "DEV-UNKNOWN")
        found.page.select_option("#sc-store", "demo-002")
        save = found.page.locator("section[aria-labelledby=st-codes] form.filters button[type=submit]")
        assert found.click_to(save) == 200
        assert found.page.locator(".flash.notice").inner_text() == "Store field mapping saved."
        assert "DEV-UNKNOWN" in found.page.locator("#store-codes").inner_text()
        assert chain.hq.query("SELECT provider, code, store_id, set_by FROM hq_statement_store_codes") == [
            ("wechat", "DEV-UNKNOWN", "demo-002", "finance")]
        assert found.errors == []
    finally:
        found.close()
