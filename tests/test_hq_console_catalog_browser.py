"""The console's catalog, promotion, report and transfer pages in Debian's Chromium (Playwright) with axe-core:
each page for each role that may open it, at the desktop and tablet sizes, without console errors or serious
axe findings; a CSV import with a bad row shows the row's error and applies nothing until the file is fixed,
then runs with its progress bar; a promotion form previews on a sample basket."""

from __future__ import annotations

from typing import Any

import pytest
from console_support import DESKTOP, TABLET, axe_problems, browser, desk, desk_login, hq_server
from sync_support import HqServer

__all__ = ["browser", "hq_server"]  # fixtures

PAGES = {
    "/hq/ui/catalog": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/catalog/items/SKU00027": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/catalog/import": {"hq", "region-east", "operator"},
    "/hq/ui/promotions": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/promotions/new?kind=buy_n_get_m": {"hq", "region-east", "operator"},
    "/hq/ui/reports?by=store": {"hq", "region-east", "operator", "finance", "auditor"},
    "/hq/ui/reports?by=hour": {"finance"},
    "/hq/ui/transfers": {"hq", "region-east", "operator", "auditor"},
}
USERS = ["hq", "region-east", "operator", "finance", "auditor"]


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["desktop", "tablet"])
@pytest.mark.parametrize("username", USERS)
def test_each_page_for_each_role_renders_without_errors_or_serious_axe_findings(
        hq_server: HqServer, browser: Any, username: str, viewport: dict[str, int]) -> None:
    found = desk(browser, hq_server.url, viewport)
    try:
        desk_login(found, username)
        problems: list[str] = []
        for path, roles in PAGES.items():
            if username not in roles:
                continue
            assert found.goto(path) == 200, path
            assert found.h1()
            problems += [f"{path}: {p}" for p in axe_problems(found.page)]
            width = found.page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], (path, width)  # no sideways scrolling of the page
        assert found.errors == [] and problems == [], found.errors + problems
    finally:
        found.close()


def test_a_csv_import_with_a_bad_row_shows_its_error_and_applies_nothing_until_fixed(
        hq_server: HqServer, browser: Any) -> None:
    found = desk(browser, hq_server.url)
    try:
        desk_login(found, "operator")
        assert found.goto("/hq/ui/catalog/import") == 200
        page = found.page
        page.fill("#imp-csv", "SKU00050,880\nSKU00051,990,demo-404\n")
        assert found.click_to(page.locator("form[action='/hq/ui/catalog/import'] button[type=submit]")) == 200
        errors = page.locator("#import-errors tbody tr")
        assert errors.count() == 1
        assert errors.first.locator("td").nth(0).inner_text() == "2"
        assert "未知门店或区域" in errors.first.inner_text()
        assert page.locator("form[action$='/run']").count() == 0  # nothing to apply
        assert hq_server.query("SELECT count(*) FROM hq_price_changes WHERE sku IN ('SKU00050', 'SKU00051')")[0][0] \
            == 0
        page.fill("#imp-csv", "SKU00050,880\nSKU00051,990,demo-002\n")
        assert found.click_to(page.locator("form[action='/hq/ui/catalog/import'] button[type=submit]")) == 200
        assert page.locator("#import-errors").count() == 0
        assert found.click_to(page.locator("form[action$='/run'] button")) == 200
        page.locator(".job-state", has_text="已完成").wait_for(timeout=10_000)
        assert sorted(hq_server.query("SELECT sku, store_id, price FROM hq_prices WHERE sku IN ('SKU00050', "
                                      "'SKU00051')")) == [("SKU00050", "*", 880), ("SKU00051", "demo-002", 990)]
        assert found.errors == [] and axe_problems(page) == []
    finally:
        found.close()


def test_a_promotion_form_previews_a_sample_basket_with_the_engines_explanation(
        hq_server: HqServer, browser: Any) -> None:
    found = desk(browser, hq_server.url, TABLET)
    try:
        desk_login(found, "region-east")
        assert found.goto("/hq/ui/promotions/new?kind=spend_get_off") == 200
        page = found.page
        page.fill("#p-rule-id", "east-veg-10-2")
        page.fill("#p-name", "蔬菜满10减2")
        page.fill("#p-name-en", "Veg: 2 off 10")
        page.fill("#p-threshold", "10")
        page.fill("#p-off", "2")
        page.fill("#p-categories", "fresh-veg")
        page.fill("#p-sample", "SKU00027,4")
        assert found.click_to(page.locator("button[value=preview]")) == 200
        result = page.locator("#preview-result")
        assert "蔬菜满10减2" in result.inner_text() and "demo-001" in result.inner_text()
        assert hq_server.query("SELECT count(*) FROM hq_promotions WHERE rule_id = 'east-veg-10-2'")[0][0] == 0
        assert found.click_to(page.locator("button[value=create]")) == 200
        assert page.url.endswith("/hq/ui/promotions/east-veg-10-2")
        assert found.errors == [] and axe_problems(page) == []
    finally:
        found.close()
