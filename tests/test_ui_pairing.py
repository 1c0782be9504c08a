"""Pairing a standalone hub with a real HQ (`backroom hq serve`) from the tablet: a manager enters HQ's address
and the code `backroom hq pair-code` issued; the hub pairs through the same code as `backroom pair`, starts
syncing at once (a sale reaches HQ without a restart), and after a restart syncs with the paired HQ by itself
(`hq_from_pairing`, as the appliance's settings have it). A wrong code or address pairs nothing; a cashier may
not open the page."""

from __future__ import annotations

import html as htmllib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sync_support import FAST, HqServer, SyncHub, cli, sell, wait_until

from tests.ui_support import csrf_of, ui_login

PAGE = "/ui/sync/pair"


@dataclass
class Chain:
    root: Path
    hq: HqServer
    hub: SyncHub


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("pairing")
    hq = HqServer(str(root / "hq.sqlite3"), root)
    hub = SyncHub(root, None, store="demo-001", **FAST)  # standalone: no --hq
    (root / "hub.toml").write_text("hq_from_pairing = true\n")
    hub.args += ["--config", str(root / "hub.toml")]
    try:
        hq.start()
        hub.start()
        yield Chain(root, hq, hub)
    finally:
        hub.stop()
        hq.stop()


def hq_sales(chain: Chain) -> int:
    with chain.hq.admin() as admin:
        stores = {s["store_id"]: s for s in admin.get("/hq/v1/stores").json()["stores"]}
    return int(stores["demo-001"]["sales"]) if "demo-001" in stores else 0


def pair(client: httpx.Client, hq_url: str, code: str) -> httpx.Response:
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    return client.post(PAGE, data={"csrf": csrf_of(page.text), "hq_url": hq_url, "code": code})


def flash(client: httpx.Client, path: str) -> str:
    page = client.get(path).text
    start = page.index('<p class="flash')
    return htmllib.unescape(page[page.index(">", start) + 1:page.index("</p>", start)])


def test_a_cashier_may_not_pair(chain: Chain) -> None:
    with closing(ui_login(chain.hub, "cashier")) as cashier:
        assert cashier.get(PAGE).status_code == 403


def test_a_wrong_code_or_address_pairs_nothing(chain: Chain) -> None:
    with closing(ui_login(chain.hub, "manager", lang="en")) as manager:
        refused = pair(manager, chain.hq.url, "NOT-A-CODE")
        assert (refused.status_code, refused.headers["location"]) == (303, PAGE)
        assert flash(manager, PAGE).startswith("Not paired: HQ refused the pairing (")
        bad = pair(manager, "ftp://hq.example.com", "123456")
        assert (bad.status_code, bad.headers["location"]) == (303, PAGE)
        assert flash(manager, PAGE) == "Enter HQ's address, starting with https:// or http://."
    assert not chain.hub.paired()


def test_a_manager_pairs_from_the_tablet_and_sales_reach_hq_without_a_restart(chain: Chain) -> None:
    with closing(ui_login(chain.hub, "manager", lang="en")) as manager:
        assert "Pair with HQ" in manager.get("/ui/sync").text  # the Sync page offers it while standalone
        with chain.hub.till() as till:  # a sale while standalone: it waits in the outbox
            assert sell(till).status_code == 201
        code = cli("hq", "pair-code", "--store", "demo-001", "--db", chain.hq.db_url)
        assert code.returncode == 0, code.stderr
        done = pair(manager, chain.hq.url, code.stdout.strip())
        assert (done.status_code, done.headers["location"]) == (303, "/ui/sync")
        assert flash(manager, "/ui/sync") == "Paired with HQ as store demo-001."
        assert chain.hub.paired()
        assert chain.hub.query("SELECT hq_url FROM sync_state") == [(chain.hq.url,)]
        page = manager.get(PAGE).text
        assert f"This hub is paired with {chain.hq.url} as store demo-001" in htmllib.unescape(page)
        assert 'name="code"' not in page
    with chain.hub.till() as till:  # the agent runs now: the sale before pairing and one after reach HQ
        assert sell(till).status_code == 201
    wait_until(lambda: hq_sales(chain) == 2, 30, what="both sales at HQ")


def test_after_a_restart_the_hub_syncs_with_the_hq_it_was_paired_with(chain: Chain) -> None:
    chain.hub.stop()
    chain.hub.start()  # still no --hq: `hq_from_pairing` in its settings
    with chain.hub.till() as till:
        assert sell(till).status_code == 201
    wait_until(lambda: hq_sales(chain) == 3, 30, what="the sale after the restart at HQ")
