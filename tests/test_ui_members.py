"""The members page (会员): search, profile, stored-value top-up and sign-up at the tablet, over plain
HTTP as a browser without script; phones masked for roles without members.phone."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from edge.members import pii
from edge.ui.pages.members import yuan_to_fen
from tests.conftest import Hub
from tests.ui_support import csrf_of, post_form, ui_login

_TOPUP_ID = re.compile(r'name="topup_id" value="([0-9a-f-]{36})"')


def balance(hub: Hub, member_id: str) -> tuple[int, int]:
    """(member_balance.balance, Σ value_ledger) of a member: the cache and the ledger."""
    cached = hub.query("SELECT balance FROM member_balance WHERE member_id = ?", (member_id,))[0][0]
    summed = hub.query("SELECT coalesce(sum(delta), 0) FROM value_ledger WHERE member_id = ?", (member_id,))[0][0]
    return cached, summed


def topup_form(tablet: httpx.Client, member_id: str) -> tuple[str, str]:
    """(csrf, topup_id) of a freshly drawn top-up form."""
    html = tablet.get(f"/ui/members/{member_id}").text
    found = _TOPUP_ID.search(html)
    assert found, "the page has no top-up form"
    return csrf_of(html), found.group(1)


@pytest.mark.parametrize(("text", "fen"), [
    ("100", 10000), ("100.5", 10050), ("100.50", 10050), (" ¥ 0.01 ", 1), ("4999.99", 499999), ("0", 0),
    ("100.505", None), ("-5", None), ("abc", None), ("1e3", None), ("", None), ("100,00", None), ("1,000", None),
    (".5", None), ("007", None), ("Infinity", None), ("NaN", None), ("１００", None),
])
def test_yuan_amounts_parse_to_fen_exactly(text: str, fen: int | None) -> None:
    assert yuan_to_fen(text) == fen


def test_manager_finds_members_by_phone_tail_and_card_and_sees_full_phones(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    newest = tablet.get("/ui/members")
    assert newest.status_code == 200
    assert "<h1>会员</h1>" in newest.text and "最新会员" in newest.text
    assert 'href="/ui/members?offset=25"' in newest.text
    by_phone = tablet.get("/ui/members", params={"q": "138 0013 8000"}).text
    assert 'href="/ui/members/M000001"' in by_phone and "董颖" in by_phone and "13800138000" in by_phone
    assert "金卡会员" in by_phone and "¥200.00" in by_phone
    by_tail = tablet.get("/ui/members", params={"q": "8000"}).text
    assert 'href="/ui/members/M000001"' in by_tail and "13800138000" in by_tail
    by_card = tablet.get("/ui/members", params={"q": "8800000002"}).text
    assert 'href="/ui/members/M000002"' in by_card and "15902087464" in by_card
    by_id = tablet.get("/ui/members", params={"q": "m000003"}).text
    assert 'href="/ui/members/M000003"' in by_id
    nothing = tablet.get("/ui/members", params={"q": "99999999999"}).text
    assert "没有与“99999999999”匹配的会员。" in nothing
    for odd in ("²", "-1", "99999999999999999999999", "x"):  # an odd page offset is the first page
        assert tablet.get("/ui/members", params={"offset": odd}).status_code == 200
        assert tablet.get("/ui/members/M000001", params={"points_offset": odd, "value_offset": odd}).status_code == 200
        assert tablet.get("/ui/promotions", params={"offset": odd}).status_code == 200


@pytest.mark.parametrize("user", ["cashier", "guide"])
def test_cashier_and_guide_see_masked_phones(hub: Hub, user: str) -> None:
    tablet = ui_login(hub, user)
    found = tablet.get("/ui/members", params={"q": "8000"})
    assert found.status_code == 200
    assert "138****8000" in found.text and "13800138000" not in found.text
    profile = tablet.get("/ui/members/M000001").text
    assert "138****8000" in profile and "13800138000" not in profile
    assert "（您的角色不显示完整号码）" in profile


def test_profile_shows_tier_balances_histories_and_expiring_points_in_both_languages(hub: Hub) -> None:
    zh = ui_login(hub, "manager").get("/ui/members/M000007")
    assert zh.status_code == 200
    html = zh.text
    assert "<h1>夏佳英</h1>" in html
    assert '<span class="label">会员等级</span><span class="value">金卡会员</span>' in html
    assert '<span class="label">积分</span><span class="value">5,521</span>' in html
    assert '<span class="label">储值余额</span><span class="value">¥142.00</span>' in html
    assert "demo-001 (本店)" in html
    assert "vip" in html and "staff" in html
    assert "储值明细" in html and "积分明细" in html and "期初余额" in html
    assert "即将过期的积分" in html
    assert "该会员还没有消费记录。" in html
    en = ui_login(hub, "manager", lang="en").get("/ui/members/M000007").text
    assert '<span class="label">Member tier</span><span class="value">Gold</span>' in en
    assert '<span class="label">Stored-value balance</span><span class="value">CN¥142.00</span>' in en
    assert "Opening balance" in en and "Points that will expire" in en


def test_profile_lists_the_members_purchases_newest_first(hub: Hub) -> None:
    till = hub.login("cashier")
    body = {"lines": [{"sku": "SKU00027", "qty": 1}], "member_id": "M000008"}
    total = till.post("/api/v1/quote", json=body).json()["total"]
    sale = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", **body,
                                            "tenders": [{"method": "cash", "amount": total}]})
    assert sale.status_code == 201, sale.text
    html = ui_login(hub, "manager", lang="en").get("/ui/members/M000008").text
    assert sale.json()["receipt_no"] in html
    assert "Earned on a purchase" in html


def test_unknown_member_is_a_404_page(hub: Hub) -> None:
    resp = ui_login(hub, "manager").get("/ui/members/M999999")
    assert resp.status_code == 404 and "没有会员 M999999。" in resp.text


def test_manager_tops_up_exactly_and_a_replayed_form_books_once(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    csrf, topup_id = topup_form(tablet, "M000002")
    form = {"csrf": csrf, "topup_id": topup_id, "amount": "100.5", "method": "alipay", "till_id": ""}
    first = tablet.post("/ui/members/M000002/topups", data=form)
    assert first.status_code == 303 and first.headers["location"] == "/ui/members/M000002"
    page = tablet.get("/ui/members/M000002").text
    assert "已充值 ¥100.50，储值余额现为 ¥100.50。" in page
    again = tablet.post("/ui/members/M000002/topups", data=form)  # the same form sent twice
    assert again.status_code == 303
    assert balance(hub, "M000002") == (10050, 10050)
    assert hub.query("SELECT amount, method, till_id, user_id FROM topups WHERE member_id = 'M000002'") == \
        [(10050, "alipay", None, "U-manager")]
    assert hub.query("SELECT count(*) FROM value_ledger WHERE member_id = 'M000002' AND kind = 'topup'") == [(1,)]
    assert hub.query("SELECT count(*) FROM journal WHERE kind = 'topup' AND ref = ?", (topup_id,)) == [(1,)]
    csrf, other_id = topup_form(tablet, "M000002")
    assert other_id != topup_id  # each drawn form is a new top-up
    changed = tablet.post("/ui/members/M000002/topups", data={**form, "csrf": csrf, "amount": "1"})
    assert changed.status_code == 303  # the old id with another amount is refused, not booked
    assert "这笔操作已用不同内容提交过" in tablet.get("/ui/members/M000002").text
    assert balance(hub, "M000002") == (10050, 10050)


def test_cashier_tops_up_to_the_till_of_the_pin_login(hub: Hub) -> None:
    tablet = ui_login(hub, "cashier")
    html = tablet.get("/ui/members/M000003").text
    assert "记入您的收银台 T1。" in html and 'name="till_id"' not in html
    csrf, topup_id = topup_form(tablet, "M000003")
    resp = tablet.post("/ui/members/M000003/topups",
                       data={"csrf": csrf, "topup_id": topup_id, "amount": "100", "method": "cash"})
    assert resp.status_code == 303
    assert balance(hub, "M000003") == (10000, 10000)
    assert hub.query("SELECT amount, method, till_id, user_id FROM topups WHERE member_id = 'M000003'") == \
        [(10000, "cash", "T1", "U-cashier")]
    forged = tablet.post("/ui/members/M000003/topups", data={"csrf": csrf, "topup_id": str(uuid.uuid4()),
                                                             "amount": "5", "method": "cash", "till_id": "T2"})
    assert forged.status_code == 303  # a PIN login cannot book to another till's drawer
    assert "您登录的是另一台收银台" in tablet.get("/ui/members/M000003").text
    assert balance(hub, "M000003") == (10000, 10000)


@pytest.mark.parametrize("amount", ["0", "-5", "0.00", "100.505", "abc", "1e3", "", "100,00", "5000.01"])
def test_bad_amounts_write_nothing(hub: Hub, amount: str) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    before = (balance(hub, "M000004"), hub.counts(("topups", "value_ledger", "journal", "outbox")))
    csrf, topup_id = topup_form(tablet, "M000004")
    resp = tablet.post("/ui/members/M000004/topups",
                       data={"csrf": csrf, "topup_id": topup_id, "amount": amount, "method": "cash"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/members/M000004"
    page = tablet.get("/ui/members/M000004").text
    assert 'class="flash error"' in page
    assert ("Enter the amount in yuan" in page) or ("A top-up is at most CN¥5,000.00." in page)
    assert (balance(hub, "M000004"), hub.counts(("topups", "value_ledger", "journal", "outbox"))) == before


def test_a_bad_method_writes_nothing(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    before = hub.counts(("topups", "value_ledger"))
    csrf, topup_id = topup_form(tablet, "M000005")
    resp = tablet.post("/ui/members/M000005/topups",
                       data={"csrf": csrf, "topup_id": topup_id, "amount": "10", "method": "stored_value"})
    assert resp.status_code == 303
    assert "请选择顾客的付款方式" in tablet.get("/ui/members/M000005").text
    assert hub.counts(("topups", "value_ledger")) == before


def test_sales_guide_has_no_topup_form_and_a_forged_post_is_forbidden(hub: Hub) -> None:
    tablet = ui_login(hub, "guide")
    html = tablet.get("/ui/members/M000006").text
    assert 'name="topup_id"' not in html and "储值充值" not in html
    before = hub.counts(("topups", "value_ledger"))
    resp = tablet.post("/ui/members/M000006/topups", data={"csrf": csrf_of(html), "topup_id": str(uuid.uuid4()),
                                                           "amount": "100", "method": "cash"})
    assert resp.status_code == 403 and "无权操作" in resp.text
    assert hub.counts(("topups", "value_ledger")) == before


def test_a_stale_csrf_token_is_refused(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    _, topup_id = topup_form(tablet, "M000009")
    resp = tablet.post("/ui/members/M000009/topups",
                       data={"csrf": "0" * 32, "topup_id": topup_id, "amount": "10", "method": "cash"})
    assert resp.status_code == 400 and "表单已过期" in resp.text
    assert balance(hub, "M000009") == (0, 0)


def test_sign_up_a_member_and_refuse_a_taken_or_bad_phone(hub: Hub) -> None:
    tablet = ui_login(hub, "guide")
    resp = post_form(tablet, "/ui/members", "/ui/members",
                     {"phone": "139 1234 5678", "name": "王小明", "card_no": "C1234567"})
    assert resp.status_code == 303
    member_id = resp.headers["location"].removeprefix("/ui/members/")
    assert hub.query("SELECT phone, name, card_no, tier, home_store, phone_last4 FROM members WHERE member_id = ?",
                     (member_id,)) == [(None, "", None, "regular", "demo-001", "5678")]  # sealed (docs/privacy.md)
    keys = pii.load(hub.data_dir / pii.KEY_FILE)
    [(blob,)] = hub.query("SELECT pii FROM members WHERE member_id = ?", (member_id,))
    assert keys.open_personal(member_id, blob) == pii.Personal(phone="13912345678", name="王小明", card_no="C1234567")
    page = tablet.get(resp.headers["location"]).text
    assert f"会员 {member_id} 已开卡。" in page and "<h1>王小明</h1>" in page and "139****5678" in page
    count = hub.counts(("members",))
    taken = post_form(tablet, "/ui/members", "/ui/members", {"phone": "13912345678", "name": "重复"})
    assert taken.status_code == 303 and taken.headers["location"] == "/ui/members"
    assert "该手机号或卡号已有会员。" in tablet.get("/ui/members").text
    bad = post_form(tablet, "/ui/members", "/ui/members", {"phone": "12345", "name": "x"})
    assert bad.status_code == 303
    assert "请输入以 1 开头的 11 位手机号。" in tablet.get("/ui/members").text
    bad_card = post_form(tablet, "/ui/members", "/ui/members", {"phone": "13912340000", "card_no": "a b"})
    assert bad_card.status_code == 303
    assert "会员卡号须为 4 到 32 位字母或数字。" in tablet.get("/ui/members").text
    assert hub.counts(("members",)) == count
