"""The tablet's Sync page: a standalone hub's state and queue, a database backup with its progress bar
(the file is a real SQLite copy holding the day's sales), and the roles that may look or back up."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from typing import Any

import httpx

from tests.conftest import Hub
from tests.ui_support import csrf_of, post_form, ui_login


def sell(hub: Hub) -> dict[str, Any]:
    resp = hub.login("cashier").post("/api/v1/sales", json={
        "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00011", "qty": 1}],
        "tenders": [{"method": "card", "amount": 990, "reference": "POS-1"}]})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def figure(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"><span class="label">[^<]*</span><span class="value">([^<]*)</span>', html)
    assert found, f"no figure {element_id}"
    return found.group(1)


def test_a_standalone_hub_shows_its_state_and_the_queue_grows_after_a_sale(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    before = tablet.get("/ui/sync")
    assert before.status_code == 200
    assert "<h1>与总部同步</h1>" in before.text
    assert figure(before.text, "sync-state") == "单机运行"
    assert figure(before.text, "sync-connection") == "未设总部地址"
    assert 'data-live="/ui/sync/events"' in before.text
    queued = hub.query("SELECT count(*) FROM outbox")[0][0]
    assert figure(before.text, "sync-queued") == f"{queued:,}"
    sell(hub)
    after = tablet.get("/ui/sync")
    grown = hub.query("SELECT count(*) FROM outbox")[0][0]
    assert grown > queued
    assert figure(after.text, "sync-queued") == f"{grown:,}"
    assert "尚无未处理的告警。" in after.text  # no alerts on a standalone hub
    english = ui_login(hub, "manager", lang="en").get("/ui/sync").text
    assert "<h1>Sync with HQ</h1>" in english
    assert figure(english, "sync-state") == "Standalone"
    assert figure(english, "sync-queued") == f"{grown:,}"
    assert "Not paired with HQ: every change waits here until the store is paired." in english


def _wait_for_backup(hub: Hub, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = sorted(p.name for p in (hub.data_dir / "backups").glob("backroom-*.db"))
        if files:
            return files
        time.sleep(0.1)
    raise AssertionError("no backup file appeared")


def test_a_backup_job_copies_the_database_with_its_sales(fresh_hub: Hub) -> None:
    sale = sell(fresh_hub)
    tablet = ui_login(fresh_hub, "manager", lang="en")
    assert "No backups yet." in tablet.get("/ui/sync").text
    started = post_form(tablet, "/ui/sync", "/ui/sync/backup", {})
    assert (started.status_code, started.headers["location"]) == (303, "/ui/sync")
    page = tablet.get("/ui/sync").text
    job_id = re.search(r'data-job="([0-9a-f-]{36})"', page)
    assert job_id, page
    assert f'href="/ui/jobs/{job_id.group(1)}"' in page  # the job page is linked
    assert '<label for="job-' in page and "Backup of the hub database" in page  # the progress bar
    [name] = _wait_for_backup(fresh_hub)
    deadline = time.monotonic() + 10
    while "Done" not in (job := tablet.get(f"/ui/jobs/{job_id.group(1)}").text) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'value="100"' in job and name in job  # finished, naming its file
    copy = sqlite3.connect(f"file:{fresh_hub.data_dir / 'backups' / name}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT total FROM sales WHERE sale_id = ?", (sale["sale_id"],)).fetchone() == (990,)
    finally:
        copy.close()
    listed = tablet.get("/ui/sync").text
    size_kb = (fresh_hub.data_dir / "backups" / name).stat().st_size // 1024
    assert f"<td>{name}</td>" in listed and f"{size_kb:,} KB" in listed


def test_a_stale_form_starts_no_backup(hub: Hub) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    before = sorted((hub.data_dir / "backups").glob("*"))
    stale = tablet.post("/ui/sync/backup", data={"csrf": "0" * 32})
    assert stale.status_code == 400 and "The form has expired" in stale.text
    time.sleep(0.5)
    assert sorted((hub.data_dir / "backups").glob("*")) == before


def test_a_cashier_may_not_open_the_sync_page_or_start_a_backup(hub: Hub) -> None:
    tablet = ui_login(hub, "cashier", lang="en")
    denied = tablet.get("/ui/sync")
    assert denied.status_code == 403 and "Your role may not open this page or do this." in denied.text
    assert 'href="/ui/sync"' not in tablet.get("/ui/devices").text  # not in the cashier's menu
    token = csrf_of(tablet.get("/ui/devices").text)  # a real token of the cashier's own session
    forged = tablet.post("/ui/sync/backup", data={"csrf": token})
    assert forged.status_code == 403
    time.sleep(0.5)
    assert not list((hub.data_dir / "backups").glob("*"))
    anonymous = httpx.get(f"{hub.base_url}/ui/sync", follow_redirects=False)
    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/ui/login?next=/ui/sync")


def test_the_figures_stream_over_server_sent_events(hub: Hub) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    with tablet.stream("GET", "/ui/sync/events", timeout=10) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        assert next(lines) == "event: fragments"
        data = next(lines)
    assert data.startswith('data: {"sync-live":"<div id=\\"sync-live\\">')
    assert '"backup-files":"<div id=\\"backup-files\\">' in data
