"""The chain generator of `backroom bench console` (hq_sync/server/storage/history.py): a small chain with
its history, whose members' money adds up and whose dashboard and report rollups agree with its sales."""

from __future__ import annotations

import datetime
import zoneinfo
from pathlib import Path

from hq_sync.server.service import dashboard, sales_reports
from hq_sync.server.service.access import system_principal
from hq_sync.server.storage.db import open_db
from hq_sync.server.storage.history import generate_chain

ADMIN = system_principal("test-admin")


def test_a_generated_chain_adds_up_and_its_rollups_agree_with_its_sales(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 6, 10, 15, 30, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    db = open_db(str(tmp_path / "hq.sqlite3"))
    try:
        stats = generate_chain(db, stores=6, days=20, tickets_per_day=25, members=300, now=now)
        with db.read() as tx:
            assert tx.one("SELECT count(*) FROM hq_stores") == (6,)
            assert tx.one("SELECT count(*) FROM hq_sales") == (stats.tickets,) and stats.tickets > 1000
            assert tx.one("SELECT min(day), max(day) FROM hq_sales") == ("2026-05-21", "2026-06-10")
            assert tx.one("SELECT max(at) FROM hq_sales")[0] < "2026-06-10T15:30"  # type: ignore[index]
            # money: cached sums are the ledgers' sums, and escrow stays within them
            assert tx.all("""SELECT m.member_id FROM hq_members m WHERE m.balance != (SELECT coalesce(sum(delta), 0)
                             FROM hq_member_ledger l WHERE l.member_id = m.member_id AND l.ledger = 'value')
                             OR m.points != (SELECT coalesce(sum(delta), 0) FROM hq_member_ledger l
                             WHERE l.member_id = m.member_id AND l.ledger = 'points')""") == []
            assert tx.all("""SELECT m.member_id FROM hq_members m JOIN hq_escrow e ON e.member_id = m.member_id
                             GROUP BY m.member_id, m.balance, m.points HAVING
                             sum(CASE WHEN e.ledger = 'value' THEN e.outstanding ELSE 0 END) > m.balance
                             OR sum(CASE WHEN e.ledger = 'points' THEN e.outstanding ELSE 0 END) > m.points""") == []
            # the rollups the dashboard and the reports read hold every sale
            assert tx.one("SELECT sum(tickets), sum(total) FROM hq_sales_hourly") == \
                tx.one("SELECT count(*), sum(total) FROM hq_sales")
            assert tx.one("SELECT sum(tickets), sum(net) FROM hq_store_hours") == \
                tx.one("SELECT count(*), sum(total) FROM hq_sales")
            assert tx.one("SELECT sum(tickets), sum(net) FROM hq_store_days") == \
                tx.one("SELECT count(*), sum(total) FROM hq_sales")
            assert tx.one("SELECT sum(lines), sum(net) FROM hq_sku_days") == \
                tx.one("SELECT count(*), sum(net) FROM hq_sale_lines")
            week = tx.one("SELECT count(*), sum(total) FROM hq_sales WHERE day BETWEEN '2026-06-04' AND '2026-06-10'")
        report = sales_reports.sales(db, ADMIN, "store", "2026-06-04", "2026-06-10")
        assert (report["totals"]["tickets"], report["totals"]["net"]) == week
        board = dashboard.chain_dashboard(db, ADMIN, now)
        assert len(board.stores) == 6
    finally:
        db.close()
