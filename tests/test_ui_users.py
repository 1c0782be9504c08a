"""The tablet's Users page (员工): the staff list, adding an account (which then logs in), role changes,
PIN and password resets, deactivation — limited by rank — and refusals for the roles below.

Demo logins: manager (store_manager), region (region_manager), cashier (PIN 1234 at T1).
"""

from __future__ import annotations

import re
import uuid

import httpx

from tests.conftest import Hub
from tests.ui_support import csrf_of, post_form, ui_login


def role_options(html: str, select_id: str = "new-role") -> list[str]:
    found = re.search(rf'<select id="{select_id}" name="role" required>(.*?)</select>', html, re.S)
    assert found, f"no role select {select_id}"
    return re.findall(r'<option value="([a-z_]+)"', found.group(1))


def flash(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'<p class="flash (\w+)" role="\w+">([^<]*)</p>', page.text)
    assert found, "no notice on the page"
    return f"{found.group(1)}: {found.group(2)}"


def user_row(hub: Hub, username: str) -> tuple[object, ...] | None:
    rows = hub.query("SELECT user_id, display_name, role, active, pin_hash IS NOT NULL, password_hash IS NOT NULL "
                     "FROM users WHERE username = ?", (username,))
    return rows[0] if rows else None


def test_the_page_lists_staff_in_chinese_and_in_english(hub: Hub) -> None:
    zh = ui_login(hub, "manager").get("/ui/users")
    assert zh.status_code == 200
    assert "<h1>员工</h1>" in zh.text
    assert "<td>cashier</td>" in zh.text and "<td>收银员</td>" in zh.text and "<td>区域经理</td>" in zh.text
    assert "已设 PIN 码" in zh.text and "已设密码" in zh.text and '<span class="tag good">启用中</span>' in zh.text
    assert '<label for="new-pin">PIN 码（收银员、导购）</label>' in zh.text
    en = ui_login(hub, "manager", lang="en").get("/ui/users")
    assert "<h1>Users</h1>" in en.text and "<td>Sales guide</td>" in en.text and "<td>Region manager</td>" in en.text
    assert '<th scope="col">Logs in with</th>' in en.text
    assert ">Add a staff account</h2>" in en.text
    # The manager manages the cashier, not the region manager or himself.
    assert 'href="/ui/users/U-cashier">管理</a>' in zh.text
    assert 'href="/ui/users/U-region">查看</a>' in zh.text and 'href="/ui/users/U-manager">查看</a>' in zh.text


def test_a_manager_adds_a_cashier_who_then_logs_in_at_t1_with_the_pin(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    page = manager.get("/ui/users")
    user_id = re.search(r'name="user_id" value="([0-9a-f-]{36})"', page.text)
    assert user_id
    form = {"csrf": csrf_of(page.text), "user_id": user_id.group(1), "display_name": "周丽", "username": "zhou.li",
            "role": "cashier", "pin": "48261", "password": ""}
    resp = manager.post("/ui/users", data=form)
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/users")
    assert flash(manager, "/ui/users") == "notice: 已创建账号 zhou.li。周丽 在收银台用您设置的 PIN 码登录。"
    assert user_row(hub, "zhou.li") == (user_id.group(1), "周丽", "cashier", 1, 1, 0)

    again = manager.post("/ui/users", data=form)  # a double tap: the same form, the same account
    assert again.status_code == 303
    assert hub.query("SELECT count(*) FROM users WHERE username = 'zhou.li'") == [(1,)]
    assert hub.query("SELECT count(*) FROM audit WHERE target = ?", (user_id.group(1),)) == [(1,)]
    changed = manager.post("/ui/users", data={**form, "pin": "59302"})  # the old form re-sent, edited
    assert changed.status_code == 303
    assert flash(manager, "/ui/users") == "error: 这张表单已用于创建另一个账号，请刷新页面后重新填写。"

    cashier = ui_login(hub, "zhou.li", pin="48261", till_id="T1")
    home = cashier.get("/ui/devices")
    assert home.status_code == 200 and "zhou.li" in home.text and "收银台 T1" in home.text
    listed = manager.get("/ui/users").text
    assert "<td>周丽</td>" in listed and "48261" not in listed


def test_a_weak_pin_is_refused_with_a_notice_and_nothing_is_written(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    before = hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)")
    for pin, notice in [
        ("1234", "error: 这个 PIN 码太容易被猜到：不能全是同一个数字，也不能是 1234、9876 这样的连续数字。"),
        ("777777", "error: 这个 PIN 码太容易被猜到：不能全是同一个数字，也不能是 1234、9876 这样的连续数字。"),
        ("12a4", "error: PIN 码为 4 到 8 位数字。"),
        ("", "error: 收银员和导购用 PIN 码登录：请填写 4 到 8 位数字的 PIN 码。"),
    ]:
        resp = post_form(manager, "/ui/users", "/ui/users", {
            "user_id": str(uuid.uuid4()), "display_name": "Weak", "username": "weak.pin", "role": "cashier",
            "pin": pin, "password": "ignored-for-a-cashier"})
        assert resp.status_code == 303
        assert flash(manager, "/ui/users") == notice
        page = manager.get("/ui/users").text
        assert "777777" not in page and "ignored-for-a-cashier" not in page  # no secret is written back
    assert hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)") == before


def test_bad_names_and_a_taken_user_name_are_notices(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    before = hub.query("SELECT count(*) FROM users")
    base = {"display_name": "某人", "username": "some.one", "role": "sales_guide", "pin": "59142"}
    for change, notice in [
        ({"username": "Some One"}, "error: 用户名为 2 到 32 个字符"),
        ({"display_name": "  "}, "error: 请填写员工姓名，最多 64 个字符。"),
        ({"username": "cashier"}, "error: 这个用户名已被占用，请换一个。"),
        ({"role": "owner"}, "error: 请从列表中选择角色"),
    ]:
        post_form(manager, "/ui/users", "/ui/users", {**base, "user_id": str(uuid.uuid4()), **change})
        assert flash(manager, "/ui/users").startswith(notice)
    assert hub.query("SELECT count(*) FROM users") == before


def test_a_manager_may_give_only_cashier_and_sales_guide(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    assert role_options(manager.get("/ui/users").text) == ["cashier", "sales_guide"]
    assert role_options(manager.get("/ui/users/U-cashier").text, "role-new") == ["cashier", "sales_guide"]
    before = hub.query("SELECT count(*) FROM users")
    resp = post_form(manager, "/ui/users", "/ui/users", {
        "user_id": str(uuid.uuid4()), "display_name": "Boss", "username": "forged.boss", "role": "store_manager",
        "password": "Forged-Boss-1"})
    assert resp.status_code == 303
    assert flash(manager, "/ui/users") == "error: 您的角色不能授予这个角色：只能授予比您级别低的角色。"
    assert hub.query("SELECT count(*) FROM users") == before


def test_a_region_manager_adds_a_store_manager_who_logs_in_with_the_password(hub: Hub) -> None:
    region = ui_login(hub, "region", lang="en")
    assert role_options(region.get("/ui/users").text) == ["store_manager", "cashier", "sales_guide"]
    resp = post_form(region, "/ui/users", "/ui/users", {
        "user_id": str(uuid.uuid4()), "display_name": "Deng Hui", "username": "deng.hui", "role": "store_manager",
        "pin": "", "password": "Back-Office-88"})
    assert resp.status_code == 303
    assert flash(region, "/ui/users") == ("notice: Account deng.hui made. Deng Hui logs in with the password you "
                                          "set.")
    assert user_row(hub, "deng.hui")[2:] == ("store_manager", 1, 0, 1)  # type: ignore[index]
    store_manager = ui_login(hub, "deng.hui", password="Back-Office-88")
    assert store_manager.get("/ui/users").status_code == 200


def test_a_manager_resets_a_pin_changes_a_role_and_deactivates_which_ends_the_session(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    post_form(manager, "/ui/users", "/ui/users", {
        "user_id": str(uuid.uuid4()), "display_name": "Qiu", "username": "qiu.yu", "role": "sales_guide",
        "pin": "30517"})
    user_id = user_row(hub, "qiu.yu")[0]  # type: ignore[index]
    path = f"/ui/users/{user_id}"
    page = manager.get(path)
    assert ">重置 PIN 码</h2>" in page.text and "重置密码" not in page.text
    assert 'data-confirm="确定停用 Qiu 吗？' in page.text

    guide = ui_login(hub, "qiu.yu", pin="30517")
    assert post_form(manager, path, f"{path}/pin", {"pin": "1111"}).status_code == 303
    assert flash(manager, path).startswith("error: 这个 PIN 码太容易被猜到")
    assert guide.get("/ui/devices").status_code == 200  # a refused reset ends nothing
    assert post_form(manager, path, f"{path}/pin", {"pin": "60382"}).status_code == 303
    assert flash(manager, path) == "notice: 已为 Qiu 设置新 PIN 码，请当面告知本人；其已登录的设备均已退出。"
    assert guide.get("/ui/devices").headers["location"] == "/ui/login?next=/ui/devices"
    guide = ui_login(hub, "qiu.yu", pin="60382")
    assert guide.get("/ui/devices").status_code == 200

    assert post_form(manager, path, f"{path}/role", {"role": "cashier", "pin": "", "password": ""}).status_code == 303
    assert flash(manager, path) == "notice: Qiu 的角色已改为收银员，需重新登录后继续使用。"
    assert user_row(hub, "qiu.yu")[2] == "cashier"  # type: ignore[index]
    assert guide.get("/ui/devices").status_code == 303

    cashier = ui_login(hub, "qiu.yu", pin="60382")
    assert post_form(manager, path, f"{path}/deactivate", {}).status_code == 303
    assert flash(manager, path) == "notice: Qiu 已停用：所有设备均已退出登录，且无法再登录。"
    assert cashier.get("/ui/devices").status_code == 303
    assert "<span class=\"tag bad\">已停用</span>" in manager.get(path).text
    assert post_form(manager, path, f"{path}/activate", {}).status_code == 303
    assert user_row(hub, "qiu.yu")[3] == 1  # type: ignore[index]
    actions = [a for (a,) in hub.query("SELECT action FROM audit WHERE target = ? ORDER BY audit_id", (user_id,))]
    assert actions == ["user.create", "user.pin_reset", "user.role", "user.deactivate", "user.activate"]


def test_a_manager_sees_but_cannot_change_the_region_manager(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    page = manager.get("/ui/users/U-region")
    assert page.status_code == 200
    assert "您的角色无权修改此账号：其级别与您相同或更高。" in page.text and "/deactivate" not in page.text
    resp = manager.post("/ui/users/U-region/deactivate", data={"csrf": csrf_of(page.text)})
    assert resp.status_code == 303
    assert flash(manager, "/ui/users/U-region").startswith("error: 您的角色无权修改此账号")
    assert hub.query("SELECT active FROM users WHERE user_id = 'U-region'") == [(1,)]
    assert manager.get("/ui/users/U-nobody").status_code == 404


def test_a_cashier_gets_403_on_the_page_and_on_a_forged_post(hub: Hub) -> None:
    cashier = ui_login(hub, "cashier")
    page = cashier.get("/ui/users")
    assert (page.status_code, "无权操作" in page.text, "添加员工账号" in page.text) == (403, True, False)
    token = csrf_of(cashier.get("/ui/devices").text)
    before = hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)")
    forged = cashier.post("/ui/users", data={"csrf": token, "user_id": str(uuid.uuid4()), "display_name": "Me",
                                            "username": "me.too", "role": "cashier", "pin": "48261"})
    assert forged.status_code == 403
    assert cashier.post("/ui/users/U-guide/pin", data={"csrf": token, "pin": "48261"}).status_code == 403
    assert cashier.post("/ui/users/U-guide/deactivate", data={"csrf": token}).status_code == 403
    assert hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)") == before


def test_a_stale_csrf_token_is_400_and_writes_nothing(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    before = hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)")
    resp = manager.post("/ui/users", data={"csrf": "0" * 32, "user_id": str(uuid.uuid4()), "display_name": "X",
                                           "username": "stale.form", "role": "cashier", "pin": "48261"})
    assert resp.status_code == 400
    assert manager.post("/ui/users/U-cashier/deactivate", data={"csrf": "0" * 32}).status_code == 400
    assert hub.query("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM audit)") == before


def test_a_region_manager_promotes_a_cashier_only_with_a_password(hub: Hub) -> None:
    region = ui_login(hub, "region")
    post_form(region, "/ui/users", "/ui/users", {
        "user_id": str(uuid.uuid4()), "display_name": "Ma", "username": "ma.jun", "role": "cashier", "pin": "40718"})
    user_id = user_row(hub, "ma.jun")[0]  # type: ignore[index]
    path = f"/ui/users/{user_id}"
    assert role_options(region.get(path).text, "role-new") == ["store_manager", "cashier", "sales_guide"]
    post_form(region, path, f"{path}/role", {"role": "store_manager", "pin": "", "password": ""})
    assert flash(region, path) == "error: 店长和区域经理用密码登录：请填写至少 8 个字符的密码。"
    post_form(region, path, f"{path}/role", {"role": "store_manager", "password": "ma.jun-pass"})
    assert flash(region, path) == "error: 这个密码太容易被猜到：不能全是同一个字符，也不能包含用户名。"
    assert user_row(hub, "ma.jun")[2:] == ("cashier", 1, 1, 0)  # type: ignore[index]
    post_form(region, path, f"{path}/role", {"role": "store_manager", "pin": "", "password": "Stock-Room-64"})
    assert flash(region, path) == "notice: Ma 的角色已改为店长，需重新登录后继续使用。"
    assert user_row(hub, "ma.jun")[2:] == ("store_manager", 1, 0, 1)  # type: ignore[index]
    assert ui_login(hub, "ma.jun", password="Stock-Room-64").get("/ui/users").status_code == 200
