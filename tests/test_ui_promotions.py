"""The promotions page (促销): the demo promotions in words in zh-CN and English, grouped by whether they
run; uses, discount and covered sales for report readers once a sale used one; coupons for managers."""

from __future__ import annotations

import datetime
import uuid

from tests.conftest import Hub
from tests.ui_support import ui_login


def rule_block(html: str, rule_id: str) -> str:
    """The list entry of one promotion on the page."""
    start = html.index(f'<li id="rule-{rule_id}">')
    return html[start:html.index("</li>", start)]


def test_demo_promotions_in_chinese(hub: Hub) -> None:
    page = ui_login(hub, "manager").get("/ui/promotions")
    assert page.status_code == 200
    html = page.text
    assert "<h1>促销</h1>" in html
    assert '进行中的促销 <span class="muted">(5)</span>' in html
    home = rule_block(html, "demo-home-200-30")
    assert "日用个护满200减30" in home and "满200减30" in home and '<span class="tag good">正在生效</span>' in home
    assert "品类：日用百货、个人护理" in home and "长期有效" in home and "所有顾客" in home
    assert "每满100减10" in rule_block(html, "demo-snacks-100-10")
    cola = rule_block(html, "demo-cola-b2g1")
    assert "买2赠1" in cola and "商品：可口可乐 330ml罐装" in cola
    dairy = rule_block(html, "demo-dairy-gold-2x")
    assert "积分2倍" in dairy and "限会员等级：金卡会员" in dairy and "品类：乳品烘焙" in dairy
    welcome = rule_block(html, "demo-welcome-coupon")
    assert "凭券使用" in welcome and "全部商品" in welcome
    assert "暂无排期的促销。" in html and "还没有已结束的促销。" in html


def test_demo_promotions_in_english(hub: Hub) -> None:
    html = ui_login(hub, "manager", lang="en").get("/ui/promotions").text
    assert "<h1>Promotions</h1>" in html
    home = rule_block(html, "demo-home-200-30")
    assert "Home &amp; personal care: ¥30 off ¥200" in home
    assert "Categories: Household, Personal Care" in home and '<span class="tag good">On now</span>' in home
    assert "¥10 off every ¥100" in rule_block(html, "demo-snacks-100-10")
    assert "buy 2 get 1 free" in rule_block(html, "demo-cola-b2g1")
    assert "Members of tier: Gold" in rule_block(html, "demo-dairy-gold-2x")
    assert "Only with a coupon" in rule_block(html, "demo-welcome-coupon")


def test_figures_after_a_sale_that_uses_a_promotion(fresh_hub: Hub) -> None:
    tablet = ui_login(fresh_hub, "manager")
    before = tablet.get("/ui/promotions").text
    assert "还没有促销产生优惠。" in before
    assert '<span class="label">使用次数</span><span class="value">0</span>' in rule_block(before, "demo-cola-b2g1")
    till = fresh_hub.login("cashier")
    body = {"lines": [{"sku": "SKU00182", "qty": 3}]}
    quote = till.post("/api/v1/quote", json=body).json()
    assert quote["discount"] == 300 and quote["total"] == 600
    sale = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", **body,
                                            "tenders": [{"method": "cash", "amount": 600}]})
    assert sale.status_code == 201, sale.text
    html = tablet.get("/ui/promotions").text
    cola = rule_block(html, "demo-cola-b2g1")
    assert ('<span class="label">使用次数</span><span class="value">1</span>'
            '<span class="note">今日 1 · 近 7 天 1</span>') in cola
    assert ('<span class="label">优惠金额</span><span class="value">¥3.00</span>'
            '<span class="note">今日 ¥3.00 · 近 7 天 ¥3.00</span>') in cola
    assert '<span class="label">适用商品近 7 天净销售额</span><span class="value">¥6.00</span>' in cola
    assert '<svg class="chart shares"' in html and "<desc" in html and "可口可乐罐装买2赠1 ¥3.00" in html
    home = rule_block(html, "demo-home-200-30")
    assert '<span class="label">优惠金额</span><span class="value">¥0.00</span>' in home
    en = ui_login(fresh_hub, "manager", lang="en").get("/ui/promotions").text
    assert '<span class="label">Discount given</span><span class="value">CN¥3.00</span>' in rule_block(
        en, "demo-cola-b2g1")


def test_scheduled_and_ended_promotions_are_grouped(fresh_hub: Hub) -> None:
    api = fresh_hub.login("manager")
    now = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8)))
    for rule_id, start, end in (("later", now + datetime.timedelta(days=3), now + datetime.timedelta(days=10)),
                                ("gone", now - datetime.timedelta(days=10), now - datetime.timedelta(days=3))):
        resp = api.post("/api/v1/promotions", json={
            "rule_id": rule_id, "name": f"测试{rule_id}", "name_en": f"Test {rule_id}",
            "benefit": {"kind": "percent_off", "discount_bp": 1500}, "items": {"skus": ["SKU00182"]},
            "eligibility": {"starts_at": start.isoformat(), "ends_at": end.isoformat(), "weekdays": [6, 7],
                            "hours": [{"start": "17:00", "end": "21:00"}]}})
        assert resp.status_code == 201, resp.text
    html = ui_login(fresh_hub, "manager").get("/ui/promotions").text
    scheduled = html[html.index('id="promo-scheduled"'):html.index('id="promo-ended"')]
    assert "测试later" in scheduled and "8.5折" in scheduled and '<span class="tag warn">尚未开始</span>' in scheduled
    assert "每逢 周六、周日" in scheduled and "时段：17:00–21:00" in scheduled
    ended = html[html.index('id="promo-ended"'):]
    assert "测试gone" in ended and "已结束" in ended
    en = ui_login(fresh_hub, "manager", lang="en").get("/ui/promotions").text
    assert "15% off" in rule_block(en, "later") and "On Sat, Sun" in rule_block(en, "later")


def test_coupons_with_their_uses_for_managers(hub: Hub) -> None:
    html = ui_login(hub, "manager").get("/ui/promotions").text
    coupons = html[html.index('id="promo-coupons"'):]
    assert "WELCOME10" in coupons and "0 / 100,000" in coupons
    assert "VIP-M000001" in coupons and 'href="/ui/members/M000001"' in coupons and "所有人" in coupons


def test_cashier_and_guide_see_the_promotions_without_figures_or_coupons(hub: Hub) -> None:
    for user in ("cashier", "guide"):
        resp = ui_login(hub, user).get("/ui/promotions")
        assert resp.status_code == 200
        html = resp.text
        assert "日用个护满200减30" in html and "满200减30" in html
        assert "使用次数" not in html and "各促销优惠金额" not in html
        assert 'id="promo-coupons"' not in html and "WELCOME10" not in html
