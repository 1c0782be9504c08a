"""The sale-writer process (edge/sales/sale_writer.py; docs/performance.md, "Fourth round"): a real
`backroom serve` whose sales are committed by its second process while returns go to its own writer
thread. Killed with -9 mid-checkout, the writer loses and doubles no sale and no till sees a 5xx (every
sale is in the database once, retries are byte-identical) and the hub starts it again; the journal chain stays
valid and the receipt numbers gapless; when the hub dies, the writer goes with it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubproc import HubProcess, seed_demo

LINES = [{"sku": "SKU00033", "qty": 1}, {"barcode": "6953686088258", "qty": 2}]
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    data = tmp_path_factory.mktemp("split") / "data"
    seed_demo(data)
    with HubProcess(data) as running:
        yield running


def _writer_pid(hub_pid: int) -> int | None:
    """The hub's child running edge.sales.writer_proc, once its database connection is open."""
    for task in os.listdir(f"/proc/{hub_pid}/task"):
        try:
            children = Path(f"/proc/{hub_pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                fds = [os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")]
            except OSError:
                continue
            if b"edge.sales.writer_proc" in cmdline and any(fd.endswith("hub.sqlite3") for fd in fds):
                return int(child)
    return None


def _wait_writer(hub: HubProcess, other_than: int | None = None) -> int:
    """The writer process's pid; a sale first, if none was sold yet (the first sale starts the process)."""
    assert hub.proc is not None
    if other_than is None and _writer_pid(hub.proc.pid) is None:
        with hub.client() as till:
            assert till.post("/api/v1/sales", json=_sale(till)).status_code == 201
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        pid = _writer_pid(hub.proc.pid)
        if pid is not None and pid != other_than:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no sale writer process:\n{hub.log()}")


def _written(pid: int) -> int:
    """Bytes the process has written (its WAL frames, its replies)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


def _sale(till: httpx.Client) -> dict[str, Any]:
    total = till.post("/api/v1/quote", json={"lines": LINES}).json()["total"]
    return {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": LINES,
            "tenders": [{"method": "card", "amount": total}]}


def _sell(till: httpx.Client, body: dict[str, Any]) -> bytes:
    """POST the sale: committed at the first try, whatever happens to the writer process (never a 5xx)."""
    resp = till.post("/api/v1/sales", json=body, timeout=DEADLINE_S)
    assert resp.status_code == 201, resp.text
    return resp.content


def _receipts_gapless(hub: HubProcess) -> None:
    import sqlite3

    conn = sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        numbers = sorted(int(r[0].rsplit("-", 1)[1]) for r in conn.execute("SELECT receipt_no FROM sales"))
        counter = conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone()[0]
    finally:
        conn.close()
    assert numbers == list(range(1, len(numbers) + 1)) and counter == len(numbers)


def _journal_ok(hub: HubProcess) -> None:
    from hubproc import backroom

    verify = backroom("journal", "verify", "--data", str(hub.data_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _stored(hub: HubProcess, sale_ids: list[str]) -> dict[str, bytes]:
    import sqlite3

    conn = sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        rows: dict[str, bytes] = {}
        for sale_id in sale_ids:
            found = conn.execute("SELECT response FROM sales WHERE sale_id = ?", (sale_id,)).fetchall()
            assert len(found) <= 1
            if found:
                rows[sale_id] = bytes(found[0][0])
        return rows
    finally:
        conn.close()


def test_returns_on_the_hubs_writer_and_sales_in_the_process_keep_the_chain_and_receipts(hub: HubProcess) -> None:
    with hub.client() as till:
        writer = _wait_writer(hub)
        before = _written(writer)
        first = _sale(till)
        assert till.post("/api/v1/sales", json=first).status_code == 201
        sold: list[str] = [first["sale_id"]]
        returned = 0
        for _ in range(12):
            body = _sale(till)
            assert till.post("/api/v1/sales", json=body).status_code == 201
            sold.append(body["sale_id"])
            back = till.post("/api/v1/returns", json={
                "return_id": str(uuid.uuid4()), "sale_id": sold[-2], "till_id": "T1",
                "lines": [{"line_no": 1, "qty": 1}]})
            assert back.status_code == 201, back.text
            returned += 1
        # the sales were committed by the process: it wrote their WAL frames
        assert _written(writer) - before > 12 * 4096
        assert _writer_pid(hub.proc.pid) == writer  # type: ignore[union-attr]
    assert len(_stored(hub, sold)) == len(sold)
    _receipts_gapless(hub)
    _journal_ok(hub)


def test_what_the_process_commits_is_what_the_hubs_writer_would(hub: HubProcess) -> None:
    """The job crosses the pipe intact: a promotion's times keep their +08:00 in the stored rule (msgpack
    would have made them UTC), and the response is the one the sale's retry and GET give back."""
    manager = hub.client("manager", pin=None, password="manager-demo", till_id=None)
    cashier = hub.client()
    try:
        _wait_writer(hub)
        promo = {"rule_id": "split-5", "name": "立减5元", "name_en": "¥5 off",
                 "eligibility": {"coupon": True, "starts_at": "2026-01-01T00:00:00+08:00"},
                 "benefit": {"kind": "amount_off", "amount": 500}}
        assert manager.post("/api/v1/promotions", json=promo).status_code == 201
        assert manager.post("/api/v1/coupons", json={"code": "SPLIT-1", "rule_id": "split-5"}).status_code == 201
        lines = [{"sku": "SKU00204", "qty": 1}]
        total = cashier.post("/api/v1/quote", json={"lines": lines, "coupon_codes": ["SPLIT-1"]}).json()["total"]
        sale_id = str(uuid.uuid4())
        sold = cashier.post("/api/v1/sales", json={"sale_id": sale_id, "till_id": "T1", "lines": lines,
                                                   "coupon_codes": ["SPLIT-1"],
                                                   "tenders": [{"method": "card", "amount": total}]})
        assert sold.status_code == 201, sold.text
        assert cashier.get(f"/api/v1/sales/{sale_id}").content == sold.content
    finally:
        manager.close()
        cashier.close()
    import sqlite3

    conn = sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        (rule,) = conn.execute("SELECT rule FROM sale_promotions WHERE sale_id = ?", (sale_id,)).fetchone()
    finally:
        conn.close()
    assert '"starts_at":"2026-01-01T00:00:00+08:00"' in rule, rule


def test_a_writer_killed_mid_checkout_loses_and_doubles_no_sale(hub: HubProcess) -> None:
    writer = _wait_writer(hub)
    acknowledged: dict[str, bytes] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def till_loop() -> None:
        try:
            with hub.client() as till:
                while not stop.is_set():
                    body = _sale(till)
                    answer = _sell(till, body)
                    with lock:
                        acknowledged[body["sale_id"]] = answer
                    again = till.post("/api/v1/sales", json=body)  # a till's retry: the same bytes
                    assert again.status_code == 201 and again.content == answer, again.text
        except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
            errors.append(exc)

    tills = [threading.Thread(target=till_loop) for _ in range(4)]
    for t in tills:
        t.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(acknowledged) < 30 and time.monotonic() < deadline and not errors:
            time.sleep(0.02)
        os.kill(writer, signal.SIGKILL)
        replacement = _wait_writer(hub, other_than=writer)
        settled = len(acknowledged)
        while len(acknowledged) < settled + 30 and time.monotonic() < deadline + DEADLINE_S and not errors:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in tills:
            t.join(timeout=DEADLINE_S)
    assert not errors, errors
    assert len(acknowledged) >= 60
    assert replacement != writer
    stored = _stored(hub, list(acknowledged))
    assert stored == acknowledged  # every acknowledged sale once, with the bytes the till got
    assert "sale writer process" in hub.log() and "starting it again" in hub.log()
    _receipts_gapless(hub)
    _journal_ok(hub)
    with hub.client() as till:
        assert till.get("/healthz").status_code == 200


def test_the_writer_dies_with_the_hub(hub: HubProcess) -> None:
    writer = _wait_writer(hub)
    hub.kill()
    deadline = time.monotonic() + DEADLINE_S
    while Path(f"/proc/{writer}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if Path(f"/proc/{writer}").exists():  # a zombie of ours would be reaped by init, not by us: look at its state
        state = Path(f"/proc/{writer}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z", state


def test_a_hung_writer_process_is_killed_and_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that stops answering without dying (here SIGSTOP; on a box, an fsync that never returns): the
    hub's liveness probe (edge/appliance/liveness.py) kills it once a sale has waited the stall limit; the
    hub then commits that sale on its own writer and answers it 201, and its retry gets the same bytes."""
    data = tmp_path / "data"
    seed_demo(data)
    monkeypatch.setenv("BACKROOM_WRITER_STALL_S", "2")
    with HubProcess(data) as hub:
        writer = _wait_writer(hub)
        os.kill(writer, signal.SIGSTOP)
        try:
            with hub.client() as till:
                body = _sale(till)
                hung = till.post("/api/v1/sales", json=body, timeout=60)
                assert hung.status_code == 201, hung.text
                assert _wait_writer(hub, other_than=writer) != writer
                again = till.post("/api/v1/sales", json=body, timeout=30)
                assert again.status_code == 201 and again.content == hung.content, again.text
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGCONT)
        assert "has not answered a sale" in hub.log()
        assert list(_stored(hub, [body["sale_id"]])) == [body["sale_id"]]
        assert httpx.get(hub.url + "/healthz", timeout=10).status_code == 200
