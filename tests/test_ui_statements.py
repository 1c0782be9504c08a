"""End of day → Payment statements on the tablet: a manager uploads a WeChat Pay bill in Chromium,
watches the import job finish, sees the differences and resolves one with a note; the page passes
axe-core. Without script (plain forms): a bad file fails the job and writes nothing; a cashier may
not open the page; English works.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from edge.payments import bills
from edge.payments.statements import StatementRow
from tests.conftest import Hub
from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, axe_problems, close, log_in, tablet, tap_to
from tests.ui_support import csrf_of, ui_login

BASE = "/ui/eod/statements"
TABLES = ("statement_imports", "statement_rows", "statement_anomalies", "journal")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make test` installs Debian's chromium package"
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def bill(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two WeChat sales at the till; their bill with one short payment and one payment of no sale."""
    till = hub.login("cashier")
    sales = []
    for n in (1, 2):
        body: dict[str, Any] = {
            "sale_id": str(uuid.uuid4()),
            "till_id": "T1",
            "lines": [{"sku": "SKU00011", "qty": 1}],
            "tenders": [{"method": "wechat", "amount": 990, "reference": f"42000200{n}"}],
        }
        resp = till.post("/api/v1/sales", json=body)
        assert resp.status_code == 201, resp.text
        sales.append(resp.json())
    rows = [
        StatementRow(
            row_no=1, kind="payment", transaction_id="420002001", amount=990, fee=6, time=sales[0]["created_at"]
        ),
        StatementRow(
            row_no=2, kind="payment", transaction_id="420002002", amount=900, fee=5, time=sales[1]["created_at"]
        ),
        StatementRow(
            row_no=3, kind="payment", transaction_id="420002999", amount=4321, fee=26, time=sales[1]["created_at"]
        ),
    ]
    path = tmp_path_factory.mktemp("bills") / "wechat-bill.csv"
    path.write_bytes(bills.wechat_bill(rows))
    return path


def test_a_manager_imports_a_bill_and_resolves_a_difference(browser: Browser, hub: Hub, bill: Path) -> None:
    found = tablet(browser)
    page = found.page
    try:
        log_in(found, hub, "manager")
        assert found.goto("/ui/eod", hub.base_url) == 200
        assert tap_to(page, page.get_by_role("link", name="支付对账单")) == 200
        assert found.h1() == "支付对账单"
        page.select_option("#stm-provider", "wechat")
        page.set_input_files("#stm-file", str(bill))
        assert tap_to(page, page.get_by_role("button", name="导入账单文件")) == 200
        assert "/ui/jobs/" in page.url
        page.locator(".job-state").filter(has_text="已读取").wait_for()
        assert "已读取 3 行：匹配 1 行，差异 2 条。" in page.locator(".job-state").inner_text()
        assert tap_to(page, page.get_by_role("link", name="返回")) == 200
        table = page.locator("table[aria-labelledby='stm-anomalies'] tbody tr")
        assert table.count() == 2
        assert sorted(table.nth(i).locator("td").first.inner_text() for i in range(2)) == ["已收款无销售", "金额不符"]
        assert axe_problems(page) == []
        row = table.filter(has_text="已收款无销售")
        row.locator("input[name=note]").fill("顾客误付，已原路退回")
        assert tap_to(page, row.get_by_role("button", name="标记已处理")) == 200
        assert page.locator(".flash.notice").inner_text() == "差异已处理，备注已记入日志。"
        assert page.locator("table[aria-labelledby='stm-anomalies'] tbody tr").count() == 1
        assert hub.query(
            "SELECT kind, note, resolved_by IS NOT NULL FROM statement_anomalies WHERE resolved_at IS NOT NULL"
        ) == [("paid_no_sale", "顾客误付，已原路退回", 1)]
        assert hub.query("SELECT count(*) FROM journal WHERE kind = 'statement_resolution'") == [(1,)]
        assert found.errors == []
    finally:
        close(found)


def _wait_job(client: httpx.Client, location: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = client.get(location).text
        state = re.search(r'class="job-state"[^>]*>(.*?)</span>', text, re.S)
        assert state, text
        if "%" not in state.group(1):
            return state.group(1).strip()
        time.sleep(0.2)
    raise AssertionError("the import job did not finish")


def test_without_script_a_bad_file_fails_the_job_and_writes_nothing(hub: Hub, bill: Path) -> None:
    client = ui_login(hub, "manager", lang="en")
    page = client.get(BASE)
    assert page.status_code == 200
    assert "<h1>Payment statements</h1>" in page.text
    before = hub.counts(TABLES)
    resp = client.post(
        BASE,
        data={"csrf": csrf_of(page.text), "provider": "alipay"},
        files={"file": ("bill.csv", bill.read_bytes(), "text/csv")},  # a WeChat bill named as Alipay's
    )
    assert resp.status_code == 303 and "/ui/jobs/" in resp.headers["location"]
    outcome = _wait_job(client, resp.headers["location"])
    assert outcome.startswith("Failed: Nothing was imported: not an Alipay business detail"), outcome
    assert hub.counts(TABLES) == before
    missing = client.post(BASE, data={"csrf": csrf_of(page.text), "provider": "wechat"})
    assert missing.status_code == 303
    assert "Choose the bill" in client.get(BASE).text


def test_a_cashier_may_not_open_the_statements(hub: Hub) -> None:
    client = ui_login(hub, "cashier")
    assert client.get(BASE).status_code == 403
    assert "支付对账单" not in client.get("/ui/eod").text
