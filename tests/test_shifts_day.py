"""A simulated day through the HTTP API of a real hub: two shifts on each of two tills, a few hundred sales
with mixed tenders (cash with change, card, wechat, alipay, unionpay, stored value, splits), returns,
top-ups, pay-outs and safe drops, then the shifts closed, the X report, cash counts and the Z report.

Every figure of the shift reports, the X report and the Z report is compared, to the fen, with a ledger
the test keeps itself from what it sent and what the API answered (never the hub's tables); the drawer
formula is written out here independently. Then the Z closing is tampered with in copies of the
database file, and `backroom journal verify` must fail on each.
"""

from __future__ import annotations

import csv
import random
import shutil
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Hub, backroom, start_hub

SEED = 20261202
SALES_PER_SHIFT = 75  # 4 shifts: 300 sales
DEFAULT_FLOAT = 50000  # HubConfig.till_float: the day's float of a till in the X report
METHODS = ("cash", "card", "alipay", "wechat", "unionpay", "stored_value", "points")
ITEMS_CSV = Path(__file__).resolve().parent.parent / "edge" / "seed" / "demo" / "items.csv"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Book:
    """What the test knows of one shift (or one till's day): figures summed from its own records."""

    opening_float: int = 0
    tickets: int = 0
    gross: int = 0
    discount: int = 0
    net: int = 0
    tax: int = 0
    tenders: Counter[str] = field(default_factory=Counter)
    change: int = 0
    returns: int = 0
    refunded: int = 0
    refunds: Counter[str] = field(default_factory=Counter)
    topups: int = 0
    topped_up: int = 0
    topups_by_method: Counter[str] = field(default_factory=Counter)
    payouts: int = 0
    drops: int = 0

    def expected(self) -> int:
        return (self.opening_float + self.tenders["cash"] - self.change - self.refunds["cash"]
                + self.topups_by_method["cash"] - self.payouts - self.drops)

    def add(self, other: Book) -> None:
        for name in ("tickets", "gross", "discount", "net", "tax", "change", "returns", "refunded", "topups",
                     "topped_up", "payouts", "drops"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tenders.update(other.tenders)
        self.refunds.update(other.refunds)
        self.topups_by_method.update(other.topups_by_method)

    def cash(self) -> dict[str, int]:
        c = {"opening_float": self.opening_float, "tendered": self.tenders["cash"], "change": self.change,
             "refunds": self.refunds["cash"], "topups": self.topups_by_method["cash"], "expected": self.expected()}
        return {**c, **({"payouts": self.payouts} if self.payouts else {}), **({"drops": self.drops} if self.drops
                                                                              else {})}

    def check(self, figures: dict[str, Any]) -> None:
        assert (figures["tickets"], figures["gross"], figures["discount"], figures["net"], figures["tax"]) == (
            self.tickets, self.gross, self.discount, self.net, self.tax)
        assert figures["tenders"] == {m: self.tenders[m] for m in METHODS}
        assert (figures["returns"], figures["refunded"], figures["refunds"]) == (
            self.returns, self.refunded, {m: a for m, a in self.refunds.items() if a})
        assert (figures["topups"], figures["topped_up"], figures["topups_by_method"]) == (
            self.topups, self.topped_up, {m: a for m, a in self.topups_by_method.items() if a})
        assert figures["cash"] == self.cash()


@dataclass
class Sold:
    sale_id: str
    lines: list[tuple[int, int]]  # line_no, qty left to return


class Day:
    def __init__(self, hub: Hub, rng: random.Random) -> None:
        self.hub, self.rng = hub, rng
        self.manager = hub.login("manager")
        self.items = [r["sku"] for r in csv.DictReader(ITEMS_CSV.open(encoding="utf-8"))
                      if r["unit"] == "each" and int(r["price"]) > 0 and int(r["initial_stock"] or 0) >= 100]
        self.sold: list[Sold] = []
        self.value: dict[str, int] = {}  # stored value this test put on members and has not spent yet
        self.ref = 0
        self.outside = Book()  # trade at a till with no open shift

    def reference(self, method: str) -> str:
        self.ref += 1
        return f"{method.upper()}-{self.ref:06d}"

    def sale(self, client: httpx.Client, till: str, book: Book) -> None:
        rng = self.rng
        lines = [{"sku": sku, "qty": rng.randint(1, 3)} for sku in rng.sample(self.items, rng.randint(1, 3))]
        kind = rng.choices(["cash", "card", "wechat", "alipay", "unionpay", "stored_value", "split"],
                           [30, 10, 14, 14, 8, 8, 16])[0]
        member = None
        if kind == "stored_value" or (kind == "split" and rng.random() < 0.3):
            member = rng.choice([m for m, v in self.value.items() if v > 0] or [None])  # type: ignore[list-item]
            if member is None:
                kind = "cash"
        quote = client.post("/api/v1/quote", json={"lines": lines, **({"member_id": member} if member else {})})
        assert quote.status_code == 200, quote.text
        total = quote.json()["total"]
        tenders: list[dict[str, Any]] = []
        if kind == "cash":
            paid = total if rng.random() < 0.3 else -(-total // 1000) * 1000 + rng.choice([0, 5000, 10000])
            tenders = [{"method": "cash", "amount": paid}]
        elif kind in ("card", "wechat", "alipay", "unionpay"):
            tenders = [{"method": kind, "amount": total, "reference": self.reference(kind)}]
        elif kind == "stored_value":
            assert member is not None
            part = min(total, self.value[member])
            tenders = [{"method": "stored_value", "amount": part}]
            if part < total:
                tenders.append({"method": "wechat", "amount": total - part, "reference": self.reference("wechat")})
        else:  # a split: something first, the rest in cash (with change) or another wallet
            first = rng.choice(["wechat", "alipay", "card", "unionpay"] + (["stored_value"] if member else []))
            part = rng.randint(1, max(1, total - 1)) if total > 1 else total
            if first == "stored_value":
                assert member is not None
                part = min(part, self.value[member])
                tenders = [{"method": "stored_value", "amount": part}]
            else:
                tenders = [{"method": first, "amount": part, "reference": self.reference(first)}]
            rest = total - part
            if rest > 0:
                if rng.random() < 0.6:
                    tenders.append({"method": "cash", "amount": -(-rest // 100) * 100 + rng.choice([0, 2000])})
                else:
                    tenders.append({"method": "alipay" if first != "alipay" else "wechat", "amount": rest,
                                    "reference": self.reference("split")})
        resp = client.post("/api/v1/sales", json={"sale_id": new_id(), "till_id": till, "lines": lines,
                                                  "tenders": tenders, **({"member_id": member} if member else {})})
        assert resp.status_code == 201, resp.text
        sale = resp.json()
        assert sale["total"] == total
        paid_in = sum(t["amount"] for t in tenders)
        assert sale["change"] == paid_in - total  # only cash ever exceeds, so the excess is the change
        book.tickets += 1
        book.gross += sale["subtotal"]
        book.discount += sale["discount"]
        book.net += sale["total"]
        book.tax += sale["tax"]
        book.change += sale["change"]
        for t in tenders:
            book.tenders[t["method"]] += t["amount"]
            if t["method"] == "stored_value":
                assert member is not None
                self.value[member] -= t["amount"]
        self.sold.append(Sold(sale["sale_id"], [(ln["line_no"], ln["qty"]) for ln in sale["lines"]]))

    def refund(self, client: httpx.Client, till: str, book: Book) -> None:
        candidates = [s for s in self.sold if any(q > 0 for _, q in s.lines)]
        sold = self.rng.choice(candidates)
        line_no, left = self.rng.choice([(n, q) for n, q in sold.lines if q > 0])
        qty = self.rng.randint(1, left)
        resp = client.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": sold.sale_id, "till_id": till,
                                                    "lines": [{"line_no": line_no, "qty": qty}]})
        assert resp.status_code == 201, resp.text
        ret = resp.json()
        sold.lines = [(n, q - qty if n == line_no else q) for n, q in sold.lines]
        book.returns += 1
        book.refunded += ret["refund_total"]
        assert sum(r["amount"] for r in ret["refunds"]) == ret["refund_total"]
        for r in ret["refunds"]:
            book.refunds[r["method"]] += r["amount"]
            # a refund to stored value goes back to the member: it may be spent again
        member = (ret.get("member") or {}).get("member_id")
        if member in self.value:
            self.value[member] += sum(r["amount"] for r in ret["refunds"] if r["method"] == "stored_value")

    def topup(self, client: httpx.Client, book: Book) -> None:
        member = f"M{self.rng.randint(1, 40):06d}"
        method = self.rng.choice(["cash", "cash", "wechat", "alipay"])
        amount = self.rng.choice([10000, 20000, 50000])
        body: dict[str, Any] = {"topup_id": new_id(), "amount": amount, "method": method}
        if method != "cash":
            body["reference"] = self.reference(method)
        resp = client.post(f"/api/v1/members/{member}/topups", json=body)
        assert resp.status_code == 201, resp.text
        self.value[member] = self.value.get(member, 0) + amount
        book.topups += 1
        book.topped_up += amount
        book.topups_by_method[method] += amount


@pytest.fixture(scope="module")
def day_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    running = start_hub(tmp_path_factory.mktemp("shiftday"))
    made = running.login("manager").post("/api/v1/users", json={
        "username": "cashier2", "display_name": "王芳", "role": "cashier", "pin": "2580"})
    assert made.status_code in (200, 201), made.text
    yield running
    running.close()


@pytest.fixture(scope="module")
def closed_day(day_hub: Hub) -> dict[str, Any]:
    """Run the day; the Z report, the X report before it, and the test's own books."""
    rng = random.Random(SEED)
    day = Day(day_hub, rng)
    cashiers = {("cashier", "T1"): day_hub.login("cashier", till_id="T1"),
                ("cashier", "T2"): day_hub.login("cashier", till_id="T2"),
                ("cashier2", "T1"): day_hub.login("cashier2", pin="2580", till_id="T1"),
                ("cashier2", "T2"): day_hub.login("cashier2", pin="2580", till_id="T2")}
    tills: dict[str, Book] = {t: Book(opening_float=DEFAULT_FLOAT) for t in ("T1", "T2", "T3")}
    closes: list[tuple[Book, dict[str, Any]]] = []
    for phase in ({"T1": "cashier", "T2": "cashier2"}, {"T1": "cashier2", "T2": "cashier"}):
        shifts: dict[str, tuple[str, Book, httpx.Client]] = {}
        for till, who in phase.items():
            client = cashiers[(who, till)]
            book = Book(opening_float=rng.choice([20000, 30000, 50000]))
            shift_id = new_id()
            opened = client.post("/api/v1/shifts", json={"shift_id": shift_id, "till_id": till,
                                                          "opening_float": book.opening_float})
            assert opened.status_code == 201, opened.text
            shifts[till] = (shift_id, book, client)
            day.topup(client, book)  # every shift starts with a top-up: stored value to spend
        done = Counter[str]()
        moved: set[str] = set()
        while min(done.values(), default=0) < SALES_PER_SHIFT or len(done) < 2:
            till = rng.choice([t for t in shifts if done[t] < SALES_PER_SHIFT])
            shift_id, book, client = shifts[till]
            roll = rng.random()
            if roll < 0.06 and day.sold:
                day.refund(client, till, book)
            elif roll < 0.09:
                day.topup(client, book)
            else:
                day.sale(client, till, book)
                done[till] += 1
            if done[till] == SALES_PER_SHIFT // 2 and till not in moved:  # mid-shift: a pay-out and a safe drop
                moved.add(till)
                amount = rng.randint(200, 3000)
                paid = client.post(f"/api/v1/shifts/{shift_id}/payouts", json={
                    "payout_id": new_id(), "amount": amount, "reason": "快递费 courier"})
                assert paid.status_code == 201, paid.text
                book.payouts += amount
                drop = max(0, book.expected() - book.opening_float) // 10000 * 10000
                if drop:
                    dropped = day.manager.post(f"/api/v1/shifts/{shift_id}/drops", json={
                        "drop_id": new_id(), "amount": drop, "reason": "投库 to the safe"})
                    assert dropped.status_code == 201, dropped.text
                    book.drops += drop
        for till, (shift_id, book, client) in shifts.items():
            variance = rng.choice([0, 0, -100, 50])
            closed = client.post(f"/api/v1/shifts/{shift_id}/close", json={"counted": book.expected() + variance})
            assert closed.status_code == 200, closed.text
            report = closed.json()
            assert report["variance"] == variance
            closes.append((book, report))
            till_book = tills[till]
            float_ = till_book.opening_float
            till_book.add(book)
            till_book.opening_float = float_
    # Trade at a till where nobody opened a shift: it sells, it is in X and Z, and in no shift.
    for _ in range(3):
        day.sale(day.manager, "T3", tills["T3"])
    x = day.manager.get("/api/v1/eod/x")
    assert x.status_code == 200, x.text
    for till, book in tills.items():
        counted = day.manager.post("/api/v1/eod/cash-counts", json={"count_id": new_id(), "till_id": till,
                                                                    "counted": book.expected()})
        assert counted.status_code == 201, counted.text
    z = day.manager.post("/api/v1/eod/z", json={"till_id": "T1"})
    assert z.status_code == 201, z.text
    return {"closes": closes, "tills": tills, "x": x.json(), "z": z.json(), "sales": len(day.sold)}


def test_each_shift_report_equals_the_tests_own_ledger(closed_day: dict[str, Any]) -> None:
    closes = closed_day["closes"]
    assert len(closes) == 4 and closed_day["sales"] == 4 * SALES_PER_SHIFT + 3
    for book, report in closes:
        book.check(report["figures"])
        assert report["counted"] - report["figures"]["cash"]["expected"] == report["variance"]
        assert (len(report["payouts"]), sum(m["amount"] for m in report["payouts"])) == (1, book.payouts)
        assert sum(m["amount"] for m in report["drops"]) == book.drops
    methods = Counter[str]()
    for book, _ in closes:
        methods.update(m for m, a in book.tenders.items() if a)
    assert set(methods) >= {"cash", "card", "wechat", "alipay", "unionpay", "stored_value"}
    assert sum(b.returns for b, _ in closes) > 0 and sum(b.drops for b, _ in closes) > 0


def test_x_and_z_equal_the_tests_own_ledger(closed_day: dict[str, Any]) -> None:
    tills, x, z = closed_day["tills"], closed_day["x"], closed_day["z"]
    assert [t["till_id"] for t in x["tills"]] == ["T1", "T2", "T3"]
    store = Book(opening_float=0)
    for t in x["tills"]:
        book = tills[t["till_id"]]
        book.check(t)
        store.add(book)
        store.opening_float += book.opening_float
    store.check(x["store"])
    # The shifts of a till add up to its day (but for the float: the day's float is the till's, not a shift's).
    for till in ("T1", "T2"):
        shifted = Book()
        for book, report in closed_day["closes"]:
            if report["till_id"] == till:
                shifted.add(book)
        assert (shifted.net, shifted.tickets, dict(shifted.tenders)) == (tills[till].net, tills[till].tickets,
                                                                         dict(tills[till].tenders))
    assert z["x"]["store"] == x["store"] and z["x"]["tills"][0]["cash"] == x["tills"][0]["cash"]
    assert [c["variance"] for c in z["counts"]] == [0, 0, 0]
    period = {"tickets": store.tickets, "net": store.net, "tax": store.tax, "returns": store.returns,
              "refunded": store.refunded, "balance": store.net - store.refunded,
              "absolute": store.net + store.refunded}
    assert z["totals"]["period"] == period
    assert z["totals"]["perpetual"] == period  # the store's first Z
    assert (z["totals"]["period_from"], z["totals"]["period_to"][:10] > z["day"]) == (z["day"], True)


def _copy(hub: Hub, into: Path) -> Path:
    into.mkdir()
    src = sqlite3.connect(f"file:{hub.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    dst = sqlite3.connect(into / "hub.sqlite3")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    for extra in hub.data_dir.iterdir():  # keys and config the CLI may read beside the database
        if extra.is_file() and not extra.name.startswith("hub.sqlite3"):
            shutil.copy2(extra, into / extra.name)
    return into


def _tamper(data: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(data / "hub.sqlite3")
    with conn:
        assert conn.execute(sql, args).rowcount == 1
    conn.close()


def test_a_z_closing_cannot_be_altered_without_journal_verify_failing(closed_day: dict[str, Any], day_hub: Hub,
                                                                      tmp_path: Path) -> None:
    z = closed_day["z"]
    seq = z["journal_seq"]
    intact = backroom("journal", "verify", "--data", str(_copy(day_hub, tmp_path / "intact")), check=False)
    assert intact.returncode == 0, intact.stdout + intact.stderr

    report = day_hub.query("SELECT report FROM z_reports WHERE z_no = ?", (z["z_no"],))[0][0]
    net = z["totals"]["perpetual"]["net"]
    forged_gt = bytes(report).replace(f'"perpetual":{{"tickets":{z["totals"]["perpetual"]["tickets"]},"net":{net}'
                                      .encode(), f'"perpetual":{{"tickets":{z["totals"]["perpetual"]["tickets"]},'
                                                 f'"net":{net - 10000}'.encode())
    assert forged_gt != bytes(report)
    cases = {
        "summary column": ("UPDATE z_reports SET net = net - 100 WHERE z_no = ?", z["z_no"]),
        "cash counted": ("UPDATE z_reports SET cash_counted = cash_counted + 5000 WHERE z_no = ?", z["z_no"]),
        "stored grand total": ("UPDATE z_reports SET report = ? WHERE z_no = ?", forged_gt, z["z_no"]),
        "journal record": ("UPDATE journal SET body = replace(body, ?, ?) WHERE seq = ?",
                           f'"net":{net}'.encode(), f'"net":{net + 1}'.encode(), seq),
        "shift count": ("UPDATE shifts SET counted = counted + 1 WHERE close_seq = (SELECT min(close_seq) "
                        "FROM shifts)",),
        "pay-out": ("UPDATE cash_moves SET amount = amount - 1 WHERE journal_seq = (SELECT min(journal_seq) "
                    "FROM cash_moves WHERE kind = 'payout')",),
    }
    for name, (sql, *args) in cases.items():
        data = _copy(day_hub, tmp_path / name.replace(" ", "-"))
        _tamper(data, sql, *args)
        done = backroom("journal", "verify", "--data", str(data), check=False)
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert "journal BROKEN at seq" in done.stdout, (name, done.stdout)
