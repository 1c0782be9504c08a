"""The HQ console over plain HTTP (forms and cookies, as a browser without script), against a real
`backroom hq serve --demo`: logins per role, menus, region scope (region-east never sees nor touches
demo-002, whether through pages, forged URLs, forged forms or the API), CSRF, audit rows written with
each change, users administration ending logins, and no 5xx on garbage."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import console_support
import httpx
import pytest
import sync_support
from console_support import DEMO_HQ, api, api_token, audit_count, console_login, post_form
from sync_support import HqServer, PgCluster

from hq_sync.server.console.nav import pages_for

hq_server = console_support.hq_server
pg_cluster = sync_support.pg_cluster
MENU = re.compile(r'<nav class="menu".*?</nav>', re.S)


def menu_paths(html: str) -> list[str]:
    found = MENU.search(html)
    assert found, "no menu"
    return re.findall(r'href="([^"]+)"', found.group(0))


def test_the_bare_address_leads_to_the_console_login(hq_server: HqServer) -> None:
    with httpx.Client(base_url=hq_server.url, timeout=10) as client:
        first = client.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/hq/ui/login"
        login = client.get("/hq/ui/login")
        assert '<html lang="zh-CN">' in login.text and "<h1>登录</h1>" in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]
        assert "script-src 'self'" in login.headers["content-security-policy"]
        client.cookies.set("backroom_lang", "en")
        assert "<h1>Log in</h1>" in client.get("/hq/ui/login").text


@pytest.mark.parametrize("username", list(DEMO_HQ))
def test_each_demo_login_sees_only_the_pages_its_role_may_open(hq_server: HqServer, username: str) -> None:
    client = console_login(hq_server, username)
    home = client.get("/hq/ui")
    want = [item.path for item in pages_for(DEMO_HQ[username][1])]
    assert home.status_code == 303 and home.headers["location"] == want[0]
    page = client.get(want[0])
    assert page.status_code == 200
    assert menu_paths(page.text) == want
    cookie = next(c for c in client.cookies.jar if c.name == "backroom_hq_session")
    assert cookie.path == "/hq" and cookie.has_nonstandard_attr("HttpOnly")
    everything = ["/hq/ui/dashboard", "/hq/ui/stores", "/hq/ui/audit", "/hq/ui/users"]
    for path in everything:
        assert client.get(path).status_code == (200 if path in want else 403), path


def test_the_admin_menu_and_the_region_managers(hq_server: HqServer) -> None:
    admin = menu_paths(console_login(hq_server, "hq").get("/hq/ui/dashboard").text)
    east = menu_paths(console_login(hq_server, "region-east").get("/hq/ui/dashboard").text)
    assert "/hq/ui/users" in admin and "/hq/ui/audit" in admin
    assert "/hq/ui/users" not in east and "/hq/ui/audit" not in east and "/hq/ui/stores" in east


def test_region_east_neither_sees_nor_touches_demo_002(hq_server: HqServer) -> None:
    east = console_login(hq_server, "region-east")
    for path in ("/hq/ui/dashboard", "/hq/ui/stores"):
        page = east.get(path)
        assert page.status_code == 200 and "demo-001" in page.text, path
        assert "demo-002" not in page.text and "演示二店" not in page.text and "华北" not in page.text, path
    assert east.get("/hq/ui/stores/demo-002").status_code == 403
    assert "演示二店" not in east.get("/hq/ui/stores/demo-002").text  # nothing of the store, not even its name
    before = (audit_count(hq_server), hq_server.query("SELECT name, region, address FROM hq_stores "
                                                      "WHERE store_id = 'demo-002'"),
              hq_server.query("SELECT count(*) FROM hq_pair_codes"))
    # forged forms: a valid session and CSRF token (from his own store's page), another region's store
    forged = [("/hq/ui/stores/demo-002/profile", {"name": "mine now", "region": "华东 East",
                                                   "timezone": "Asia/Shanghai", "address": "x"}),
              ("/hq/ui/stores/demo-002/pair-code", {}),
              ("/hq/ui/stores/demo-002/quarantine/1/resolve", {"note": "x"}),
              ("/hq/ui/stores/demo-002/quarantine/1/retry", {})]
    for action, data in forged:
        answer = post_form(east, "/hq/ui/stores/demo-001", action, data)
        assert answer.status_code == 403, (action, answer.status_code, answer.text[:300])
    # nor may he move his own store into another region
    moved = post_form(east, "/hq/ui/stores/demo-001", "/hq/ui/stores/demo-001/profile",
                      {"name": "x", "region": "华北 North", "timezone": "Asia/Shanghai", "address": ""})
    assert moved.status_code == 403
    after = (audit_count(hq_server), hq_server.query("SELECT name, region, address FROM hq_stores "
                                                     "WHERE store_id = 'demo-002'"),
             hq_server.query("SELECT count(*) FROM hq_pair_codes"))
    assert after == before
    assert hq_server.query("SELECT region FROM hq_stores WHERE store_id = 'demo-001'") == [("华东 East",)]


def test_region_east_through_the_api_reaches_his_stores_only(hq_server: HqServer) -> None:
    east = api(hq_server, "region-east")
    assert [s["store_id"] for s in east.get("/hq/v1/stores").json()["stores"]] == ["demo-001"]
    assert [r["store_id"] for r in east.get("/hq/v1/reports/stores").json()["rows"]] == ["demo-001"]
    for method, path, body in [("GET", "/hq/v1/stores/demo-002/quarantine", None),
                               ("GET", "/hq/v1/stores/demo-002/digests", None),
                               ("GET", "/hq/v1/stores/demo-002/stock/SKU00001", None),
                               ("PUT", "/hq/v1/stores/demo-002/profile", {"name": "x"}),
                               ("POST", "/hq/v1/stores/demo-002/pair-code", None),
                               ("PUT", "/hq/v1/prices/SKU00001", {"price": 1, "stores": ["demo-002"]}),
                               ("PUT", "/hq/v1/prices/SKU00001", {"price": 1, "regions": ["华北 North"]}),
                               ("POST", "/hq/v1/members/M000001/escrow", {"store_id": "demo-002", "amount": 1})]:
        before = (audit_count(hq_server), hq_server.query("SELECT count(*) FROM hq_feed"))
        answer = east.request(method, path, json=body)
        assert answer.status_code == 403 and answer.json()["code"] == "out_of_scope", (path, answer.text)
        assert (audit_count(hq_server), hq_server.query("SELECT count(*) FROM hq_feed")) == before
    # what he may do lands on his stores only: a price with no stores named goes to demo-001, not the chain
    done = east.put("/hq/v1/prices/SKU00002", json={"price": 777})
    assert done.status_code == 200 and done.json()["stores"] == ["demo-001"], done.text
    assert hq_server.query("SELECT store_id, price FROM hq_prices WHERE sku = 'SKU00002'") == [("demo-001", 777)]
    assert hq_server.query("SELECT actor, role, action, target FROM hq_audit ORDER BY audit_id DESC LIMIT 1") == [
        ("region-east", "region_manager", "price.set", "sku:SKU00002")]
    # a promotion for the whole chain is not his; one for his store is
    rule = {"rule_id": "east-10", "name": "东区九折", "name_en": "East 10% off",
            "benefit": {"kind": "percent_off", "discount_bp": 1000}}
    chain_wide = east.post("/hq/v1/promotions", json=rule)
    assert chain_wide.status_code == 403 and chain_wide.json()["code"] == "out_of_scope"
    mine = east.post("/hq/v1/promotions", json={**rule, "eligibility": {"stores": ["demo-001"]}})
    assert mine.status_code == 201, mine.text
    # the member's escrow per store shows his stores only; the balance stays chain-wide
    view = east.get("/hq/v1/members/M000001").json()
    assert set(view["escrow"]) <= {"demo-001"} and "balance" in view
    assert east.get("/hq/v1/audit").status_code == 403
    assert east.get("/hq/v1/users").status_code == 403


def test_a_form_without_its_csrf_token_changes_nothing(hq_server: HqServer) -> None:
    admin = console_login(hq_server, "hq")
    before = (audit_count(hq_server), hq_server.query("SELECT name FROM hq_stores WHERE store_id = 'demo-001'"))
    for token in (None, "0" * 32):
        data = {"name": "forged", "region": "华东 East", "timezone": "Asia/Shanghai"}
        if token:
            data["csrf"] = token
        answer = admin.post("/hq/ui/stores/demo-001/profile", data=data)
        assert answer.status_code == 400 and "<h1>" in answer.text
    other = console_login(hq_server, "hq")  # another session's token is wrong here too
    stolen = re.search(r'name="csrf" value="([0-9a-f]+)"', other.get("/hq/ui/stores/demo-001").text)
    assert stolen
    assert admin.post("/hq/ui/stores/demo-001/profile", data={"csrf": stolen.group(1), "name": "forged"}
                      ).status_code == 400
    after = (audit_count(hq_server), hq_server.query("SELECT name FROM hq_stores WHERE store_id = 'demo-001'"))
    assert after == before


def test_a_store_profile_edit_is_saved_and_audited_with_before_and_after(hq_server: HqServer) -> None:
    admin = console_login(hq_server, "hq", lang="en")
    answer = post_form(admin, "/hq/ui/stores/demo-002", "/hq/ui/stores/demo-002/profile",
                       {"name": "演示二店 Demo store 2", "region": "华北 North", "timezone": "Asia/Harbin",
                        "address": "北京市朝阳区 1 号"})
    assert answer.status_code == 303 and answer.headers["location"] == "/hq/ui/stores/demo-002"
    shown = admin.get("/hq/ui/stores/demo-002")
    assert "The store&#39;s profile is saved." in shown.text and "北京市朝阳区 1 号" in shown.text
    assert hq_server.query("SELECT timezone, address FROM hq_stores WHERE store_id = 'demo-002'") == [
        ("Asia/Harbin", "北京市朝阳区 1 号")]
    row = hq_server.query("SELECT actor, action, target, before_json, after_json FROM hq_audit "
                          "WHERE action = 'store.profile' ORDER BY audit_id DESC LIMIT 1")[0]
    assert row[:3] == ("hq", "store.profile", "store:demo-002")
    assert '"address":""' in row[3] and '"address":"北京市朝阳区 1 号"' in row[4]
    bad = post_form(admin, "/hq/ui/stores/demo-002", "/hq/ui/stores/demo-002/profile",
                    {"name": "x", "region": "华北 North", "timezone": "Mars/Olympus", "address": ""})
    assert bad.status_code == 303
    assert "timezone" in admin.get("/hq/ui/stores/demo-002").text.lower()
    assert hq_server.query("SELECT name FROM hq_stores WHERE store_id = 'demo-002'") == [("演示二店 Demo store 2",)]
    # the audit page and API find it
    page = admin.get("/hq/ui/audit", params={"target": "store:demo-002"})
    assert page.status_code == 200 and "store.profile" in page.text
    entries = api(hq_server, "auditor").get("/hq/v1/audit", params={"action": "store."}).json()["entries"]
    assert entries and all(e["action"].startswith("store.") for e in entries)
    assert entries[0]["after"]["timezone"] == "Asia/Harbin"


def test_users_administration_ends_logins_and_is_audited(hq_server: HqServer) -> None:
    admin = console_login(hq_server, "hq", lang="en")
    made = post_form(admin, "/hq/ui/users", "/hq/ui/users",
                     {"username": "north-boss", "display_name": "North", "password": "north-pass-1",
                      "role": "region_manager", "regions": "华北 North"})
    assert made.status_code == 303 and made.headers["location"] == "/hq/ui/users/north-boss"
    north = api(hq_server, "north-boss", "north-pass-1")
    assert [s["store_id"] for s in north.get("/hq/v1/stores").json()["stores"]] == ["demo-002"]
    north_console = console_login(hq_server, "north-boss", "north-pass-1")
    assert north_console.get("/hq/ui/stores/demo-002").status_code == 200
    # a role change ends his logins, API and console alike
    changed = post_form(admin, "/hq/ui/users/north-boss", "/hq/ui/users/north-boss/role",
                        {"role": "region_manager", "regions": ["华北 North", "华东 East"]})
    assert changed.status_code == 303
    assert north.get("/hq/v1/stores").status_code == 401
    assert north_console.get("/hq/ui/stores/demo-002").status_code == 303  # back to the login form
    north = api(hq_server, "north-boss", "north-pass-1")
    assert len(north.get("/hq/v1/stores").json()["stores"]) == 2
    # a password reset ends them too, and the new password works
    assert post_form(admin, "/hq/ui/users/north-boss", "/hq/ui/users/north-boss/password",
                     {"password": "north-pass-2"}).status_code == 303
    assert north.get("/hq/v1/stores").status_code == 401
    assert httpx.post(hq_server.url + "/hq/v1/auth/login", json={"username": "north-boss",
                                                                 "password": "north-pass-1"}).status_code == 401
    north = api(hq_server, "north-boss", "north-pass-2")
    # deactivation ends them and refuses the next login
    assert post_form(admin, "/hq/ui/users/north-boss", "/hq/ui/users/north-boss/deactivate", {}).status_code == 303
    assert north.get("/hq/v1/stores").status_code == 401
    assert httpx.post(hq_server.url + "/hq/v1/auth/login", json={"username": "north-boss",
                                                                 "password": "north-pass-2"}).status_code == 401
    actions = [r[0] for r in hq_server.query("SELECT action FROM hq_audit WHERE target = 'user:north-boss' "
                                             "ORDER BY audit_id")]
    assert actions == ["user.create", "user.role", "user.password", "user.deactivate"]
    secrets = hq_server.query("SELECT count(*) FROM hq_audit WHERE after_json LIKE '%north-pass%' "
                              "OR after_json LIKE '%scrypt%'")
    assert secrets == [(0,)]
    # HQ keeps an admin: the last one cannot be demoted; and nobody deactivates himself
    last = post_form(admin, "/hq/ui/users/hq", "/hq/ui/users/hq/role", {"role": "auditor"})
    assert last.status_code == 303
    assert "HQ keeps at least one active hq_admin" in admin.get("/hq/ui/users/hq").text
    own = post_form(admin, "/hq/ui/users/hq", "/hq/ui/users/hq/deactivate", {})
    assert own.status_code == 303
    assert "you cannot deactivate your own account" in admin.get("/hq/ui/users/hq").text
    assert hq_server.query("SELECT role, active FROM hq_users WHERE username = 'hq'") == [("hq_admin", 1)]


def test_roles_below_admin_cannot_manage_users_even_with_a_forged_form(hq_server: HqServer) -> None:
    before = (audit_count(hq_server), hq_server.query("SELECT count(*) FROM hq_users"))
    auditor = console_login(hq_server, "auditor")
    assert auditor.get("/hq/ui/users").status_code == 200  # he may read
    page = auditor.get("/hq/ui/users/operator")
    assert page.status_code == 200 and 'action="/hq/ui/users/operator/role"' not in page.text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token  # the logout form's
    for action, data in [("/hq/ui/users", {"username": "evil", "password": "evil-pass-1", "role": "hq_admin"}),
                         ("/hq/ui/users/operator/role", {"role": "hq_admin"}),
                         ("/hq/ui/users/operator/deactivate", {})]:
        assert auditor.post(action, data={"csrf": token.group(1), **data}).status_code == 403
    operator = api(hq_server, "operator")
    assert operator.post("/hq/v1/users", json={"username": "evil", "password": "evil-pass-1",
                                               "role": "hq_admin"}).status_code == 403
    assert operator.put("/hq/v1/stores/demo-001/profile", json={"name": "x"}).status_code == 403
    assert (audit_count(hq_server), hq_server.query("SELECT count(*) FROM hq_users")) == before


GARBAGE = ["9" * 30, "-1", "%00", "💥" * 50, "'; DROP TABLE hq_users; --", "x" * 5000, "1e999", "",
           "a\r\nSet-Cookie: x=1"]


def test_garbage_in_every_console_url_and_form_is_never_a_5xx(hq_server: HqServer) -> None:
    admin = console_login(hq_server, "hq")
    east = console_login(hq_server, "region-east")
    for client in (admin, east):
        for value in GARBAGE:
            for path, params in [("/hq/ui/stores", {"region": value}), ("/hq/ui/audit", {"actor": value,
                                 "action": value, "target": value, "offset": value}),
                                 (f"/hq/ui/stores/{quote(value or 'x', safe='')}", {}),
                                 (f"/hq/ui/users/{quote(value or 'x', safe='')}", {}),
                                 ("/hq/ui/login", {"next": value}),
                                 (f"/hq/ui/lang/{quote(value or 'x', safe='')}", {"next": value})]:
                answer = client.get(path, params=params)
                assert answer.status_code < 500, (path, value, answer.status_code)
            for action, data in [("/hq/ui/stores/demo-001/profile", {"name": value, "region": value,
                                                                      "timezone": value, "address": value}),
                                 (f"/hq/ui/stores/demo-001/quarantine/{quote(value or '1', safe='')}/resolve",
                                  {"note": value}),
                                 ("/hq/ui/stores", {"store_id": value}),
                                 (f"/hq/ui/stores/{quote(value or 'x', safe='')}/profile", {"name": value}),
                                 (f"/hq/ui/users/{quote(value or 'x', safe='')}/deactivate", {}),
                                 ("/hq/ui/users", {"username": value, "password": value, "role": value,
                                                   "regions": value}),
                                 ("/hq/ui/users/operator/role", {"role": value, "regions": value}),
                                 ("/hq/ui/users/operator/password", {"password": value})]:
                answer = post_form(client, "/hq/ui/dashboard", action, data)
                assert answer.status_code < 500, (action, value, answer.status_code, answer.text[:200])
    token = api_token(hq_server, "hq")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=hq_server.url, headers=headers, timeout=10) as client:
        for value in GARBAGE[:4]:
            for method, path, body in [("GET", f"/hq/v1/audit?limit={value}&offset={value}", None),
                                       ("PUT", "/hq/v1/prices/SKU00001", {"price": int("9" * 30)}),
                                       ("PUT", "/hq/v1/stores/demo-001/profile", {"timezone": value}),
                                       ("POST", "/hq/v1/users", {"username": value, "password": value,
                                                                 "role": value}),
                                       ("PUT", "/hq/v1/users/operator/role", {"role": value}),
                                       ("POST", f"/hq/v1/stores/demo-001/quarantine/{value}/resolve", {})]:
                answer = client.request(method, path, content=httpx.Request("X", "/", json=body).content
                                        if body is not None else None,
                                        headers={"content-type": "application/json"})
                assert 400 <= answer.status_code < 500, (path, value, answer.status_code, answer.text[:200])
                assert set(answer.json()) >= {"code", "message"}
    assert admin.get("/hq/ui/dashboard").status_code == 200


def test_the_console_on_postgresql(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """HQ's PostgreSQL mode: the same pages, scope and audit."""
    hq = HqServer(pg_cluster.url(), tmp_path).start()
    try:
        east = console_login(hq, "region-east")
        for path in ("/hq/ui/dashboard", "/hq/ui/stores", "/hq/ui/stores/demo-001"):
            page = east.get(path)
            assert page.status_code == 200 and "演示二店" not in page.text, path
        assert post_form(east, "/hq/ui/stores/demo-001", "/hq/ui/stores/demo-002/profile",
                         {"name": "x"}).status_code == 403
        admin = console_login(hq, "hq")
        assert post_form(admin, "/hq/ui/stores/demo-002", "/hq/ui/stores/demo-002/profile",
                         {"name": "二店", "region": "华北 North", "timezone": "Asia/Shanghai", "address": ""}
                         ).status_code == 303
        for path in ("/hq/ui/audit?action=store.&target=store:", "/hq/ui/users", "/hq/ui/users/region-east"):
            assert admin.get(path).status_code == 200, path
        assert hq.query("SELECT actor, action, target FROM hq_audit") == [("hq", "store.profile", "store:demo-002")]
    finally:
        hq.stop()
