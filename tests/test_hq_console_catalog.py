"""The console's catalog, promotion, report and transfer pages and their admin API over plain HTTP against a
real `backroom hq serve --demo`: every page for each role that may open it (and 403 for the others), CSRF on
every form, region scope on forged forms and URLs (403, nothing written), bad input never a 5xx, the CSV
import that applies nothing until its bad row is fixed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sync_support import HqServer

LOGINS = {"hq": "hq-demo", "region-east": "region-demo", "operator": "operator-demo", "finance": "finance-demo",
          "auditor": "auditor-demo"}
# page -> roles that may open it (permissions.toml)
PAGES = {
    "/hq/ui/catalog": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/catalog/items/SKU00027": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/catalog/import": {"hq", "region-east", "operator"},
    "/hq/ui/promotions": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/promotions/new?kind=spend_get_off": {"hq", "region-east", "operator"},
    "/hq/ui/reports?by=category": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/transfers": {"hq", "region-east", "operator", "auditor"},
}


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HqServer]:
    root = tmp_path_factory.mktemp("hq-console-catalog")
    server = HqServer(str(root / "hq.sqlite3"), root).start()
    yield server  # type: ignore[misc]
    server.stop()


def token(hq: HqServer, user: str) -> str:
    r = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": user, "password": LOGINS[user]}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def api(hq: HqServer, user: str) -> httpx.Client:
    return httpx.Client(base_url=hq.url, headers={"Authorization": f"Bearer {token(hq, user)}"}, timeout=30)


def console(hq: HqServer, user: str) -> httpx.Client:
    client = httpx.Client(base_url=hq.url, timeout=30, follow_redirects=False)
    client.cookies.set("backroom_hq_session", token(hq, user), path="/hq")
    return client


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_each_page_opens_for_the_roles_that_may_and_is_refused_to_the_others(hq: HqServer) -> None:
    for user in LOGINS:
        with console(hq, user) as c:
            for path, roles in PAGES.items():
                r = c.get(path)
                assert r.status_code == (200 if user in roles else 403), (user, path, r.status_code)
                if user in roles:
                    assert "Traceback" not in r.text and '<html lang="zh-CN">' in r.text


def test_a_price_from_the_console_form_is_scoped_csrf_checked_and_recorded(hq: HqServer) -> None:
    with console(hq, "region-east") as c:
        page = c.get("/hq/ui/catalog/items/SKU00028")
        assert 'value="demo-001"' in page.text and 'value="demo-002"' not in page.text  # his store only
        token_ = csrf(page)
        no_csrf = c.post("/hq/ui/catalog/items/SKU00028/price", data={"price_yuan": "2.60", "store": "demo-001"})
        assert no_csrf.status_code == 400
        forged = c.post("/hq/ui/catalog/items/SKU00028/price",
                        data={"csrf": token_, "price_yuan": "2.60", "store": "demo-002"})
        assert forged.status_code == 403
        assert hq.query("SELECT count(*) FROM hq_price_changes WHERE sku = 'SKU00028'")[0][0] == 0
        ok = c.post("/hq/ui/catalog/items/SKU00028/price", data={"csrf": token_, "price_yuan": "2.60"})
        assert ok.status_code == 303
        assert hq.query("SELECT store_id, price FROM hq_price_changes WHERE sku = 'SKU00028'") == [("demo-001", 260)]
        assert hq.query("SELECT actor, action, target FROM hq_audit WHERE target = 'sku:SKU00028'") == [
            ("region-east", "price.set", "sku:SKU00028")]
        bad = c.post("/hq/ui/catalog/items/SKU00028/price", data={"csrf": token_, "price_yuan": "2.605"})
        assert bad.status_code == 303 and "error" in c.get(bad.headers["location"]).text
    with console(hq, "finance") as c:
        page = c.get("/hq/ui/catalog/items/SKU00028")
        assert "price_yuan" not in page.text  # finance reads prices, sets none
        assert c.post("/hq/ui/catalog/items/SKU00028/price", data={"csrf": csrf(page), "price_yuan": "1"}
                      ).status_code == 403


def test_a_csv_import_with_a_bad_row_shows_its_line_and_applies_nothing_until_fixed(hq: HqServer) -> None:
    with console(hq, "operator") as c:
        token_ = csrf(c.get("/hq/ui/catalog/import"))
        r = c.post("/hq/ui/catalog/import", data={"csrf": token_, "csv": "SKU00040,555\nSKU99999,100\nSKU00041,abc\n"})
        assert r.status_code == 303
        page = c.get(r.headers["location"])
        assert page.status_code == 200
        rows = re.findall(r'<tr><td class="num">(\d+)</td><td>([^<]+)</td>', page.text)
        assert rows == [("2", "未知商品编码"), ("3", "价格有误")]
        import_id = r.headers["location"].rsplit("/", 1)[1]
        refused = c.post(f"/hq/ui/catalog/import/{import_id}/run", data={"csrf": token_})
        assert refused.status_code == 303 and "error" in c.get(refused.headers["location"]).text
        assert hq.query("SELECT count(*) FROM hq_price_changes WHERE sku = 'SKU00040'")[0][0] == 0
        files = {"file": ("prices.csv", b"sku,price_yuan\nSKU00040,5.55\nSKU00041,6\n", "text/csv")}
        r = c.post("/hq/ui/catalog/import", data={"csrf": token_, "csv": ""}, files=files)
        page = c.get(r.headers["location"])
        assert "应用 2 个价格" in page.text  # ready: the diff and the button
        run = c.post(r.headers["location"] + "/run", data={"csrf": token_})
        assert run.status_code == 303
        done = hq_wait(lambda: "已完成 2/2" in c.get(r.headers["location"]).text)  # this import's own state
        assert done
        assert sorted(hq.query("SELECT sku, price FROM hq_prices WHERE sku IN ('SKU00040', 'SKU00041')")) == [
            ("SKU00040", 555), ("SKU00041", 600)]
    with console(hq, "hq") as c:  # another user's import is not found
        assert c.get(r.headers["location"]).status_code == 404


def hq_wait(predicate: Any, timeout: float = 10) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_promotion_form_previews_creates_and_a_region_manager_cannot_stop_a_chain_rule(hq: HqServer) -> None:
    with console(hq, "region-east") as c:
        token_ = csrf(c.get("/hq/ui/promotions/new?kind=buy_n_get_m"))
        form = {"csrf": token_, "kind": "buy_n_get_m", "rule_id": "east-enoki", "name": "金针菇买2赠1",
                "name_en": "Enoki b2g1", "buy": "2", "get": "1", "skus": "SKU00027", "region": "华东 East",
                "sample": "SKU00027,3", "action": "preview"}
        preview = c.post("/hq/ui/promotions/new", data=form)
        assert preview.status_code == 200 and 'id="preview-result"' in preview.text and "买2赠1" in preview.text
        assert hq.query("SELECT count(*) FROM hq_promotions WHERE rule_id = 'east-enoki'")[0][0] == 0
        forged = c.post("/hq/ui/promotions/new", data={**form, "action": "create", "region": "华北 North"})
        assert forged.status_code == 403
        made = c.post("/hq/ui/promotions/new", data={**form, "action": "create"})
        assert made.status_code == 303 and made.headers["location"] == "/hq/ui/promotions/east-enoki"
        assert "east-enoki" in c.get("/hq/ui/promotions").text
        chain_rule = hq.query("SELECT rule_id FROM hq_promotions WHERE rule_id <> 'east-enoki' LIMIT 1")[0][0]
        assert c.post(f"/hq/ui/promotions/{chain_rule}/stop", data={"csrf": token_}).status_code == 403
        assert c.post("/hq/ui/promotions/east-enoki/stop", data={"csrf": token_}).status_code == 303
        assert hq.query("SELECT active FROM hq_promotions WHERE rule_id = 'east-enoki'") == [(0,)]
        bad = c.post("/hq/ui/promotions/new", data={**form, "action": "create", "rule_id": "x2", "buy": "abc"})
        assert bad.status_code == 422


def test_reports_download_csv_and_transfers_approval_needs_its_role(hq: HqServer) -> None:
    with console(hq, "finance") as c:
        r = c.get("/hq/ui/reports/csv?by=store&from=2026-01-01&to=2026-01-31")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.text.splitlines()[0] == "\ufeffstore_id,name,region,tickets,gross,discount,net,avg_basket,refunded"
        assert c.get("/hq/ui/reports?by=day&from=2026-02-30").status_code == 400
    with console(hq, "operator") as c:
        page = c.get("/hq/ui/transfers")
        assert "/hq/ui/transfers/settings" not in page.text  # only an HQ admin changes the setting
    with console(hq, "hq") as c:
        page = c.get("/hq/ui/transfers")
        assert c.post("/hq/ui/transfers/settings", data={"csrf": csrf(page), "transfers_need_approval": "1"}
                      ).status_code == 303
        assert hq.query("SELECT value FROM hq_chain_settings WHERE key = 'transfers_need_approval'") == [("true",)]
    with console(hq, "auditor") as c:
        page = c.get("/hq/ui/transfers")
        assert c.post("/hq/ui/transfers/settings", data={"csrf": csrf(page), "transfers_need_approval": "0"}
                      ).status_code == 403
        assert c.post("/hq/ui/transfers/nope/approve", data={"csrf": csrf(page)}).status_code == 403


GARBAGE = ["", "x" * 300, "-1", "1e99", "123456789012345678901234567890", "%00", "../../etc", "null", "[]", "{}"]


def test_bad_input_to_the_api_is_a_4xx_with_a_code_never_a_5xx(hq: HqServer) -> None:
    with api(hq, "hq") as c:
        calls: list[tuple[str, str, Any]] = []
        for g in GARBAGE:
            calls += [("GET", f"/hq/v1/items?limit={g}&offset={g}&query={g}", None),
                      ("GET", f"/hq/v1/items/{g or 'x'}/prices", None),
                      ("POST", "/hq/v1/items/SKU00027/price", {"price": g}),
                      ("POST", "/hq/v1/items/SKU00027/price", {"price": 100, "effective_at": g, "stores": [g]}),
                      ("POST", "/hq/v1/items/SKU00027/price", {"price": 10**30}),
                      ("POST", "/hq/v1/price-imports", g),
                      ("GET", f"/hq/v1/price-imports/{g or 'x'}", None),
                      ("POST", f"/hq/v1/price-imports/{g or 'x'}/run", None),
                      ("POST", "/hq/v1/promotions/forms", {"rule_id": g, "name": g, "name_en": g, "kind": g}),
                      ("POST", "/hq/v1/promotions/forms", {"rule_id": "ok", "name": "n", "name_en": "n",
                                                           "kind": "percent_off", "discount_bp": 10**30}),
                      ("POST", "/hq/v1/promotions/preview", {"lines": [{"sku": g, "qty": g}]}),
                      ("POST", "/hq/v1/promotions/preview", {"lines": [{"sku": "SKU00027", "qty": 1}], "rule_id": g,
                                                             "at": g}),
                      ("POST", f"/hq/v1/promotions/{g or 'x'}/stop", None),
                      ("GET", f"/hq/v1/promotions/{g or 'x'}/report", None),
                      ("GET", f"/hq/v1/reports/sales/{g or 'x'}?from={g}&to={g}", None),
                      ("GET", f"/hq/v1/reports/sales/day?from={g}&format={g}", None),
                      ("GET", f"/hq/v1/reconciliation?from={g}&to={g}", None),
                      ("GET", f"/hq/v1/transfer-approvals?state={g}&approval={g}", None),
                      ("POST", f"/hq/v1/transfers/{g or 'x'}/reject", {"reason": g}),
                      ("PUT", "/hq/v1/settings/transfers", {"transfers_need_approval": g})]
        for method, path, body in calls:
            kwargs: dict[str, Any] = {}
            if isinstance(body, str):
                kwargs["content"] = body.encode()
            elif body is not None:
                kwargs["json"] = body
            r = c.request(method, path, **kwargs)
            assert r.status_code < 500, (method, path, body, r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert {"code", "message"} <= set(r.json()), (method, path, r.text[:200])
    with console(hq, "hq") as c:
        for g in GARBAGE:
            for path in (f"/hq/ui/catalog?query={g}&offset={g}&category={g}", f"/hq/ui/catalog/items/{g or 'x'}",
                         f"/hq/ui/catalog/import/{g or 'x'}", f"/hq/ui/promotions/{g or 'x'}",
                         f"/hq/ui/promotions/new?kind={g}", f"/hq/ui/reports?by={g}&from={g}&to={g}&region={g}",
                         f"/hq/ui/reports/csv?by={g}&from={g}", f"/hq/ui/transfers?state={g}&approval={g}"):
                r = c.get(path)
                assert r.status_code < 500, (path, r.status_code, r.text[:300])


def test_the_api_enforces_roles_and_scope(hq: HqServer) -> None:
    with httpx.Client(base_url=hq.url, timeout=10) as anon:
        assert anon.get("/hq/v1/items").status_code == 401
    with api(hq, "auditor") as c:
        assert c.get("/hq/v1/items?query=SKU0002").status_code == 200
        assert c.post("/hq/v1/items/SKU00027/price", json={"price": 1}).json()["code"] == "forbidden"
        assert c.post("/hq/v1/price-imports", content=b"SKU00027,1").status_code == 403
    with api(hq, "region-east") as c:
        r = c.post("/hq/v1/items/SKU00029/price", json={"price": 1, "regions": ["华北 North"]})
        assert (r.status_code, r.json()["code"]) == (403, "out_of_scope")
        view = c.get("/hq/v1/items/SKU00029/prices").json()
        assert [s["store_id"] for s in view["stores"]] == ["demo-001"]
        assert c.get("/hq/v1/reports/sales/store").json()["rows"][0]["store_id"] == "demo-001"
        assert len(c.get("/hq/v1/reports/sales/store").json()["rows"]) == 1


def test_an_invalid_imports_progress_streams_say_so_once_and_end(hq: HqServer) -> None:
    # Both progress streams (the API's and the console's) end once the import can go no further. An invalid
    # import never runs: the console's stream used to poll it for half an hour.
    with api(hq, "operator") as a:
        made = a.post("/hq/v1/price-imports", content=b"SKU00042,abc\n")
        assert made.status_code == 201, made.text
        import_id = made.json()["import_id"]
        assert made.json()["state"] == "invalid"
        streamed = a.get(f"/hq/v1/price-imports/{import_id}/events", timeout=10)
    assert streamed.status_code == 200
    assert streamed.text.count("event: progress") == 1 and '"state":"invalid"' in streamed.text, streamed.text
    with console(hq, "operator") as c:
        token_ = csrf(c.get("/hq/ui/catalog/import"))
        r = c.post("/hq/ui/catalog/import", data={"csrf": token_, "csv": "SKU00042,abc\n"})
        assert r.status_code == 303
        streamed = c.get(r.headers["location"] + "/events", timeout=10)
    assert streamed.status_code == 200
    assert streamed.text.count("event: progress") == 1 and '"state":"invalid"' in streamed.text, streamed.text
