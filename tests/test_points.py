"""Points by batch (expiry, first-expiring-first use) and points rewards (积分兑换).

Batches and expiry run on a real SQLite database with the hub's migrations; the expiry CLI runs on a
seeded data directory; rewards go through a real `backroom serve`. Member M000001 is gold (10 % off,
points x2) with 5000 points seeded today.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from conftest import Hub, backroom
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.journal.chain import verify
from edge.members import ledger
from edge.members.models import PointsExpiring
from edge.members.points import expire_points, next_expiring, set_valid_months
from edge.stock.ledger import Actor
from edge.storage.migrations import apply_migrations
from hq_sync.protocol import PointsExpiredDelta, delta_decoder

ACTOR = Actor(user_id="test", till_id="T1")


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    apply_migrations(conn)
    conn.execute("INSERT INTO tiers (tier, name_zh, name_en) VALUES ('regular', '普通会员', 'Regular')")
    for member_id in ("A", "B"):
        conn.execute("INSERT INTO members (member_id, name, tier, created_at) VALUES (?, '', 'regular', '2024-01-01')",
                     (member_id,))
        conn.execute("INSERT INTO member_balance (member_id) VALUES (?)", (member_id,))
    return conn


def _batches(conn: sqlite3.Connection, member_id: str = "A") -> list[tuple[int, str | None, int]]:
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT earned, expires_on, remaining FROM points_batches WHERE member_id = ? ORDER BY entry_id",
        (member_id,))]


def _post(conn: sqlite3.Connection, delta: int, kind: str, on: str, member_id: str = "A") -> int:
    return ledger.post(conn, "points", member_id, delta, kind, "ref", ACTOR, f"{on}T10:00:00.000+08:00")


@pytest.mark.parametrize(("earned_on", "months", "expires_on"), [
    ("2024-01-15", 24, "2026-01-31"),
    ("2024-01-31", 24, "2026-01-31"),
    ("2023-12-01", 24, "2025-12-31"),
    ("2024-02-29", 12, "2025-02-28"),
    ("2024-11-30", 3, "2025-02-28"),
    ("2024-05-05", 0, None),
])
def test_a_batch_expires_at_the_end_of_the_month_n_months_after_earning(
        earned_on: str, months: int, expires_on: str | None) -> None:
    assert ledger.expiry_date(datetime.date.fromisoformat(earned_on), months) == expires_on


def test_spending_uses_the_first_expiring_batch_first_and_never_expiring_points_last() -> None:
    conn = _db()
    _post(conn, 100, "earn", "2024-03-10")  # expires 2026-03-31
    set_valid_months(conn, 0)
    _post(conn, 50, "earn", "2023-01-01")  # never expires: used last although it is the oldest
    set_valid_months(conn, 24)
    _post(conn, 200, "earn", "2024-01-15")  # expires 2026-01-31: used first although it is newer
    assert _batches(conn) == [(100, "2026-03-31", 100), (50, None, 50), (200, "2026-01-31", 200)]

    assert _post(conn, -150, "redeem", "2024-04-01") == 200
    assert _batches(conn) == [(100, "2026-03-31", 100), (50, None, 50), (200, "2026-01-31", 50)]
    assert _post(conn, -120, "reverse", "2024-04-02") == 80
    assert _batches(conn) == [(100, "2026-03-31", 30), (50, None, 50), (200, "2026-01-31", 0)]
    with pytest.raises(ledger.Insufficient):
        _post(conn, -81, "redeem", "2024-04-03")
    assert _batches(conn) == [(100, "2026-03-31", 30), (50, None, 50), (200, "2026-01-31", 0)]
    assert _post(conn, -80, "redeem", "2024-04-03") == 0
    assert _batches(conn) == [(100, "2026-03-31", 0), (50, None, 0), (200, "2026-01-31", 0)]


@pytest.mark.parametrize(("today", "expired", "left", "next_due"), [
    ("2026-01-31", [], 350, (280, "2026-01-31")),  # the last valid day: nothing expires yet
    ("2026-02-01", [("A", 280), ("B", 40)], 70, (50, "2026-03-31")),  # January's batch, less the 20 spent
    ("2026-04-01", [("A", 330), ("B", 40)], 20, None),  # both dated batches; the never-expiring 20 stay
])
def test_the_expiry_pass_takes_what_is_left_of_batches_past_their_date(
        today: str, expired: list[tuple[str, int]], left: int, next_due: tuple[int, str] | None) -> None:
    conn = _db()
    _post(conn, 300, "earn", "2024-01-05")  # expires 2026-01-31
    _post(conn, 50, "earn", "2024-03-01")  # expires 2026-03-31
    _post(conn, 40, "earn", "2024-01-10", member_id="B")  # expires 2026-01-31
    set_valid_months(conn, 0)
    _post(conn, 20, "earn", "2024-03-02")  # never expires
    _post(conn, -20, "redeem", "2024-03-03")  # from January's batch
    assert _batches(conn) == [(300, "2026-01-31", 280), (50, "2026-03-31", 50), (20, None, 20)]
    assert next_expiring(conn, "A") == PointsExpiring(280, "2026-01-31")

    assert expire_points(conn, today, f"{today}T03:00:00.000+08:00") == expired
    assert ledger.balances(conn, "A")[0] == left
    assert sum(r for _, _, r in _batches(conn)) == left
    due = next_expiring(conn, "A")
    assert (None if due is None else (due.points, due.expires_on)) == next_due
    assert expire_points(conn, today, f"{today}T04:00:00.000+08:00") == []  # a second pass finds nothing
    entries = conn.execute("SELECT member_id, delta, kind FROM points_ledger WHERE kind = 'expire' ORDER BY entry_id")
    assert [tuple(r) for r in entries] == [(m, -p, "expire") for m, p in expired]
    deltas = [delta_decoder.decode(r[0]) for r in conn.execute("SELECT payload FROM outbox ORDER BY seq")]
    assert [(d.member_id, d.points, d.before) for d in deltas if isinstance(d, PointsExpiredDelta)] == \
        [(m, p, today) for m, p in expired]
    assert verify(conn).ok


_OPS = st.lists(st.tuples(st.sampled_from(["earn", "redeem", "reverse", "refund", "expire", "never"]),
                          st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=40)),
                max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_points_always_equal_the_sum_of_remaining_batches(ops: list[tuple[str, int, int]]) -> None:
    """Whatever the sequence of earn / redeem / reverse / refund / expire (and validity changes):
    the member's points == Σ remaining == Σ ledger, no batch is negative or above what it earned."""
    conn = _db()
    start = datetime.date(2024, 1, 1)
    for kind, amount, month in ops:
        on = (start + datetime.timedelta(days=31 * month)).isoformat()
        points = ledger.balances(conn, "A")[0]
        if kind in ("earn", "refund"):
            _post(conn, amount, kind, on)
        elif kind in ("redeem", "reverse"):
            if amount > points:
                with pytest.raises(ledger.Insufficient):
                    _post(conn, -amount, kind, on)
            else:
                _post(conn, -amount, kind, on)
        elif kind == "expire":
            expire_points(conn, on, f"{on}T00:00:00.000+08:00")
            assert conn.execute("SELECT count(*) FROM points_batches WHERE remaining > 0 AND expires_on < ?",
                                (on,)).fetchone()[0] == 0
        else:
            set_valid_months(conn, 0 if amount % 2 else 24)
        points = ledger.balances(conn, "A")[0]
        batches = _batches(conn)
        assert points >= 0
        assert points == sum(r for _, _, r in batches) == ledger.ledger_sum(conn, "points", "A")
        assert all(0 <= r <= e for e, _, r in batches)
    assert verify(conn).ok


# -- the expiry CLI on a seeded data directory ---------------------------------------------------------------------


def test_the_expiry_cli_expires_batches_past_their_date_on_a_real_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    backroom("seed", "--demo", "--data", str(data))
    db = data / "hub.sqlite3"

    def query(sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()

    [(expires_on,)] = query("SELECT expires_on FROM points_batches WHERE member_id = 'M000001'")
    seeded = datetime.date.today()
    assert expires_on == ledger.expiry_date(seeded, 24) or expires_on == ledger.expiry_date(
        seeded - datetime.timedelta(days=1), 24)  # the store's date (UTC+8) may be a day off the runner's
    holders = dict(query("SELECT member_id, points FROM member_balance WHERE points > 0"))
    assert holders["M000001"] == 5000

    on_last_day = backroom("points", "expire", "--data", str(data), "--today", expires_on)
    assert json.loads(on_last_day.stdout) == {"today": expires_on, "members": 0, "points": 0, "expired": {}}

    day_after = (datetime.date.fromisoformat(expires_on) + datetime.timedelta(days=1)).isoformat()
    run = backroom("points", "expire", "--data", str(data), "--today", day_after)
    out = json.loads(run.stdout)
    assert out["expired"] == holders
    assert (out["members"], out["points"]) == (len(holders), sum(holders.values()))
    assert query("SELECT count(*) FROM member_balance WHERE points != 0") == [(0,)]
    assert query("SELECT sum(remaining) FROM points_batches") == [(0,)]
    assert query("SELECT delta, kind, ref FROM points_ledger WHERE member_id = 'M000001' ORDER BY entry_id") == [
        (5000, "opening", "seed"), (-5000, "expire", f"M000001:{day_after}")]
    outbox = [delta_decoder.decode(p) for (p,) in query("SELECT payload FROM outbox WHERE kind = 'points_expired'")]
    assert {d.member_id: d.points for d in outbox if isinstance(d, PointsExpiredDelta)} == holders
    assert query("SELECT count(*) FROM journal WHERE kind = 'points_expire'") == [(len(holders),)]
    assert backroom("journal", "verify", "--data", str(data)).returncode == 0

    again = backroom("points", "expire", "--data", str(data), "--today", day_after)
    assert json.loads(again.stdout)["members"] == 0
    bad = backroom("points", "expire", "--data", str(data), "--today", "2026-13-01", check=False)
    assert (bad.returncode, bad.stderr) == (2, "--today must be a date YYYY-MM-DD, not '2026-13-01'\n")


# -- rewards (积分兑换) through the HTTP API ---------------------------------------------------------------------------


def _sale(client: httpx.Client, lines: list[dict[str, Any]], tenders: list[dict[str, Any]],
          member_id: str | None = "M000001") -> httpx.Response:
    body: dict[str, Any] = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines, "tenders": tenders}
    if member_id:
        body["member_id"] = member_id
    return client.post("/api/v1/sales", json=body)


def test_a_reward_line_costs_points_not_money_and_a_return_gives_them_back(fresh_hub: Hub) -> None:
    cashier = fresh_hub.login("cashier")
    member = cashier.get("/api/v1/members/M000001").json()
    assert member["points"] == 5000
    assert member["points_expiring"]["points"] == 5000

    quote = cashier.post("/api/v1/quote", json={"member_id": "M000001", "lines": [
        {"sku": "SKU00040", "qty": 2, "reward": True}, {"sku": "SKU00011", "qty": 1}]}).json()
    reward_line = quote["lines"][0]
    assert (reward_line["gross"], reward_line["discount"], reward_line["net"], reward_line["tax"]) == (980, 980, 0, 0)
    assert reward_line["applied"] == [{"rule_id": "reward:soymilk", "name": "积分兑换 祖名原味豆浆1L",
                                       "name_en": "Points reward Zuming Soy Milk 1L", "amount": 980,
                                       "note": "1000积分", "note_en": "1000 points"}]
    assert (quote["total"], quote["points_earned"]) == (891, 17)

    resp = _sale(cashier, [{"sku": "SKU00040", "qty": 2, "reward": True}, {"sku": "SKU00011", "qty": 1}],
                 [{"method": "cash", "amount": 1000}])
    assert resp.status_code == 201, resp.text
    sale = resp.json()
    assert (sale["total"], sale["change"], sale["points_reward"], sale["points_earned"]) == (891, 109, 1000, 17)
    assert sale["member"]["points"] == 4017  # 5000 - 1000 + 17
    assert fresh_hub.query("SELECT delta, kind FROM points_ledger WHERE ref = ? ORDER BY entry_id",
                           (sale["sale_id"],)) == [(-1000, "reward"), (17, "earn")]
    [(payload,)] = fresh_hub.query("SELECT payload FROM outbox WHERE ref = ?", (sale["sale_id"],))
    assert msgspec.msgpack.decode(payload)["points_reward"] == 1000

    back = cashier.post("/api/v1/returns", json={"return_id": str(uuid.uuid4()), "sale_id": sale["sale_id"],
                                                 "lines": [{"line_no": 1, "qty": 1}]})
    assert back.status_code == 201, back.text
    returned = back.json()
    assert (returned["refund_total"], returned["points_reward_returned"], returned["member"]["points"]) == \
        (0, 500, 4517)
    member = cashier.get("/api/v1/members/M000001").json()
    assert member["points"] == 4517
    assert fresh_hub.backroom("journal", "verify").returncode == 0


def test_a_reward_the_member_cannot_afford_is_refused_and_writes_nothing(fresh_hub: Hub) -> None:
    cashier = fresh_hub.login("cashier")
    before = fresh_hub.counts(("journal", "outbox", "sales", "points_ledger", "sale_rewards", "stock_movements"))
    short = _sale(cashier, [{"sku": "SKU00033", "qty": 4, "reward": True}], [])  # 6000 points, 5000 held
    assert short.status_code == 402, short.text
    assert short.json()["code"] == "insufficient_points"
    anonymous = _sale(cashier, [{"sku": "SKU00040", "qty": 1, "reward": True}], [], member_id=None)
    assert (anonymous.status_code, anonymous.json()["code"]) == (422, "member_required")
    not_reward = _sale(cashier, [{"sku": "SKU00011", "qty": 1, "reward": True}], [])
    assert (not_reward.status_code, not_reward.json()["code"]) == (422, "not_a_reward")
    assert fresh_hub.counts(("journal", "outbox", "sales", "points_ledger", "sale_rewards",
                             "stock_movements")) == before
    paid = _sale(cashier, [{"sku": "SKU00033", "qty": 3, "reward": True}], [])  # 4500 points, no money
    assert paid.status_code == 201, paid.text
    assert (paid.json()["total"], paid.json()["points_reward"], paid.json()["member"]["points"]) == (0, 4500, 500)
