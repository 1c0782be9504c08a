"""The tablet's Sync page on a hub paired with a real HQ (`backroom hq serve`): HQ's address and that it
answers, the outbox acknowledged up to its last seq after a push, the feed cursor moving when HQ changes
a price, the daily totals agreeing, a sale HQ quarantines (its sale id is already held for another store)
listed with HQ's reason, the member escrow as the hub's table holds it, and HQ going away.

Demo figures: SKU00027 enoki mushrooms 200g, 11 on hand in each store; member M000001 holds stored value,
handed to HQ at pairing, so a stored-value spend needs HQ's grant.
"""

from __future__ import annotations

import html as htmllib
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from sync_support import FAST, NO_POLICY, HqServer, SyncHub, sell, wait_until

from tests.ui_support import ui_login

PAGE = "/ui/sync"


def figure(page: str, element_id: str) -> tuple[str, str]:
    """A figure's value and its note, as shown."""
    found = re.search(rf'id="{element_id}"><span class="label">[^<]*</span><span class="value">([^<]*)</span>'
                      rf'(?:<span class="note">([^<]*)</span>)?', page)
    assert found, f"no figure {element_id}"
    return htmllib.unescape(found.group(1)), htmllib.unescape(found.group(2) or "")


def table(page: str, title_id: str) -> list[list[str]]:
    """The body rows of the table in the section headed by `title_id`."""
    section = page.split(f'aria-labelledby="{title_id}"', 1)[1].split("</section>", 1)[0]
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in section else ""
    return [[htmllib.unescape(c.strip()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def state(hub: SyncHub) -> dict[str, Any]:
    cols = ("acked_seq", "feed_cursor", "feed_head", "last_push_at", "last_pull_at", "last_digest_at")
    row = hub.query(f"SELECT {', '.join(cols)} FROM sync_state")[0]
    return dict(zip(cols, row, strict=True))


def head(hub: SyncHub) -> int:
    return int(hub.query("SELECT coalesce(max(seq), 0) FROM outbox")[0][0])


def synced(hub: SyncHub) -> bool:
    return bool(state(hub)["acked_seq"] == head(hub))


def yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def cash_sale(till: httpx.Client, sale_id: str) -> httpx.Response:
    body = {"sale_id": sale_id, "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}]}
    total = till.post("/api/v1/quote", json=body).json()["total"]
    return till.post("/api/v1/sales", json={**body, "tenders": [{"method": "cash", "amount": total}]})


def test_the_paired_view_matches_the_sync_tables_through_a_push_a_feed_change_a_quarantine_and_an_outage(
        tmp_path: Path) -> None:
    hq = HqServer(str(tmp_path / "hq.sqlite3"), tmp_path, escrow=NO_POLICY)  # the escrow table counted exactly
    a = SyncHub(tmp_path, hq.url, store="demo-001", **FAST)  # the store whose tablet we look at
    b = SyncHub(tmp_path, hq.url, store="demo-002", **FAST)  # takes a sale id first
    try:
        for proc in (hq, a, b):
            proc.start()
        wait_until(lambda: a.paired() and b.paired(), 15, what="both stores paired")
        till, admin = a.till(), hq.admin()

        # Three cash sales and a stored-value spend HQ grants; the agent pushes them all.
        for n in (1, 2, 3):
            assert sell(till, n).status_code == 201
        body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00027", "qty": 1}],
                "member_id": "M000001"}
        spend = till.post("/api/v1/quote", json=body).json()["total"]
        paid = till.post("/api/v1/sales", json={**body, "tenders": [{"method": "stored_value", "amount": spend}]})
        assert paid.status_code == 201, paid.text
        wait_until(lambda: synced(a), 10, what="the push")
        wait_until(lambda: (s := state(a))["last_digest_at"] and s["last_digest_at"] > s["last_push_at"], 10,
                   what="a digest check after the push")
        tablet = ui_login(a, "manager")
        page = tablet.get(PAGE)
        assert page.status_code == 200
        now = state(a)
        assert figure(page.text, "sync-state")[0] == "已与总部配对"
        assert figure(page.text, "sync-connection") == ("总部在线", hq.url)
        assert figure(page.text, "sync-queued") == ("0", "没有待上传的变更")
        acked, note = figure(page.text, "sync-acked")
        assert acked == str(now["acked_seq"]) == str(head(a)) and head(a) >= 4
        assert note.startswith(f"共 {head(a)} 条变更；最近上传 2")
        assert figure(page.text, "sync-digest")[0] == "一致"
        assert "正在追赶总部数据" not in page.text  # the cursor is at HQ's head
        assert "尚无未处理的告警。" in page.text

        # The escrow table is the hub's sync_escrow: HQ's grant for the spend, and what pairing handed over.
        sums = {(k, ledger): (n, amount) for k, ledger, n, amount in a.query(
            "SELECT kind, ledger, count(*), sum(amount) FROM sync_escrow GROUP BY kind, ledger")}
        assert sums[("grant", "value")] == (1, spend)
        assert table(page.text, "escrow-title") == [
            ["总部授权", "储值", "1", yuan(spend)],
            ["配对时移交总部", "积分", f"{sums[('pairing', 'points')][0]:,}", f"{sums[('pairing', 'points')][1]:,}"],
            ["配对时移交总部", "储值", f"{sums[('pairing', 'value')][0]:,}", yuan(sums[("pairing", "value")][1])]]

        # HQ changes a price: the feed cursor moves on and the page shows it with HQ's head.
        before = now["feed_cursor"]
        assert admin.put("/hq/v1/prices/SKU00001", json={"price": 1777}).status_code == 200
        wait_until(lambda: a.query("SELECT price FROM items WHERE sku = 'SKU00001'") == [(1777,)], 5,
                   what="HQ's price at the hub")
        now = state(a)
        assert now["feed_cursor"] == now["feed_head"] > before
        cursor, note = figure(tablet.get(PAGE).text, "sync-feed")
        assert cursor == f"{now['feed_cursor']:,}"
        assert note.startswith(f"已知总部最新：{now['feed_head']:,}；最近拉取 2")

        # demo-002 books a sale id first; the same id sold here is quarantined by HQ, with its reason.
        taken = str(uuid.uuid4())
        assert cash_sale(b.till(), taken).status_code == 201
        wait_until(lambda: synced(b), 10, what="demo-002's push")
        assert cash_sale(till, taken).status_code == 201  # the hub cannot know; it sells
        [(seq,)] = a.query("SELECT seq FROM outbox WHERE kind = 'sale' AND ref = ?", (taken,))
        wait_until(lambda: a.query("SELECT count(*) FROM sync_alerts WHERE kind = 'quarantined'") == [(1,)], 10,
                   what="the quarantine at the hub")
        wait_until(lambda: synced(a), 10, what="the quarantined row counted as received")
        page = tablet.get(PAGE)
        assert '<span class="tag bad">1 条被隔离</span>' in page.text
        alerts = table(page.text, "alerts-title")
        assert ["总部隔离了一条变更", str(seq), f"sale {taken} is already held at HQ"] in [r[1:] for r in alerts]
        assert figure(page.text, "sync-acked")[0] == str(seq) == str(head(a))  # received, though not applied
        assert figure(page.text, "sync-queued")[0] == "0"
        assert hq.query("SELECT seq, status FROM hq_deltas WHERE store_id = 'demo-001' AND status = 'quarantined'") \
            == [(seq, "quarantined")]
        english = ui_login(a, "manager", lang="en").get(PAGE).text
        assert figure(english, "sync-state")[0] == "Paired with HQ"
        assert '<span class="tag bad">1 quarantined</span>' in english and "HQ quarantined a change" in english

        # HQ goes away: the page says so, and a new sale waits in the queue.
        hq.stop()
        assert cash_sale(till, str(uuid.uuid4())).status_code == 201
        wait_until(lambda: figure(tablet.get(PAGE).text, "sync-connection")[0] == "总部无应答", 15,
                   what="the hub to notice HQ is gone")
        page = tablet.get(PAGE)
        assert figure(page.text, "sync-connection")[1] == f"正在自动重试，收银台照常销售。总部地址：{hq.url}"
        queued, note = figure(page.text, "sync-queued")
        assert queued == "1" == str(head(a) - state(a)["acked_seq"])
        assert note.startswith("最早一条产生于 2")
    finally:
        a.stop()
        b.stop()
        hq.stop()
