"""Staff administration over HTTP: who may create and change whom, PIN and password resets, deactivation,
and that no secret reaches the audit table or the hub's log.

Demo logins: manager (store_manager), region (region_manager), cashier (PIN 1234), guide (sales_guide).
Rank: hq_admin > region_manager > store_manager > cashier = sales_guide; a caller manages only ranks below
his own, and nobody changes his own account.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hubproc import HubProcess, seed_demo

from tests.ui_support import ui_login

if TYPE_CHECKING:
    from conftest import Hub

VIEW_KEYS = {"user_id", "username", "display_name", "role", "active", "has_password", "has_pin", "created_at",
             "can_manage"}


def new_id() -> str:
    return str(uuid.uuid4())


def create(client: httpx.Client, username: str, role: str = "cashier", **secret: str) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": new_id(), "username": username, "display_name": f"{username} (test)",
                            "role": role, **(secret or {"pin": "4826"})}
    resp = client.post("/api/v1/users", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def login(hub: Hub, username: str, till_id: str | None = None, **secret: str) -> httpx.Response:
    body = {"username": username, **secret}
    if till_id is not None:
        body["till_id"] = till_id
    return httpx.post(f"{hub.base_url}/api/v1/auth/login", json=body, timeout=30)


def a_sale(till_id: str) -> dict[str, Any]:
    return {"sale_id": new_id(), "till_id": till_id, "lines": [{"sku": "SKU00011", "qty": 1}],
            "tenders": [{"method": "cash", "amount": 1000}]}


def audit_rows(hub: Hub, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = hub.query("SELECT user_id, action, detail FROM audit WHERE target = ? ORDER BY audit_id", (user_id,))
    return [(who, action, json.loads(detail)) for who, action, detail in rows]


# -- creating a cashier, who then works at a till ----------------------------------------------------------

def test_a_manager_creates_a_cashier_who_logs_in_with_pin_at_a_till_and_sells(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = new_id()
    resp = manager.post("/api/v1/users", json={"user_id": user_id, "username": "wang.fang",
                                               "display_name": " 王芳（收银员） ", "role": "cashier", "pin": "4826"})
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert set(made) == VIEW_KEYS
    assert {k: v for k, v in made.items() if k != "created_at"} == {
        "user_id": user_id, "username": "wang.fang", "display_name": "王芳（收银员）", "role": "cashier",
        "active": True, "has_password": False, "has_pin": True, "can_manage": True}
    assert hub.query("SELECT at FROM audit WHERE target = ?", (user_id,)) == [(made["created_at"],)]
    assert audit_rows(hub, user_id) == [("U-manager", "user.create", {
        "username": "wang.fang", "display_name": "王芳（收银员）", "role": "cashier", "login": "pin"})]

    listed = {u["username"]: u for u in manager.get("/api/v1/users").json()["users"]}
    assert listed["wang.fang"] == made
    assert all(set(u) == VIEW_KEYS for u in listed.values())
    assert (listed["manager"]["can_manage"], listed["region"]["can_manage"], listed["cashier"]["can_manage"]) == (
        False, False, True)

    assert login(hub, "wang.fang", password="4826").status_code == 401  # a PIN is no password
    resp = login(hub, "wang.fang", pin="4826", till_id="T2")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["role"], resp.json()["user_id"], resp.json()["till_id"]) == ("cashier", user_id, "T2")
    cashier = hub.client(resp.json()["token"])

    sold = cashier.post("/api/v1/sales", json=a_sale("T2"))
    assert (sold.status_code, sold.json()["total"]) == (201, 990)
    elsewhere = cashier.post("/api/v1/sales", json=a_sale("T1"))
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "till_mismatch")
    assert cashier.put("/api/v1/items/SKU00011/price", json={"price": 1}).status_code == 403
    adjust = {"adjustment_id": new_id(), "sku": "SKU00031", "kind": "adjustment", "qty": -1, "reason": "damaged"}
    assert cashier.post("/api/v1/stock/adjustments", json=adjust).status_code == 403
    assert cashier.get("/api/v1/users").json()["code"] == "forbidden"


def test_a_create_retried_with_its_user_id_answers_the_same_account_and_writes_once(hub: Hub) -> None:
    manager = hub.login("manager")
    body = {"user_id": new_id(), "username": "retry.guide", "display_name": "Retry", "role": "sales_guide",
            "pin": "3917"}
    first, again = manager.post("/api/v1/users", json=body), manager.post("/api/v1/users", json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert [a for _, a, _ in audit_rows(hub, body["user_id"])] == ["user.create"]

    other_pin = manager.post("/api/v1/users", json={**body, "pin": "3918"})
    other_name = manager.post("/api/v1/users", json={**body, "username": "retry.guide2"})
    assert [(r.status_code, r.json()["code"]) for r in (other_pin, other_name)] == [
        (409, "id_conflict"), (409, "id_conflict")]
    assert hub.query("SELECT count(*) FROM users WHERE username LIKE 'retry.guide%'") == [(1,)]


def test_without_a_user_id_the_hub_makes_one(hub: Hub) -> None:
    resp = hub.login("manager").post("/api/v1/users", json={
        "username": "no.id", "display_name": "No id", "role": "cashier", "pin": "5071"})
    assert resp.status_code == 201, resp.text
    assert str(uuid.UUID(resp.json()["user_id"])) == resp.json()["user_id"]


def test_a_taken_username_is_409_and_writes_nothing(hub: Hub) -> None:
    manager = hub.login("manager")
    before = hub.query("SELECT count(*) FROM audit")
    resp = manager.post("/api/v1/users", json={"user_id": new_id(), "username": "cashier", "display_name": "Again",
                                               "role": "cashier", "pin": "5071"})
    assert (resp.status_code, resp.json()["code"], resp.json()["username"]) == (409, "username_taken", "cashier")
    assert hub.query("SELECT count(*) FROM audit") == before


# -- by role ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["store_manager", "region_manager", "hq_admin"])
def test_a_store_manager_cannot_create_his_own_rank_or_above(hub: Hub, role: str) -> None:
    before = hub.query("SELECT count(*) FROM users")
    resp = hub.login("manager").post("/api/v1/users", json={
        "user_id": new_id(), "username": f"up.{role}", "display_name": "Up", "role": role,
        "password": "long-enough-1"})
    assert (resp.status_code, resp.json()["code"], resp.json()["role"]) == (403, "role_too_high", role)
    assert hub.query("SELECT count(*) FROM users") == before


def test_a_region_manager_creates_a_store_manager_who_logs_in_with_a_password(hub: Hub) -> None:
    region = hub.login("region")
    made = create(region, "zhao.lei", "store_manager", password="Shelf-Stock-42")
    assert (made["role"], made["has_password"], made["has_pin"]) == ("store_manager", True, False)
    resp = login(hub, "zhao.lei", password="Shelf-Stock-42")
    assert (resp.status_code, resp.json()["role"]) == (200, "store_manager")
    assert hub.client(resp.json()["token"]).get("/api/v1/users").status_code == 200
    refused = region.post("/api/v1/users", json={"username": "top", "display_name": "Top", "role": "region_manager",
                                                 "password": "long-enough-1"})
    assert (refused.status_code, refused.json()["code"]) == (403, "role_too_high")


@pytest.mark.parametrize(("who", "target", "path", "body"), [
    ("manager", "U-region", "password", {"password": "Another-pass-9"}),
    ("manager", "U-region", "deactivate", None),
    ("region", "U-manager", "role-region_manager", None),
])
def test_nobody_changes_a_user_of_his_own_rank_or_above(
    hub: Hub, who: str, target: str, path: str, body: dict[str, str] | None,
) -> None:
    client = hub.login(who)
    if path.startswith("role-"):
        resp = client.put(f"/api/v1/users/{target}/role", json={"role": path.removeprefix("role-")})
        expected = "role_too_high"
    else:
        resp = client.post(f"/api/v1/users/{target}/{path}", json=body)
        expected = "user_too_high"
    assert (resp.status_code, resp.json()["code"]) == (403, expected)
    assert audit_rows(hub, target) == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "role", {"role": "cashier", "pin": "4826"}),
    ("POST", "password", {"password": "Another-pass-9"}),
    ("POST", "deactivate", None),
    ("POST", "activate", None),
])
def test_nobody_changes_his_own_account(hub: Hub, method: str, path: str, body: dict[str, str] | None) -> None:
    resp = hub.login("region").request(method, f"/api/v1/users/U-region/{path}", json=body)
    assert (resp.status_code, resp.json()["code"]) == (403, "own_account")
    assert audit_rows(hub, "U-region") == []


def test_a_promotion_across_pin_and_password_roles_swaps_the_secret(hub: Hub) -> None:
    manager, region = hub.login("manager"), hub.login("region")
    user_id = create(manager, "sun.li", pin="6140")["user_id"]

    guide = manager.put(f"/api/v1/users/{user_id}/role", json={"role": "sales_guide"})
    assert (guide.status_code, guide.json()["role"], guide.json()["has_pin"]) == (200, "sales_guide", True)
    extra = manager.put(f"/api/v1/users/{user_id}/role", json={"role": "cashier", "pin": "7391"})
    assert (extra.status_code, extra.json()["code"]) == (422, "secret_not_needed")

    by_manager = manager.put(f"/api/v1/users/{user_id}/role", json={"role": "store_manager", "password": "x" * 12})
    assert (by_manager.status_code, by_manager.json()["code"]) == (403, "role_too_high")
    bare = region.put(f"/api/v1/users/{user_id}/role", json={"role": "store_manager"})
    assert (bare.status_code, bare.json()["code"]) == (422, "secret_required")
    promoted = region.put(f"/api/v1/users/{user_id}/role", json={"role": "store_manager", "password": "Back-Room-77"})
    assert promoted.status_code == 200, promoted.text
    assert {k: promoted.json()[k] for k in ("role", "has_password", "has_pin", "can_manage")} == {
        "role": "store_manager", "has_password": True, "has_pin": False, "can_manage": True}

    assert login(hub, "sun.li", pin="6140", till_id="T1").status_code == 401
    assert login(hub, "sun.li", password="Back-Room-77").json()["role"] == "store_manager"
    now_above = manager.post(f"/api/v1/users/{user_id}/deactivate")
    assert (now_above.status_code, now_above.json()["code"]) == (403, "user_too_high")
    assert audit_rows(hub, user_id)[1:] == [
        ("U-manager", "user.role", {"username": "sun.li", "old": "cashier", "new": "sales_guide", "login": None}),
        ("U-region", "user.role", {"username": "sun.li", "old": "sales_guide", "new": "store_manager",
                                   "login": "password"}),
    ]


# -- resets and deactivation --------------------------------------------------------------------------------

def test_a_pin_reset_refuses_the_old_pin_and_accepts_the_new_one_at_once(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "zhou.min", pin="2580")["user_id"]
    assert login(hub, "zhou.min", pin="2580", till_id="T1").status_code == 200

    resp = manager.post(f"/api/v1/users/{user_id}/pin", json={"pin": "730519"})
    assert (resp.status_code, resp.json()["has_pin"]) == (200, True)
    assert login(hub, "zhou.min", pin="2580", till_id="T1").json()["code"] == "bad_credentials"
    assert login(hub, "zhou.min", pin="730519", till_id="T1").status_code == 200
    assert [a for _, a, _ in audit_rows(hub, user_id)] == ["user.create", "user.pin_reset"]


def test_a_reset_lifts_the_failed_login_lockout(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "locked.out", pin="3692")["user_id"]
    for _ in range(5):
        assert login(hub, "locked.out", pin="0000", till_id="T1").status_code == 401
    assert login(hub, "locked.out", pin="3692", till_id="T1").json()["code"] == "locked_out"
    assert manager.post(f"/api/v1/users/{user_id}/pin", json={"pin": "8146"}).status_code == 200
    assert login(hub, "locked.out", pin="8146", till_id="T1").status_code == 200


def test_a_password_reset_takes_effect_at_once(hub: Hub) -> None:
    region = hub.login("region")
    user_id = create(region, "qian.hao", "store_manager", password="First-pass-1")["user_id"]
    resp = region.post(f"/api/v1/users/{user_id}/password", json={"password": "Second-pass-2"})
    assert resp.status_code == 200, resp.text
    assert login(hub, "qian.hao", password="First-pass-1").status_code == 401
    assert login(hub, "qian.hao", password="Second-pass-2").status_code == 200


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("pin", {"pin": "1111"}, 422, "weak_pin"),
    ("pin", {"pin": "1234"}, 422, "weak_pin"),
    ("pin", {"pin": "98765"}, 422, "weak_pin"),
    ("pin", {"pin": "12a4"}, 400, "invalid_field"),
    ("pin", {"pin": "123"}, 400, "invalid_field"),
    ("password", {"password": "Another-pass-9"}, 422, "secret_kind"),
])
def test_a_bad_reset_is_refused_and_the_old_pin_still_works(
    hub: Hub, path: str, body: dict[str, str], status: int, code: str,
) -> None:
    manager = hub.login("manager")
    username = f"bad.reset.{uuid.uuid4().hex[:8]}"
    user_id = create(manager, username, pin="4826")["user_id"]
    resp = manager.post(f"/api/v1/users/{user_id}/{path}", json=body)
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert login(hub, username, pin="4826", till_id="T1").status_code == 200
    assert [a for _, a, _ in audit_rows(hub, user_id)] == ["user.create"]


def test_a_deactivated_user_cannot_log_in_until_activated(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "he.jing", "sales_guide", pin="5914")["user_id"]

    off = manager.post(f"/api/v1/users/{user_id}/deactivate")
    assert (off.status_code, off.json()["active"]) == (200, False)
    assert manager.post(f"/api/v1/users/{user_id}/deactivate").status_code == 200  # already off: no change
    refused = login(hub, "he.jing", pin="5914", till_id="T1")
    assert (refused.status_code, refused.json()["code"]) == (401, "bad_credentials")
    listed = {u["username"]: u for u in manager.get("/api/v1/users").json()["users"]}
    assert listed["he.jing"]["active"] is False

    on = manager.post(f"/api/v1/users/{user_id}/activate")
    assert (on.status_code, on.json()["active"]) == (200, True)
    assert login(hub, "he.jing", pin="5914", till_id="T1").status_code == 200
    assert [a for _, a, _ in audit_rows(hub, user_id)] == ["user.create", "user.deactivate", "user.activate"]


def test_an_unknown_user_is_404(hub: Hub) -> None:
    manager = hub.login("manager")
    for resp in (manager.get("/api/v1/users/U-nobody"), manager.post("/api/v1/users/U-nobody/deactivate"),
                 manager.post("/api/v1/users/U-nobody/pin", json={"pin": "4826"}),
                 manager.put("/api/v1/users/U-nobody/role", json={"role": "cashier"})):
        assert (resp.status_code, resp.json()["code"]) == (404, "unknown_user")


# -- refusals -----------------------------------------------------------------------------------------------

USER_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/users", None),
    ("GET", "/api/v1/users/U-guide", None),
    ("POST", "/api/v1/users", {"username": "sneaky", "display_name": "S", "role": "cashier", "pin": "4826"}),
    ("PUT", "/api/v1/users/U-guide/role", {"role": "cashier"}),
    ("POST", "/api/v1/users/U-guide/pin", {"pin": "4826"}),
    ("POST", "/api/v1/users/U-manager/password", {"password": "Taken-over-1"}),
    ("POST", "/api/v1/users/U-guide/deactivate", None),
    ("POST", "/api/v1/users/U-guide/activate", None),
]


@pytest.mark.parametrize("who", ["cashier", "guide"])
@pytest.mark.parametrize(("method", "path", "body"), USER_CALLS, ids=[f"{m}-{p}" for m, p, _ in USER_CALLS])
def test_a_cashier_or_guide_is_refused_every_users_endpoint(
    hub: Hub, who: str, method: str, path: str, body: dict[str, Any] | None,
) -> None:
    before = hub.query("SELECT count(*) FROM audit")
    resp = hub.login(who).request(method, path, json=body)
    assert (resp.status_code, resp.json()["code"]) == (403, "forbidden")
    assert hub.query("SELECT count(*) FROM audit") == before


def test_without_a_token_the_users_endpoints_are_401(hub: Hub) -> None:
    resp = hub.client().get("/api/v1/users")
    assert (resp.status_code, resp.json()["code"]) == (401, "unauthenticated")


GOOD = {"username": "li.ming", "display_name": "李明", "role": "cashier", "pin": "4826"}
BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("upper-case username", {**GOOD, "username": "LiMing"}, 400, "invalid_field"),
    ("one-letter username", {**GOOD, "username": "l"}, 400, "invalid_field"),
    ("spaces in username", {**GOOD, "username": "li ming"}, 400, "invalid_field"),
    ("empty display name", {**GOOD, "display_name": ""}, 400, "invalid_field"),
    ("blank display name", {**GOOD, "display_name": "   "}, 400, "invalid_field"),
    ("control char in name", {**GOOD, "display_name": "Li\nMing"}, 400, "invalid_field"),
    ("unknown role", {**GOOD, "role": "owner"}, 400, "invalid_field"),
    ("pin as a number", {**GOOD, "pin": 4826}, 400, "invalid_field"),
    ("nine-digit pin", {**GOOD, "pin": "482648264"}, 400, "invalid_field"),
    ("user_id not a uuid", {**GOOD, "user_id": "U-li"}, 400, "invalid_field"),
    ("missing display name", {k: v for k, v in GOOD.items() if k != "display_name"}, 400, "invalid_field"),
    ("no secret", {k: v for k, v in GOOD.items() if k != "pin"}, 422, "secret_required"),
    ("password for a cashier", {**GOOD, "password": "long-enough-1"}, 422, "secret_kind"),
    ("weak pin", {**GOOD, "pin": "0000"}, 422, "weak_pin"),
    ("pin for a manager", {**GOOD, "role": "store_manager"}, 403, "role_too_high"),
]


@pytest.mark.parametrize(("body", "status", "code"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_a_bad_create_body_is_4xx_and_writes_nothing(hub: Hub, body: dict[str, Any], status: int, code: str) -> None:
    before = hub.query("SELECT count(*) FROM users")
    resp = hub.login("manager").post("/api/v1/users", json=body)
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert hub.query("SELECT count(*) FROM users") == before


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"role": "store_manager", "pin": "4826"}, 422, "secret_kind"),
    ({"role": "store_manager", "password": "short"}, 400, "invalid_field"),
    ({"role": "store_manager", "password": "pw-{username}!"}, 422, "weak_password"),
    ({"role": "store_manager", "password": "aaaaaaaaaa"}, 422, "weak_password"),
])
def test_a_bad_manager_secret_is_refused(hub: Hub, body: dict[str, str], status: int, code: str) -> None:
    region = hub.login("region")
    username = f"ma.zhi.{uuid.uuid4().hex[:8]}"
    user_id = create(region, username, pin="4826")["user_id"]
    resp = region.put(f"/api/v1/users/{user_id}/role",
                      json={key: value.format(username=username) for key, value in body.items()})
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert hub.query("SELECT role FROM users WHERE user_id = ?", (user_id,)) == [("cashier",)]


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"pin": null}'])
def test_a_malformed_reset_body_is_400(hub: Hub, raw: bytes) -> None:
    resp = hub.login("manager").post("/api/v1/users/U-cashier/pin", content=raw,
                                     headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] in {"invalid_json", "invalid_field"}


# -- secrets stay secret ------------------------------------------------------------------------------------

def test_no_secret_reaches_the_audit_table_or_the_log(fresh_hub: Hub) -> None:
    manager, region = fresh_hub.login("manager"), fresh_hub.login("region")
    pin, new_pin, password, new_password = "604917", "815302", "Secret-Till-Pass-31", "Other-Secret-Pass-47"
    user_id = create(manager, "kong.yu", pin=pin)["user_id"]
    assert manager.post(f"/api/v1/users/{user_id}/pin", json={"pin": new_pin}).status_code == 200
    resp = region.put(f"/api/v1/users/{user_id}/role", json={"role": "store_manager", "password": password})
    assert resp.status_code == 200, resp.text
    assert region.post(f"/api/v1/users/{user_id}/password", json={"password": new_password}).status_code == 200
    assert login(fresh_hub, "kong.yu", password=new_password).status_code == 200
    assert manager.post("/api/v1/users", json={"username": "x.y", "display_name": "X", "role": "cashier",
                                               "pin": "1111"}).status_code == 422

    assert [a for _, a, _ in audit_rows(fresh_hub, user_id)] == [
        "user.create", "user.pin_reset", "user.role", "user.password_reset"]
    (password_hash, pin_hash), = fresh_hub.query("SELECT password_hash, pin_hash FROM users WHERE user_id = ?",
                                                 (user_id,))
    assert (password_hash.startswith("scrypt$"), pin_hash) == (True, None)
    audit = json.dumps(fresh_hub.query("SELECT * FROM audit"), ensure_ascii=False)
    log = fresh_hub.log()
    assert "user.create" in audit and "kong.yu" in audit
    for secret in (pin, new_pin, password, new_password, password_hash.split("$")[-1]):
        assert secret not in audit
        assert secret not in log


# -- ending the logins of a changed account -----------------------------------------------------------------
# Tokens are stateless; a deactivation, a role change or a secret reset sets the account's `tokens_after`,
# and both guards (bearer API and tablet cookie) refuse the account's tokens issued before it.

def test_a_deactivated_cashiers_open_logins_end_on_the_api_and_the_tablet(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "tang.wei", pin="4826")["user_id"]
    till = hub.login("tang.wei", pin="4826", till_id="T2")
    tablet = ui_login(hub, "tang.wei", pin="4826", till_id="T2")
    other_cashier, other_tablet = hub.login("cashier"), ui_login(hub, "cashier")
    assert till.get("/api/v1/items/SKU00011").status_code == 200
    assert tablet.get("/ui/devices").status_code == 200

    assert manager.post(f"/api/v1/users/{user_id}/deactivate").status_code == 200
    refused = till.post("/api/v1/sales", json=a_sale("T2"))
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
    assert till.get("/api/v1/items/SKU00011").json()["code"] == "token_revoked"
    page = tablet.get("/ui/devices")
    assert (page.status_code, page.headers["location"]) == (303, "/ui/login?next=/ui/devices")
    assert hub.query("SELECT count(*) FROM sales WHERE user_id = ?", (user_id,)) == [(0,)]

    # Everyone else carries on with the logins they have.
    assert other_cashier.post("/api/v1/sales", json=a_sale("T1")).status_code == 201
    assert other_tablet.get("/ui/devices").status_code == 200
    assert manager.get("/api/v1/users").status_code == 200

    # Activated again, the old logins stay ended; a new one works.
    assert manager.post(f"/api/v1/users/{user_id}/activate").status_code == 200
    assert till.get("/api/v1/items/SKU00011").json()["code"] == "token_revoked"
    assert hub.login("tang.wei", pin="4826", till_id="T2").get("/api/v1/items/SKU00011").status_code == 200


def test_a_demoted_managers_old_token_is_refused_and_his_new_login_has_the_new_role(hub: Hub) -> None:
    region = hub.login("region")
    user_id = create(region, "lu.yang", "store_manager", password="Manager-Pass-5")["user_id"]
    as_manager = hub.login("lu.yang", password="Manager-Pass-5")
    assert as_manager.get("/api/v1/users").status_code == 200

    resp = region.put(f"/api/v1/users/{user_id}/role", json={"role": "cashier", "pin": "6173"})
    assert resp.status_code == 200, resp.text
    refused = as_manager.get("/api/v1/users")
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
    as_cashier = hub.login("lu.yang", pin="6173", till_id="T1")
    assert as_cashier.get("/api/v1/users").json()["code"] == "forbidden"
    assert as_cashier.get("/api/v1/items/SKU00011").status_code == 200


def test_a_guide_made_cashier_logs_in_again_with_the_same_pin(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "bai.xue", "sales_guide", pin="3958")["user_id"]
    as_guide = hub.login("bai.xue", pin="3958", till_id="T1")
    assert manager.put(f"/api/v1/users/{user_id}/role", json={"role": "cashier"}).status_code == 200
    assert as_guide.get("/api/v1/items/SKU00011").json()["code"] == "token_revoked"
    again = hub.login("bai.xue", pin="3958", till_id="T1")
    assert again.post("/api/v1/sales", json=a_sale("T1")).status_code == 201


def test_after_a_pin_reset_the_old_token_ends_and_an_immediate_login_with_the_new_pin_holds(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "fan.bo", pin="2580")["user_id"]
    for attempt in range(3):  # each in the same second as its reset, mostly: the case to get right
        pin = f"73051{attempt}"
        old = hub.login("fan.bo", pin="2580" if attempt == 0 else f"73051{attempt - 1}", till_id="T1")
        assert manager.post(f"/api/v1/users/{user_id}/pin", json={"pin": pin}).status_code == 200
        new = hub.login("fan.bo", pin=pin, till_id="T1")
        assert old.get("/api/v1/items/SKU00011").json()["code"] == "token_revoked"
        assert new.get("/api/v1/items/SKU00011").status_code == 200
    after = hub.query("SELECT tokens_after FROM users WHERE user_id = ?", (user_id,))[0][0]
    assert isinstance(after, int) and abs(after - time.time()) < 60


def test_a_password_reset_ends_the_managers_open_tablet_session(hub: Hub) -> None:
    region = hub.login("region")
    user_id = create(region, "xu.ning", "store_manager", password="First-pass-1")["user_id"]
    tablet = ui_login(hub, "xu.ning", password="First-pass-1")
    assert tablet.get("/ui/users").status_code == 200
    assert region.post(f"/api/v1/users/{user_id}/password", json={"password": "Second-pass-2"}).status_code == 200
    assert tablet.get("/ui/users").headers["location"] == "/ui/login?next=/ui/users"
    assert ui_login(hub, "xu.ning", password="Second-pass-2").get("/ui/users").status_code == 200


def test_a_refused_change_ends_no_login(hub: Hub) -> None:
    manager = hub.login("manager")
    user_id = create(manager, "gu.an", pin="4826")["user_id"]
    till = hub.login("gu.an", pin="4826", till_id="T1")
    assert manager.post(f"/api/v1/users/{user_id}/pin", json={"pin": "1111"}).status_code == 422
    assert manager.post(f"/api/v1/users/{user_id}/activate").status_code == 200  # already active: no change
    assert till.get("/api/v1/items/SKU00011").status_code == 200
    assert hub.query("SELECT tokens_after FROM users WHERE user_id = ?", (user_id,)) == [(None,)]


def test_an_ended_login_stays_ended_after_the_hub_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_demo(data)
    proc = HubProcess(data).start()
    try:
        manager = proc.client("manager", password="manager-demo")
        made = manager.post("/api/v1/users", json={"username": "ren.qi", "display_name": "Ren", "role": "cashier",
                                                   "pin": "4826"})
        assert made.status_code == 201, made.text
        ended, kept = proc.client("ren.qi", pin="4826", till_id="T1"), proc.client("cashier")
        assert manager.post(f"/api/v1/users/{made.json()['user_id']}/deactivate").status_code == 200
        proc.stop()
        proc.start()  # same data directory and port; the cut-offs are read back from the database
        refused = ended.get("/api/v1/items/SKU00011")
        assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
        assert kept.get("/api/v1/items/SKU00011").status_code == 200
        assert manager.get("/api/v1/users").status_code == 200
        for client in (manager, ended, kept):
            client.close()
    finally:
        proc.stop()
