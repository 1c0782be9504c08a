"""The console against a real HQ and a real paired demo hub: a price set in the console is live at the hub
within 2 s and the console then shows the store has it; a promotion made in the console applies at the hub's
quote, and stopping it ends it there; a CSV import with a bad row applies nothing at the hub until fixed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sync_support import FAST, HqServer, SyncHub, wait_until

ENOKI = "6964985007482"  # SKU00027's barcode


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HqServer, SyncHub]]:
    root: Path = tmp_path_factory.mktemp("console-live")
    hq = HqServer(str(root / "hq.sqlite3"), root).start()
    hub = SyncHub(root, hq.url, **FAST)
    try:
        hub.start()
        wait_until(hub.paired, 30, what="the demo hub pairs")
        yield hq, hub  # type: ignore[misc]
    finally:
        hub.stop()
        hq.stop()


def console(hq: HqServer, user: str, password: str) -> tuple[httpx.Client, str]:
    r = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": user, "password": password}, timeout=10)
    client = httpx.Client(base_url=hq.url, timeout=30)
    client.cookies.set("backroom_hq_session", r.json()["token"], path="/hq")
    page = httpx.get(hq.url + "/hq/ui/catalog", cookies={"backroom_hq_session": r.json()["token"]}, timeout=30)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return client, found.group(1)


def lookup_price(hub: SyncHub, barcode: str) -> int:
    with hub.till() as till:
        return int(till.get("/api/v1/items/lookup", params={"barcode": barcode}).json()["price"])


def test_a_console_price_is_live_at_the_hub_within_2_s_and_the_console_shows_it_applied(
        chain: tuple[HqServer, SyncHub]) -> None:
    hq, hub = chain
    c, csrf = console(hq, "region-east", "region-demo")
    with c, hub.till() as till:
        assert till.get("/api/v1/items/lookup", params={"barcode": ENOKI}).json()["price"] == 290
        r = c.post("/hq/ui/catalog/items/SKU00027/price", data={"csrf": csrf, "price_yuan": "3.33",
                                                                "region": "华东 East"})
        assert r.status_code == 303
        wait_until(lambda: lookup_price(hub, ENOKI) == 333, 2, what="the console's price at the hub")
        seq = hq.query("SELECT feed_seq FROM hq_price_changes WHERE sku = 'SKU00027' AND store_id = 'demo-001'")[0][0]
        wait_until(lambda: hq.query("SELECT feed_cursor FROM hq_stores WHERE store_id = 'demo-001'")[0][0] >= seq, 25,
                   what="HQ records the hub's feed cursor past the change (written every 10 s)")
        page = c.get("/hq/ui/catalog/items/SKU00027").text
        history = page[page.index('id="item-history"'):]
        assert '<td>demo-001</td>\n      <td class="">—</td>' in history  # applied at demo-001, pending nowhere


def test_a_console_promotion_applies_at_the_hubs_quote_and_stopping_it_ends_it(
        chain: tuple[HqServer, SyncHub]) -> None:
    hq, hub = chain
    c, csrf = console(hq, "operator", "operator-demo")
    with c, hub.till() as till:
        price = lookup_price(hub, ENOKI)
        form = {"csrf": csrf, "kind": "buy_n_get_m", "rule_id": "live-enoki", "name": "金针菇买2赠1",
                "name_en": "Enoki: buy 2 get 1", "buy": "2", "get": "1", "skus": "SKU00027", "action": "create"}
        assert c.post("/hq/ui/promotions/new", data=form).status_code == 303

        def quoted() -> dict[str, object]:
            q = till.post("/api/v1/quote", json={"lines": [{"sku": "SKU00027", "qty": 3}]})
            return dict(q.json())

        q = wait_until(lambda: (x := quoted())["total"] == 2 * price and x, 5, what="the promotion at the hub")
        assert [a["rule_id"] for a in q["lines"][0]["applied"]] == ["live-enoki"]  # type: ignore[index]
        assert c.post("/hq/ui/promotions/live-enoki/stop", data={"csrf": csrf}).status_code == 303
        wait_until(lambda: quoted()["total"] == 3 * price, 5, what="the stopped promotion gone at the hub")


def test_a_csv_import_with_a_bad_row_applies_nothing_at_the_hub_until_fixed(chain: tuple[HqServer, SyncHub]) -> None:
    hq, hub = chain
    c, csrf = console(hq, "hq", "hq-demo")
    with c:
        sprouts = "6964985007758"  # SKU00028
        before = lookup_price(hub, sprouts)
        bad = c.post("/hq/ui/catalog/import", data={"csrf": csrf, "csv": "SKU00028,777\nSKU00029,12x\n"})
        page = c.get(bad.headers["location"])
        assert "价格有误" in page.text and '<td class="num">2</td>' in page.text
        assert c.post(bad.headers["location"] + "/run", data={"csrf": csrf}).status_code == 303
        assert hq.query("SELECT count(*) FROM hq_price_changes WHERE sku = 'SKU00028'")[0][0] == 0
        assert lookup_price(hub, sprouts) == before
        good = c.post("/hq/ui/catalog/import", data={"csrf": csrf, "csv": "SKU00028,777\nSKU00029,1200\n"})
        assert c.post(good.headers["location"] + "/run", data={"csrf": csrf}).status_code == 303
        wait_until(lambda: lookup_price(hub, sprouts) == 777, 10, what="the imported price at the hub")
