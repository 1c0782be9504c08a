"""Ledger invariants under random sequences of sales, returns, top-ups and stock receipts.

Service level on a real SQLite file (the hub's Database, its one writer, the demo seed). After
every step: no member balance or points below zero; the balance caches equal their ledgers; stock
on hand per batch equals its movements; no sale refunds more than was paid for it, per line or in
all, and a sale returned unit by unit refunds exactly its total. A refused request (402, 422)
leaves every table exactly as it was.
"""

from __future__ import annotations

import datetime
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from edge.catalog.barcodes import VariableMeasureLayout, make_variable_measure
from edge.clock import StoreClock
from edge.errors import ApiError
from edge.members.service import commit_topup
from edge.sales.basket import quote_lines
from edge.sales.checkout import commit_sale, request_hash
from edge.sales.models import LineIn, ReturnLineIn, ReturnRequest, SaleRequest, TenderIn, TopupRequest
from edge.sales.returns import commit_return
from edge.seed.demo import seed_demo
from edge.stock.ledger import Actor
from edge.stock.models import ReceiveLine, ReceiveRequest
from edge.stock.service import receive
from edge.storage.db import Database

CLOCK = StoreClock("Asia/Shanghai")
LAYOUT = VariableMeasureLayout()
CASHIER = Actor(user_id="U-cashier", till_id="T1")
MANAGER = Actor(user_id="U-manager")

# From the demo catalog: counted items (some in small batches), weighed items, in-store labels.
COUNTED_SKUS = ["SKU00010", "SKU00011", "SKU00014", "SKU00027", "SKU00033", "SKU00073"]
COUNTED_CODES = ["6953686088258", "6964985006195", "094284981544", "6964985007482"]
WEIGHED_SKUS = ["SKU00001", "SKU00002"]
LABELS = ["2112345015002", make_variable_measure("23", "12345", 1234)]  # 1500 g of apples; apples for 12.34
MEMBERS = ["M000001", "M000002", "M000003"]  # gold 200 yuan + 5000 points; silver no value; regular
RECEIVE_LOTS = [None, "L00004", "L-NEW-1", "L-OLD-1"]

lines_st = st.lists(
    st.one_of(
        st.builds(lambda sku, qty: LineIn(sku=sku, qty=qty), st.sampled_from(COUNTED_SKUS), st.integers(1, 5)),
        st.builds(lambda code, qty: LineIn(barcode=code, qty=qty), st.sampled_from(COUNTED_CODES),
                  st.integers(1, 3)),
        st.builds(lambda sku, g: LineIn(sku=sku, weight_g=g), st.sampled_from(WEIGHED_SKUS), st.integers(1, 3000)),
        st.builds(lambda code: LineIn(barcode=code), st.sampled_from(LABELS)),
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo store seeded once (scrypt hashing of the demo logins is the slow part), WAL closed."""
    path = tmp_path_factory.mktemp("ledger-template") / "hub.sqlite3"
    db = Database(path)
    try:
        db.write_sync(lambda c: seed_demo(c, "demo-001", CLOCK))
    finally:
        db.close()
    assert not path.with_name("hub.sqlite3-wal").exists()
    return path


def _snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
              if not r[0].startswith("sqlite_")]
    # WITHOUT ROWID tables (the report rollups) have no insertion order: compare their rows sorted
    return {t: sorted((tuple(r) for r in conn.execute(f"SELECT * FROM {t}")), key=repr) for t in tables}


class LedgerMachine(RuleBasedStateMachine):
    template: Path

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-"))
        shutil.copy(self.template, self.dir / "hub.sqlite3")
        shutil.copy(self.template.with_name("pii.key"), self.dir / "pii.key")  # the members' data key goes along
        self.db = Database(self.dir / "hub.sqlite3")
        self.sales: list[str] = []

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.reader()

    def balances(self, member_id: str) -> tuple[int, int]:
        row = self.conn.execute("SELECT points, balance FROM member_balance WHERE member_id = ?",
                                (member_id,)).fetchone()
        return int(row[0]), int(row[1])

    def write(self, fn: Callable[[sqlite3.Connection], Any], refused: int | None) -> Any:
        """Run a write; `refused` is the status it must be refused with (None: it must succeed)."""
        before = _snapshot(self.conn) if refused is not None else None
        try:
            result = self.db.write_sync(fn)
        except ApiError as err:
            assert refused is not None, f"unexpectedly refused: {err.status} {err.code} {err.message}"
            assert err.status == refused, (err.status, err.code, err.message)
            assert _snapshot(self.conn) == before
            return None
        assert refused is None, f"expected a {refused}, it was committed"
        return result

    def remaining(self, sale_id: str) -> dict[int, tuple[bool, int]]:
        """line_no -> (sold by weight, units not yet returned)."""
        out = {}
        for r in self.conn.execute(
            """SELECT sl.line_no, sl.weight_g IS NOT NULL AND i.unit = 'kg',
                      CASE WHEN sl.weight_g IS NOT NULL AND i.unit = 'kg' THEN sl.weight_g ELSE sl.qty END
                      - coalesce((SELECT sum(coalesce(rl.weight_g, rl.qty)) FROM return_lines rl
                                  JOIN returns r ON r.return_id = rl.return_id
                                  WHERE r.sale_id = sl.sale_id AND rl.line_no = sl.line_no), 0)
               FROM sale_lines sl JOIN items i ON i.sku = sl.sku WHERE sl.sale_id = ? ORDER BY sl.line_no""",
            (sale_id,),
        ):
            out[int(r[0])] = (bool(r[1]), int(r[2]))
        return out

    # -- rules ---------------------------------------------------------------------------------------------
    @rule(lines=lines_st, member=st.sampled_from([None, *MEMBERS]),
          value_wish=st.one_of(st.just(0), st.integers(1, 30_000)),
          points_wish=st.sampled_from([0, 0, 1, 50, 900, 5_000, 30_000]),
          rest=st.sampled_from(["cash", "card", "alipay"]), extra_cash=st.sampled_from([0, 0, 37, 10_000]))
    def sale(self, lines: list[LineIn], member: str | None, value_wish: int, points_wish: int, rest: str,
             extra_cash: int) -> None:
        quote = quote_lines(self.conn, LAYOUT, lines, member)
        value = min(value_wish, quote.total) if member else 0
        points = min(points_wish, quote.total - value) if member else 0
        left = quote.total - value - points
        tenders = [TenderIn("stored_value", value)] if value else []
        tenders += [TenderIn("points", points)] if points else []
        if rest == "cash" and left + extra_cash > 0:
            tenders.append(TenderIn("cash", left + extra_cash))
        elif left > 0:
            tenders.append(TenderIn(rest, left))  # type: ignore[arg-type]
        if not tenders:
            return
        req = SaleRequest(sale_id=uuid.uuid4(), till_id="T1", lines=lines, tenders=tenders, member_id=member)
        had_points, had_value = self.balances(member) if member else (0, 0)
        short = value > had_value or points > had_points
        body = self.write(lambda c: commit_sale(c, req, request_hash(req), quote, CASHIER, CLOCK.stamp(),
                                                CLOCK.today(), "DEMO001"), 402 if short else None)
        if body is None:
            return
        self.sales.append(str(req.sale_id))
        if member:
            earned = self.conn.execute("SELECT points_earned FROM sales WHERE sale_id = ?",
                                       (str(req.sale_id),)).fetchone()[0]
            assert self.balances(member) == (had_points - points + earned, had_value - value)

    @precondition(lambda self: self.sales)
    @rule(data=st.data(), method=st.sampled_from([None, None, None, "cash", "stored_value", "points"]))
    def partial_return(self, data: st.DataObject, method: str | None) -> None:
        sale_id = data.draw(st.sampled_from(self.sales), label="sale")
        left = self.remaining(sale_id)
        open_lines = sorted(n for n, (_, units) in left.items() if units > 0)
        # Now and then (and always once a sale is fully returned) ask for one unit more than is left.
        over = not open_lines or data.draw(st.integers(0, 9), label="over") == 0
        pool = sorted(left) if over else open_lines
        line_nos = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True),
                             label="lines")
        refused: int | None = 422 if over else None
        lines = []
        for line_no in line_nos:
            weighed, units = left[line_no]
            taking = units + 1 if over else data.draw(st.integers(1, units), label="units")
            lines.append(ReturnLineIn(line_no, weight_g=taking) if weighed else ReturnLineIn(line_no, qty=taking))
        member = self.conn.execute("SELECT member_id FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()[0]
        if method in ("stored_value", "points") and member is None:
            refused = refused or 422
        req = ReturnRequest(return_id=uuid.uuid4(), sale_id=uuid.UUID(sale_id), lines=lines,
                            refund_method=method)  # type: ignore[arg-type]
        self.write(lambda c: commit_return(c, req, request_hash(req), CASHIER, CLOCK.stamp()), refused)

    @precondition(lambda self: self.sales)
    @rule(data=st.data())
    def return_everything_left(self, data: st.DataObject) -> None:
        sale_id = data.draw(st.sampled_from(self.sales), label="sale")
        left = self.remaining(sale_id)
        lines = [ReturnLineIn(n, weight_g=units) if weighed else ReturnLineIn(n, qty=units)
                 for n, (weighed, units) in left.items() if units > 0]
        if not lines:
            return
        req = ReturnRequest(return_id=uuid.uuid4(), sale_id=uuid.UUID(sale_id), lines=lines)
        self.write(lambda c: commit_return(c, req, request_hash(req), CASHIER, CLOCK.stamp()), None)
        refunded, total = self.conn.execute(
            "SELECT (SELECT sum(refund_total) FROM returns WHERE sale_id = ?), total FROM sales WHERE sale_id = ?",
            (sale_id, sale_id)).fetchone()
        assert refunded == total

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(1, 500_000),
          method=st.sampled_from(["cash", "card", "wechat"]))
    def topup(self, member: str, amount: int, method: str) -> None:
        req = TopupRequest(topup_id=uuid.uuid4(), amount=amount, method=method)  # type: ignore[arg-type]
        points, value = self.balances(member)
        self.write(lambda c: commit_topup(c, member, req, request_hash(req), CASHIER, CLOCK.stamp()), None)
        assert self.balances(member) == (points, value + amount)

    @rule(sku=st.sampled_from(COUNTED_SKUS + WEIGHED_SKUS), qty=st.integers(1, 5_000),
          lot=st.sampled_from(RECEIVE_LOTS))
    def stock_receipt(self, sku: str, qty: int, lot: str | None) -> None:
        expiry = datetime.date(2020, 1, 1) if lot == "L-OLD-1" else datetime.date(2099, 1, 1) if lot else None
        if lot == "L00004" and sku != "SKU00033":
            lot = "L-NEW-2"  # lots are per SKU; L00004 is a seeded batch of SKU00033
        req = ReceiveRequest(receipt_id=uuid.uuid4(), lines=[ReceiveLine(sku=sku, qty=qty, lot=lot, expiry=expiry)])
        before = self.conn.execute("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ?",
                                   (sku,)).fetchone()[0]
        self.write(lambda c: receive(c, req, request_hash(req), MANAGER, CLOCK.stamp()), None)
        after = self.conn.execute("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ?",
                                  (sku,)).fetchone()[0]
        assert after == before + qty

    # -- invariants ----------------------------------------------------------------------------------------
    @invariant()
    def member_caches_equal_ledgers_and_never_go_negative(self) -> None:
        rows = self.conn.execute(
            """SELECT b.member_id, b.points, b.balance,
                      (SELECT coalesce(sum(delta), 0) FROM points_ledger p WHERE p.member_id = b.member_id),
                      (SELECT coalesce(sum(delta), 0) FROM value_ledger v WHERE v.member_id = b.member_id)
               FROM member_balance b""").fetchall()
        assert len(rows) == 72
        for member_id, points, balance, points_sum, value_sum in rows:
            assert points >= 0 and balance >= 0, member_id
            assert (points, balance) == (points_sum, value_sum), member_id

    @invariant()
    def stock_cache_equals_movements(self) -> None:
        rows = self.conn.execute(
            """SELECT coalesce(b.sku, m.sku), coalesce(b.batch_id, m.batch_id), b.on_hand, m.total
               FROM (SELECT sku, coalesce(batch_id, 0) AS batch_id, sum(qty) AS total FROM stock_movements
                     GROUP BY 1, 2) m
               FULL OUTER JOIN stock_balance b ON b.sku = m.sku AND b.batch_id = m.batch_id
               WHERE b.on_hand IS NOT m.total""").fetchall()
        assert [tuple(r) for r in rows] == []

    @invariant()
    def no_sale_refunds_more_than_was_paid(self) -> None:
        for sale_id in self.sales:
            total, tendered, change, earned = self.conn.execute(
                "SELECT total, tendered, change, points_earned FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
            assert tendered - change == total
            refunded, reversed_points = self.conn.execute(
                "SELECT coalesce(sum(refund_total), 0), coalesce(sum(points_reversed), 0) FROM returns"
                " WHERE sale_id = ?", (sale_id,)).fetchone()
            assert 0 <= refunded <= total
            assert 0 <= reversed_points <= earned
            fully_returned = True
            for line_no, net, units, returned_units, line_refund in self.conn.execute(
                """SELECT sl.line_no, sl.net, CASE WHEN sl.weight_g IS NOT NULL AND i.unit = 'kg'
                                                    THEN sl.weight_g ELSE sl.qty END,
                          coalesce(sum(coalesce(rl.weight_g, rl.qty)), 0), coalesce(sum(rl.refund), 0)
                   FROM sale_lines sl JOIN items i ON i.sku = sl.sku
                   LEFT JOIN returns r ON r.sale_id = sl.sale_id
                   LEFT JOIN return_lines rl ON rl.return_id = r.return_id AND rl.line_no = sl.line_no
                   WHERE sl.sale_id = ? GROUP BY sl.line_no""", (sale_id,)):
                assert returned_units <= units, (sale_id, line_no)
                assert 0 <= line_refund <= net, (sale_id, line_no)
                if returned_units == units:
                    assert line_refund == net, (sale_id, line_no)
                else:
                    fully_returned = False
            if fully_returned:
                assert refunded == total, sale_id
        bad = self.conn.execute(
            """SELECT r.return_id FROM returns r
               WHERE r.refund_total != (SELECT coalesce(sum(amount), 0) FROM return_refunds f
                                        WHERE f.return_id = r.return_id)
                  OR r.refund_total != (SELECT coalesce(sum(refund), 0) FROM return_lines l
                                        WHERE l.return_id = r.return_id)""").fetchall()
        assert bad == []

    @invariant()
    def journal_and_outbox_are_gapless(self) -> None:
        for table in ("journal", "outbox"):
            count, top = self.conn.execute(f"SELECT count(*), coalesce(max(seq), 0) FROM {table}").fetchone()
            assert count == top, table


def test_ledgers_hold_under_random_operations(template: Path) -> None:
    class Machine(LedgerMachine):
        pass

    Machine.template = template
    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=40, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
