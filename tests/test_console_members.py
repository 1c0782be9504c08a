"""The console's Members page over plain HTTP (forms and cookies, as a browser without script), against a
real HQ and two real demo hubs paired to it: masking per role and the record of unmasked views, manual
adjustments (booked once, audited, refused beyond what no store holds until the stores give it back),
tier and tags down the feed, region scope of per-store detail and of changes, and bad input."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sync_support import FAST, HqServer, SyncHub, sell, wait_until

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
_ADJ = re.compile(r'name="adjustment_id" value="([^"]+)"')
PASSWORDS = {"hq": "hq-demo", "region-east": "region-demo", "operator": "operator-demo", "finance": "finance-demo",
             "auditor": "auditor-demo"}


class Chain:
    def __init__(self, hq: HqServer, a: SyncHub, b: SyncHub) -> None:
        self.hq, self.a, self.b = hq, a, b


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("console-members")
    hq = HqServer(str(root / "hq.sqlite3"), root)
    # escrow only on demand (docs/sync.md "Escrow policy"): the tests decide which store holds what
    hq.env.update(BACKROOM_HQ_ESCROW_HOME_SHARE_PCT="0", BACKROOM_HQ_ESCROW_SHOP_SHARE_PCT="0")
    hq.start()
    a = SyncHub(root, hq.url, "demo-001", **FAST)
    b = SyncHub(root, hq.url, "demo-002", **FAST)
    try:
        a.start()
        b.start()
        wait_until(lambda: a.paired() and b.paired(), 30, what="both demo stores paired")
        yield Chain(hq, a, b)
    finally:
        for proc in (b, a, hq):
            proc.stop()


def login(hq: HqServer, username: str) -> httpx.Client:
    """A console session from the login form."""
    client = httpx.Client(base_url=hq.url, timeout=30, follow_redirects=False)
    form = client.get("/hq/ui/login")
    nonce = _NONCE.search(form.text)
    assert nonce, form.text
    done = client.post("/hq/ui/login", data={"nonce": nonce.group(1), "next": "/hq/ui/members", "username": username,
                                              "password": PASSWORDS[username]})
    assert done.status_code == 303, done.text
    return client


def flash(response: httpx.Response) -> str:
    """The notice or error a redirect carries to the next page."""
    raw = response.cookies.get("backroom_hq_flash")
    if not raw:
        return ""
    import base64

    padded = raw + "=" * (-len(raw) % 4)
    return str(json.loads(base64.urlsafe_b64decode(padded))["text"])


def post_page_form(client: httpx.Client, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
    html = client.get(page)
    assert html.status_code == 200, html.text
    csrf = _CSRF.search(html.text)
    assert csrf, "no form with a CSRF token on " + page
    return client.post(action, data={"csrf": csrf.group(1), **data})


def adjust(client: httpx.Client, member_id: str, **fields: str) -> httpx.Response:
    page = f"/hq/ui/members/{member_id}"
    html = client.get(page)
    assert html.status_code == 200, html.text
    adj = _ADJ.search(html.text)
    assert adj, "no adjustment form for this reader"
    csrf = _CSRF.search(html.text)
    assert csrf
    return client.post(page + "/adjust", data={"csrf": csrf.group(1), "adjustment_id": adj.group(1), **fields})


def balances(hq: HqServer, member_id: str) -> tuple[int, int]:
    row = hq.query("SELECT balance, points FROM hq_members WHERE member_id = ?", (member_id,))[0]
    return int(row[0]), int(row[1])


def ledger_sums(hq: HqServer, member_id: str) -> tuple[int, int]:
    sums = dict(hq.query("SELECT ledger, sum(delta) FROM hq_member_ledger WHERE member_id = ? GROUP BY ledger",
                         (member_id,)))
    return int(sums.get("value", 0)), int(sums.get("points", 0))


def held(hq: HqServer, member_id: str, store_id: str | None = None) -> int:
    sql = "SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = 'value'"
    args: tuple[Any, ...] = (member_id,)
    if store_id:
        sql, args = sql + " AND store_id = ?", (member_id, store_id)
    return int(hq.query(sql, args)[0][0])


def cells(html: str) -> list[str]:
    return re.findall(r"<td>([^<]*)</td>", html)


# -- masking --------------------------------------------------------------------------------------------------

def test_search_and_member_page_mask_phones_for_roles_that_do_not_need_them(chain: Chain) -> None:
    before = chain.hq.query("SELECT count(*) FROM hq_pii_views")[0][0]
    for username in ("finance", "operator", "auditor"):
        client = login(chain.hq, username)
        found = client.get("/hq/ui/members", params={"q": "8000"})
        assert found.status_code == 200
        assert "138****8000" in cells(found.text) and "13800138000" not in cells(found.text)
        page = client.get("/hq/ui/members/M000001")
        assert page.status_code == 200
        assert "13800138000" not in page.text and "8800000001" not in page.text and "1971-05-09" not in page.text
        assert 'action="/hq/ui/members/M000001/adjust"' not in page.text  # no members.write
    assert chain.hq.query("SELECT count(*) FROM hq_pii_views")[0][0] == before  # nothing unmasked was shown
    for username in ("hq", "region-east"):
        client = login(chain.hq, username)
        found = client.get("/hq/ui/members", params={"q": "13800138000"})
        assert "13800138000" in cells(found.text) and "董颖" in found.text
        page = client.get("/hq/ui/members/M000001")
        assert "13800138000" in page.text and "1971-05-09" in page.text
    views = chain.hq.query("SELECT username, member_id, via FROM hq_pii_views WHERE view_id > ? ORDER BY view_id",
                           (before,))
    assert views == [("hq", "M000001", "console search"), ("hq", "M000001", "console member"),
                     ("region-east", "M000001", "console search"), ("region-east", "M000001", "console member")]


def test_search_finds_by_card_name_and_last_four_digits(chain: Chain) -> None:
    client = login(chain.hq, "hq")
    assert "M000001" in client.get("/hq/ui/members", params={"q": "8800000001"}).text
    assert "M000001" in client.get("/hq/ui/members", params={"q": "董颖"}).text
    assert "M000001" in client.get("/hq/ui/members", params={"q": "m000001"}).text
    nothing = client.get("/hq/ui/members", params={"q": "19999999999"})
    assert nothing.status_code == 200 and "M0000" not in nothing.text


# -- adjustments ------------------------------------------------------------------------------------------------

def test_an_adjustment_is_booked_once_as_a_ledger_entry_and_audited(chain: Chain) -> None:
    member = "M000003"
    client = login(chain.hq, "hq")
    value0, points0 = balances(chain.hq, member)
    audits0 = chain.hq.query("SELECT count(*) FROM hq_audit WHERE action = 'member.adjust'")[0][0]
    page = client.get(f"/hq/ui/members/{member}")
    adj_id, csrf = _ADJ.search(page.text).group(1), _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    form = {"csrf": csrf, "adjustment_id": adj_id, "ledger": "value", "direction": "add", "amount": "12.34",
            "reason": "补偿 goodwill"}
    first = client.post(f"/hq/ui/members/{member}/adjust", data=form)
    again = client.post(f"/hq/ui/members/{member}/adjust", data=form)  # the form sent twice
    assert first.status_code == again.status_code == 303
    assert flash(first) == "已记入调整。" or flash(first) == "Adjustment booked."
    assert balances(chain.hq, member) == (value0 + 1234, points0)
    assert ledger_sums(chain.hq, member) == balances(chain.hq, member)
    assert chain.hq.query("SELECT delta, kind, store_id, ref FROM hq_member_ledger WHERE member_id = ? "
                          "AND kind = 'adjust'", (member,)) == [(1234, "adjust", None, adj_id)]
    rows = chain.hq.query("SELECT actor, role, target, before_json, after_json FROM hq_audit "
                          "WHERE action = 'member.adjust' ORDER BY audit_id")
    assert len(rows) == audits0 + 1
    actor, role, target, before, after = rows[-1]
    assert (actor, role, target) == ("hq", "hq_admin", f"member:{member}")
    assert json.loads(before)["balance"] == value0
    assert json.loads(after) | {} == {"adjustment_id": adj_id, "balance": value0 + 1234, "delta": 1234,
                                      "ledger": "value", "points": points0, "reason": "补偿 goodwill"}
    shown = client.get(f"/hq/ui/members/{member}").text
    assert "补偿 goodwill" in shown

    points = adjust(client, member, ledger="points", direction="deduct", amount="7", reason="typo at till")
    assert points.status_code == 303
    assert balances(chain.hq, member) == (value0 + 1234, points0 - 7)
    assert ledger_sums(chain.hq, member) == balances(chain.hq, member)


@pytest.mark.parametrize("fields", [
    {"ledger": "value", "direction": "add", "amount": "12.345", "reason": "x"},
    {"ledger": "value", "direction": "add", "amount": "1e9", "reason": "x"},
    {"ledger": "value", "direction": "add", "amount": "-5", "reason": "x"},
    {"ledger": "value", "direction": "add", "amount": "0", "reason": "x"},
    {"ledger": "points", "direction": "add", "amount": "1" * 30, "reason": "x"},
    {"ledger": "value", "direction": "add", "amount": "999999999", "reason": "x"},
    {"ledger": "value", "direction": "sideways", "amount": "1", "reason": "x"},
    {"ledger": "gold", "direction": "add", "amount": "1", "reason": "x"},
    {"ledger": "value", "direction": "add", "amount": "1", "reason": "   "},
    {"ledger": "value", "direction": "add", "amount": "1", "reason": "r" * 300},
    {"ledger": "value", "direction": "deduct", "amount": "99999", "reason": "more than the member has"},
])
def test_bad_adjustments_are_refused_with_a_message_and_write_nothing(chain: Chain, fields: dict[str, str]) -> None:
    member = "M000004"
    client = login(chain.hq, "hq")
    before = (balances(chain.hq, member), chain.hq.query("SELECT count(*) FROM hq_audit")[0][0],
              chain.hq.query("SELECT count(*) FROM hq_member_ledger WHERE member_id = ?", (member,))[0][0])
    answer = adjust(client, member, **fields)
    assert answer.status_code == 303 and answer.headers["location"] == f"/hq/ui/members/{member}"
    assert flash(answer)  # the reason it was refused, shown on the page
    assert (balances(chain.hq, member), chain.hq.query("SELECT count(*) FROM hq_audit")[0][0],
            chain.hq.query("SELECT count(*) FROM hq_member_ledger WHERE member_id = ?", (member,))[0][0]) == before


def test_adjustments_need_the_role_and_a_csrf_token(chain: Chain) -> None:
    member = "M000005"
    before = balances(chain.hq, member)
    form = {"adjustment_id": str(uuid.uuid4()), "ledger": "value", "direction": "add", "amount": "10", "reason": "x"}
    for username in ("finance", "auditor", "operator"):
        client = login(chain.hq, username)
        page = client.get(f"/hq/ui/members/{member}")
        csrf = _CSRF.search(page.text)
        assert csrf  # the log-out form's token: a forged form with a valid token is still refused
        refused = client.post(f"/hq/ui/members/{member}/adjust", data={"csrf": csrf.group(1), **form})
        assert refused.status_code == 403
        assert client.post(f"/hq/ui/members/{member}/profile", data={"csrf": csrf.group(1), "tier": "gold",
                                                                      "tags": ""}).status_code == 403
    stale = login(chain.hq, "hq").post(f"/hq/ui/members/{member}/adjust", data={"csrf": "forged", **form})
    assert stale.status_code == 400
    assert balances(chain.hq, member) == before
    assert chain.hq.query("SELECT count(*) FROM hq_member_adjustments WHERE member_id = ?", (member,)) == [(0,)]


def test_a_deduction_takes_only_what_no_store_holds_until_the_stores_give_it_back(chain: Chain) -> None:
    """balance ≥ Σ escrow ≥ 0 holds: a deduction beyond the unallocated part is refused and offers the
    reclaim; once the store has released its escrow (a real hub answering HQ's reclaim), it goes through."""
    member = "M000001"
    admin = chain.hq.admin()
    balance, _ = balances(chain.hq, member)
    grant = admin.post(f"/hq/v1/members/{member}/escrow", json={"store_id": "demo-001", "amount": balance - 1000})
    assert grant.status_code == 201, grant.text
    wait_until(lambda: held(chain.hq, member, "demo-001") >= balance - 1000, 10, what="the grant at HQ")
    client = login(chain.hq, "hq")
    unallocated = balance - held(chain.hq, member)
    refused = adjust(client, member, ledger="value", direction="deduct", amount=f"{(unallocated + 1) / 100:.2f}",
                     reason="closing the card")
    assert refused.status_code == 303
    assert f"{unallocated / 100:.2f}" in flash(refused)
    assert balances(chain.hq, member)[0] == balance
    page = client.get(f"/hq/ui/members/{member}")
    assert 'action="/hq/ui/members/M000001/reclaim"' in page.text
    asked = post_page_form(client, f"/hq/ui/members/{member}", f"/hq/ui/members/{member}/reclaim", {"ledger": "value"})
    assert asked.status_code == 303
    wait_until(lambda: held(chain.hq, member) == 0, 15, what="the stores giving the escrow back")
    done = adjust(client, member, ledger="value", direction="deduct", amount=f"{(unallocated + 1) / 100:.2f}",
                  reason="closing the card")
    assert done.status_code == 303
    after = balances(chain.hq, member)
    assert after[0] == balance - unallocated - 1
    assert after == ledger_sums(chain.hq, member)
    assert after[0] >= held(chain.hq, member) >= 0


def test_tier_and_tags_are_audited_and_reach_the_stores(chain: Chain) -> None:
    member = "M000006"
    client = login(chain.hq, "hq")
    saved = post_page_form(client, f"/hq/ui/members/{member}", f"/hq/ui/members/{member}/profile",
                           {"tier": "gold", "tags": "vip, 团购，wholesale"})
    assert saved.status_code == 303
    assert chain.hq.query("SELECT tier, tags FROM hq_members WHERE member_id = ?", (member,)) == \
        [("gold", json.dumps(["vip", "wholesale", "团购"], ensure_ascii=False, separators=(",", ":")))]
    audit = chain.hq.query("SELECT after_json FROM hq_audit WHERE action = 'member.edit' AND target = ?",
                           (f"member:{member}",))
    assert json.loads(audit[-1][0]) == {"tags": ["vip", "wholesale", "团购"], "tier": "gold"}
    for hub in (chain.a, chain.b):
        wait_until(lambda hub=hub: hub.query("SELECT tier FROM members WHERE member_id = ?", (member,)) == [("gold",)],
                   10, what=f"the tier at {hub.data_dir.name}")
    bad = post_page_form(client, f"/hq/ui/members/{member}", f"/hq/ui/members/{member}/profile",
                         {"tier": "diamond", "tags": ""})
    assert bad.status_code == 303 and flash(bad)
    assert chain.hq.query("SELECT tier FROM hq_members WHERE member_id = ?", (member,)) == [("gold",)]


# -- region scope -----------------------------------------------------------------------------------------------

def test_a_region_manager_sees_and_changes_per_store_detail_only_in_his_stores(chain: Chain) -> None:
    member = "M000002"
    sale = sell(chain.b.till(), 2, member_id=member)  # a purchase at demo-002 (华北 North)
    assert sale.status_code == 201, sale.text
    receipt = sale.json()["receipt_no"]
    wait_until(lambda: chain.hq.query("SELECT 1 FROM hq_sales WHERE receipt_no = ?", (receipt,)), 15,
               what="the sale at HQ")
    admin = chain.hq.admin()
    admin.post(f"/hq/v1/members/{member}/escrow", json={"store_id": "demo-002", "amount": 1, "ledger": "points"})
    north = chain.b.till().post("/api/v1/members", json={"phone": "13911112222", "name": "北方会员"})
    assert north.status_code == 201, north.text
    north_id = north.json()["member_id"]
    wait_until(lambda: chain.hq.query("SELECT home_store FROM hq_members WHERE member_id = ?", (north_id,)), 15,
               what="the demo-002 sign-up at HQ")

    hq_page = login(chain.hq, "hq").get(f"/hq/ui/members/{member}").text
    assert receipt in hq_page and "demo-002" in hq_page
    region = login(chain.hq, "region-east")
    page = region.get(f"/hq/ui/members/{member}")
    assert page.status_code == 200
    assert receipt not in page.text and "demo-002" not in page.text and "演示二店" not in page.text
    assert "Stores outside your regions" in page.text or "辖区外的门店" in page.text
    # he finds the member of another region (members are chain-wide) but may not change him
    other = region.get(f"/hq/ui/members/{north_id}")
    assert other.status_code == 200 and f'action="/hq/ui/members/{north_id}/adjust"' not in other.text
    before = balances(chain.hq, north_id)
    audits = chain.hq.query("SELECT count(*) FROM hq_audit")[0][0]
    csrf = _CSRF.search(other.text).group(1)  # type: ignore[union-attr]
    forged = region.post(f"/hq/ui/members/{north_id}/adjust",
                         data={"csrf": csrf, "adjustment_id": str(uuid.uuid4()), "ledger": "value",
                               "direction": "add", "amount": "50", "reason": "forged"})
    assert forged.status_code == 403
    forged_tier = region.post(f"/hq/ui/members/{north_id}/profile", data={"csrf": csrf, "tier": "gold", "tags": ""})
    assert forged_tier.status_code == 403
    assert balances(chain.hq, north_id) == before
    assert chain.hq.query("SELECT tier FROM hq_members WHERE member_id = ?", (north_id,)) == [("regular",)]
    assert chain.hq.query("SELECT count(*) FROM hq_audit")[0][0] == audits
    # his own region's member he may adjust
    assert adjust(region, "M000007", ledger="points", direction="add", amount="5", reason="east promo").status_code \
        == 303
    assert chain.hq.query("SELECT actor FROM hq_member_adjustments WHERE member_id = 'M000007'") == [("region-east",)]


# -- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/hq/ui/members?q=" + "9" * 65,
    "/hq/ui/members?q=%25%25%25",
    "/hq/ui/members?q=_",
    "/hq/ui/members?q=" + "1" * 30,
    "/hq/ui/members/NOPE",
    "/hq/ui/members/" + "M" * 300,
    "/hq/ui/members/%00",
])
def test_bad_queries_get_a_page_not_a_5xx(chain: Chain, path: str) -> None:
    answer = login(chain.hq, "hq").get(path)
    assert answer.status_code < 500, answer.text
    assert "<h1>" in answer.text


def test_the_console_members_page_needs_a_login(chain: Chain, tmp_path: Path) -> None:
    anonymous = httpx.get(chain.hq.url + "/hq/ui/members/M000001", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/hq/ui/login")
    assert httpx.post(chain.hq.url + "/hq/ui/members/M000001/adjust", data={"amount": "1"}).status_code in (303, 401)


# -- merge ---------------------------------------------------------------------------------------------------------

def test_merging_a_duplicate_by_hand_combines_the_two_members(chain: Chain) -> None:
    """With the chain's merge service (service/merges.py) the page merges; without it the page offers no
    merge and a forged one writes nothing."""
    from hq_sync.server.service.member_desk import merge_service

    winner, loser = "M000008", "M000009"
    client = login(chain.hq, "hq")
    page = client.get(f"/hq/ui/members/{winner}").text
    before = [balances(chain.hq, winner), balances(chain.hq, loser)]
    unconfirmed = post_page_form(client, f"/hq/ui/members/{winner}", f"/hq/ui/members/{winner}/merge",
                                 {"loser": loser})
    assert unconfirmed.status_code == 303 and flash(unconfirmed)
    assert [balances(chain.hq, winner), balances(chain.hq, loser)] == before
    answer = post_page_form(client, f"/hq/ui/members/{winner}", f"/hq/ui/members/{winner}/merge",
                            {"loser": loser, "confirm": "yes"})
    assert answer.status_code == 303
    if merge_service() is None:
        assert f'action="/hq/ui/members/{winner}/merge"' not in page
        assert [balances(chain.hq, winner), balances(chain.hq, loser)] == before
        return
    assert f'action="/hq/ui/members/{winner}/merge"' in page
    combined = (before[0][0] + before[1][0], before[0][1] + before[1][1])
    assert balances(chain.hq, winner) == combined
    assert balances(chain.hq, loser) == (0, 0)
    assert chain.hq.query("SELECT count(*) FROM hq_audit WHERE action = 'member.merge'")[0][0] >= 1


# -- the same over the API ------------------------------------------------------------------------------------------

def api_as(hq: HqServer, username: str) -> httpx.Client:
    token = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": username, "password": PASSWORDS[username]},
                       timeout=10).json()["token"]
    return httpx.Client(base_url=hq.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_the_api_masks_scopes_and_books_adjustments_as_the_page_does(chain: Chain) -> None:
    found = api_as(chain.hq, "finance").get("/hq/v1/members", params={"q": "13800138000"}).json()["members"]
    assert [(m["member_id"], m["phone"], m["masked"]) for m in found] == [("M000001", "138****8000", True)]
    full = api_as(chain.hq, "hq").get("/hq/v1/members", params={"q": "13800138000"}).json()["members"]
    assert full[0]["phone"] == "13800138000"
    assert chain.hq.query("SELECT via FROM hq_pii_views ORDER BY view_id DESC LIMIT 1") == [("api search",)]
    overview = api_as(chain.hq, "region-east").get("/hq/v1/members/M000001/overview")
    assert overview.status_code == 200 and "demo-002" not in overview.json()["escrow"]

    admin = api_as(chain.hq, "hq")
    member = "M000010"
    value0, points0 = balances(chain.hq, member)
    body = {"adjustment_id": str(uuid.uuid4()), "ledger": "points", "delta": 25, "reason": "api goodwill"}
    first = admin.post(f"/hq/v1/members/{member}/adjustments", json=body)
    again = admin.post(f"/hq/v1/members/{member}/adjustments", json=body)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert first.json()["points"] == again.json()["points"] == points0 + 25
    other = admin.post(f"/hq/v1/members/{member}/adjustments", json={**body, "delta": 26})
    assert (other.status_code, other.json()["code"]) == (409, "id_conflict")
    short = admin.post(f"/hq/v1/members/{member}/adjustments",
                       json={**body, "adjustment_id": str(uuid.uuid4()), "ledger": "value", "delta": -(value0 + 1)})
    assert short.status_code == 409 and short.json()["code"] == "insufficient_balance"
    for bad in ({**body, "delta": 10**30}, {**body, "delta": "5"}, {**body, "extra": 1}, {**body, "ledger": "gold"},
                {**body, "adjustment_id": "x"}, {**body, "reason": ""}, {**body, "delta": 0}):
        answer = admin.post(f"/hq/v1/members/{member}/adjustments", json=bad)
        assert 400 <= answer.status_code < 500 and "code" in answer.json(), (bad, answer.text)
    assert admin.get("/hq/v1/members", params={"limit": "9" * 30}).status_code == 400
    assert admin.get("/hq/v1/members", params={"q": "x" * 65}).status_code == 400
    assert balances(chain.hq, member) == (value0, points0 + 25)
    refused = api_as(chain.hq, "auditor").post(f"/hq/v1/members/{member}/adjustments",
                                               json={**body, "adjustment_id": str(uuid.uuid4())})
    assert refused.status_code == 403
    assert balances(chain.hq, member) == (value0, points0 + 25)
