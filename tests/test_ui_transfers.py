"""Transfers between stores (调拨) at the tablet, end to end: two paired hubs and a real HQ. The receiving
store's manager requests goods through the form, HQ routes the request to the sender, whose manager ships
it short through the tablet; the receiver's manager receives it with one unit missing. Stock on both
sides, the states each tablet shows, and what a cashier may not do are checked on the way.

Demo figures: SKU00027 enoki mushrooms 200g (金针菇 200g, EAN 6964985007482), 11 on hand in each store.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sync_support import FAST, HqServer, SyncHub, wait_until

from tests.ui_support import csrf_of, post_form, ui_login

PAGE = "/ui/stock/transfers"


def on_hand(hub: SyncHub, sku: str) -> int:
    return int(hub.query("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ?", (sku,))[0][0])


def state_at(hub: SyncHub, tid: str) -> str | None:
    rows = hub.query("SELECT state FROM transfers WHERE transfer_id = ?", (tid,))
    return str(rows[0][0]) if rows else None


def notice(tablet: httpx.Client, resp: httpx.Response) -> str:
    """The flash text the page shows after a form's redirect."""
    assert resp.status_code == 303, resp.text
    found = re.search(r'<p class="flash (notice|error)"[^>]*>(.*?)</p>', tablet.get(resp.headers["location"]).text,
                      re.S)
    assert found, "the page shows no notice"
    return f"{found.group(1)}: {found.group(2)}"


def only_transfer(html: str) -> str:
    """The <article> of the one transfer the Transfers page lists."""
    found = [a.split("</article>")[0] for a in html.split('<article class="transfer">')[1:]]
    assert len(found) == 1, f"{len(found)} transfers listed"
    return found[0]


def figures(article: str) -> list[str]:
    """The line's requested, shipped, in-transit and received figures, as shown."""
    return [c.strip() for c in re.findall(r'<td class="num">([^<]*)', article)]


def tags(article: str) -> list[str]:
    """The state tags in a transfer's heading (the lines table repeats the state names as column heads)."""
    heading = article.split("</h3>")[0]
    return re.findall(r'<span class="tag [a-z]+">([^<]*)</span>', heading)


def test_request_ship_short_and_receive_short_through_both_tablets(tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path).start()
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST).start()  # the sender
    b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST).start()  # asks demo-001 for stock
    try:
        wait_until(lambda: a.paired() and b.paired(), 15, what="both stores paired")
        sender, receiver = ui_login(a, "manager"), ui_login(b, "manager")
        cashier_a, cashier_b = ui_login(a, "cashier"), ui_login(b, "cashier")
        assert (on_hand(a, "SKU00027"), on_hand(b, "SKU00027")) == (11, 11)

        # demo-002's manager asks for 10 by scanning the barcode.
        page = receiver.get(PAGE).text
        drawn = re.search(r'name="transfer_id" value="([0-9a-f-]{36})"', page)
        assert drawn, "the request form has no transfer_id"
        tid = drawn.group(1)
        form = {"transfer_id": tid, "from_store": "demo-001", "item": "6964985007482", "qty": "10",
                "note": "周末促销"}
        asked = post_form(receiver, PAGE, PAGE, form)
        assert notice(receiver, asked) == "notice: 已向 demo-001 申请调拨，由总部转达。"
        again = post_form(receiver, PAGE, PAGE, form)  # a re-sent form books once
        assert notice(receiver, again) == "notice: 已向 demo-001 申请调拨，由总部转达。"
        assert b.query("SELECT from_store, to_store, state FROM transfers") == [("demo-001", "demo-002", "requested")]
        mine = only_transfer(receiver.get(PAGE).text)
        assert "调入：来自 demo-001" in mine and tags(mine) == ["已申请"] and "等待 demo-001 发货。" in mine
        assert 'action="/ui/stock/transfers/' not in mine  # nothing to do here until it is shipped

        # HQ routes the request to demo-001, whose tablet offers the Ship form filled with what was asked.
        wait_until(lambda: state_at(a, tid) == "requested", 15, what="the request at the sender")
        out = only_transfer(sender.get(PAGE).text)
        assert "调出：发往 demo-002" in out and tags(out) == ["已申请"] and "周末促销" in out and "金针菇 200g" in out
        assert f'action="/ui/stock/transfers/{tid}/ship"' in out and ">发货</button>" in out
        assert re.search(r'name="qty-SKU00027"[^>]*value="10"', out)

        # A cashier sees the transfer but no Ship button, and a forged post is refused.
        seen = cashier_a.get(PAGE)
        assert seen.status_code == 200 and "调出：发往 demo-002" in seen.text
        assert "/ship" not in seen.text and "申请调拨</button>" not in seen.text
        forged = cashier_a.post(f"{PAGE}/{tid}/ship", data={"csrf": csrf_of(seen.text), "qty-SKU00027": "8"})
        assert forged.status_code == 403 and "text/html" in forged.headers["content-type"]

        # A bad quantity books nothing; then the manager ships 8 of the 10.
        bad = post_form(sender, PAGE, f"{PAGE}/{tid}/ship", {"qty-SKU00027": "8.5"})
        assert notice(sender, bad) == "error: SKU00027 的数量不是 0 到 10,000,000 之间的整数。本次未记账。"
        assert (state_at(a, tid), on_hand(a, "SKU00027")) == ("requested", 11)
        shipped = post_form(sender, PAGE, f"{PAGE}/{tid}/ship", {"qty-SKU00027": "8"})
        assert notice(sender, shipped) == f"notice: 调拨单 {tid[:8]} 已发货，现为在途。"
        assert (state_at(a, tid), on_hand(a, "SKU00027")) == ("in_transit", 3)
        other = post_form(sender, PAGE, f"{PAGE}/{tid}/ship", {"qty-SKU00027": "7"})  # a stale second tab
        assert notice(sender, other).startswith("error: ") and on_hand(a, "SKU00027") == 3
        out = only_transfer(sender.get(PAGE).text)
        assert tags(out) == ["在途"] and "等待 demo-002 收货。" in out and "/ship" not in out

        # In transit at demo-002: the Receive form holds what was shipped; stock waits for the receipt.
        wait_until(lambda: state_at(b, tid) == "in_transit", 15, what="the shipment at the receiver")
        incoming = only_transfer(receiver.get(PAGE).text)
        assert tags(incoming) == ["在途"] and f'action="/ui/stock/transfers/{tid}/receive"' in incoming
        assert re.search(r'name="qty-SKU00027"[^>]*value="8"', incoming) and ">收货</button>" in incoming
        assert figures(incoming) == ["10", "8", "8", "—"] and on_hand(b, "SKU00027") == 11
        seen = cashier_b.get(PAGE)
        assert tags(only_transfer(seen.text)) == ["在途"] and "/receive" not in seen.text
        forged = cashier_b.post(f"{PAGE}/{tid}/receive", data={"csrf": csrf_of(seen.text), "qty-SKU00027": "8"})
        assert forged.status_code == 403 and on_hand(b, "SKU00027") == 11

        # The receiver counts 7: one missing.
        got = post_form(receiver, PAGE, f"{PAGE}/{tid}/receive", {"qty-SKU00027": "7"})
        assert notice(receiver, got) == f"notice: 调拨单 {tid[:8]} 已收货入库。"
        assert (state_at(b, tid), on_hand(b, "SKU00027")) == ("received", 18)
        html = receiver.get(PAGE).text
        done = only_transfer(html)
        assert "没有进行中的调拨。" in html
        assert tags(done) == ["已收货", "收货有差异"] and figures(done) == ["10", "8", "0", "7"]
        assert "短少 1" in done and "/receive" not in done

        # The receipt comes back to the sender through HQ; its stock is not touched again.
        wait_until(lambda: state_at(a, tid) == "received", 15, what="the receipt back at the sender")
        html = sender.get(PAGE).text
        back = only_transfer(html)
        assert "没有进行中的调拨。" in html
        assert "调出：发往 demo-002" in back and tags(back) == ["已收货", "收货有差异"] and "短少 1" in back
        assert (on_hand(a, "SKU00027"), on_hand(b, "SKU00027")) == (3, 18)
        assert a.query("SELECT kind, sum(qty) FROM stock_movements WHERE ref = ? GROUP BY kind", (tid,)) == [
            ("transfer_out", -8)]
        assert b.query("SELECT kind, sum(qty) FROM stock_movements WHERE ref = ? GROUP BY kind", (tid,)) == [
            ("transfer_in", 7)]
        en = ui_login(a, "manager", lang="en").get(PAGE).text
        assert "Transfer out to demo-002" in en and "Difference on receipt" in en and "1 missing" in en
    finally:
        a.stop()
        b.stop()
        hq.stop()
