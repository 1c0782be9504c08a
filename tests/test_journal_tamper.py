"""`backroom journal verify` finds any changed byte, any changed hash and any missing record.

One journal is built through the real services (seed, sales, a return, a top-up, a stock receipt)
in a real SQLite file. Each case tampers with a copy of that file the way someone with sqlite3 and
the file could, and runs the CLI as a subprocess: exit 1 naming the first broken `seq N`.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import sqlite3
import uuid
from pathlib import Path

import msgspec
import pytest
from hubproc import backroom, seed_demo

from edge.catalog.barcodes import VariableMeasureLayout
from edge.clock import StoreClock
from edge.journal.chain import canonical
from edge.members.service import commit_topup
from edge.sales.basket import quote_lines
from edge.sales.checkout import commit_sale, request_hash
from edge.sales.models import LineIn, ReturnLineIn, ReturnRequest, SaleRequest, TenderIn, TopupRequest
from edge.sales.returns import commit_return
from edge.stock.ledger import Actor
from edge.stock.models import ReceiveLine, ReceiveRequest
from edge.stock.service import receive
from edge.storage.db import Database

CASHIER = Actor(user_id="U-cashier", till_id="T1")
MANAGER = Actor(user_id="U-manager")
RECORDS = 8  # seed, three sales, a return, a top-up, a receipt, a last sale


def _sale(db: Database, clock: StoreClock, lines: list[LineIn], rest: str = "cash", member_id: str | None = None,
          stored_value: int = 0) -> str:
    """Commit a sale through the service: stored value first if any, the rest by `rest`."""
    quote = quote_lines(db.reader(), VariableMeasureLayout(), lines, member_id)
    tenders = [TenderIn("stored_value", stored_value)] if stored_value else []
    tenders.append(TenderIn(rest, quote.total - stored_value))
    req = SaleRequest(sale_id=uuid.uuid4(), till_id="T1", lines=lines, tenders=tenders, member_id=member_id)
    db.write_sync(lambda c: commit_sale(c, req, request_hash(req), quote, CASHIER, clock.stamp(), clock.today(),
                                        "DEMO001"))
    return str(req.sale_id)


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("journal") / "hub"
    seed_demo(data)
    clock = StoreClock("Asia/Shanghai")
    db = Database(data / "hub.sqlite3")
    try:
        first = _sale(db, clock, [LineIn(sku="SKU00033", qty=2), LineIn(barcode="2112345015002")])
        _sale(db, clock, [LineIn(sku="SKU00002", weight_g=750)], "card", member_id="M000001", stored_value=100)
        _sale(db, clock, [LineIn(sku="SKU00034", qty=1)], "wechat")
        ret = ReturnRequest(return_id=uuid.uuid4(), sale_id=uuid.UUID(first), lines=[ReturnLineIn(line_no=1, qty=1)])
        db.write_sync(lambda c: commit_return(c, ret, request_hash(ret), CASHIER, clock.stamp()))
        top = TopupRequest(topup_id=uuid.uuid4(), amount=5000, method="alipay")
        db.write_sync(lambda c: commit_topup(c, "M000001", top, request_hash(top), CASHIER, clock.stamp()))
        rec = ReceiveRequest(receipt_id=uuid.uuid4(), supplier="demo", lines=[
            ReceiveLine(sku="SKU00033", qty=24, lot="L-T1", expiry=datetime.date(2031, 1, 31))])
        db.write_sync(lambda c: receive(c, rec, request_hash(rec), MANAGER, clock.stamp()))
        _sale(db, clock, [LineIn(sku="SKU00033", qty=1)])
    finally:
        db.close()  # the last connection closes: the WAL is checkpointed into the file
    assert not (data / "hub.sqlite3-wal").exists()
    with sqlite3.connect(data / "hub.sqlite3") as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM journal ORDER BY seq")]
    conn.close()
    assert kinds == ["seed", "sale", "sale", "sale", "return", "topup", "stock.receive", "sale"]
    return data


def _copy(journal_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(journal_dir / "hub.sqlite3", copy / "hub.sqlite3")
    return copy


def _tamper(copy: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(copy / "hub.sqlite3")
    with conn:
        assert conn.execute(sql, args).rowcount == 1
    conn.close()


def _row(copy: Path, seq: int) -> tuple[bytes, str]:
    conn = sqlite3.connect(copy / "hub.sqlite3")
    body, digest = conn.execute("SELECT body, hash FROM journal WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return bytes(body), digest


def _verify(data: Path) -> tuple[int, str]:
    done = backroom("journal", "verify", "--data", str(data))
    return done.returncode, done.stdout


def _names_seq(stdout: str, seq: int) -> bool:
    return re.search(rf"\bseq {seq}\b", stdout) is not None


def test_untouched_journal_verifies(journal_dir: Path, tmp_path: Path) -> None:
    code, out = _verify(_copy(journal_dir, tmp_path))
    assert code == 0
    assert f"journal intact: {RECORDS} records" in out


@pytest.mark.parametrize("seq", [1, 4, RECORDS])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_flipped_byte_of_a_body_names_that_record(journal_dir: Path, tmp_path: Path, seq: int, where: str) -> None:
    copy = _copy(journal_dir, tmp_path)
    body, _ = _row(copy, seq)
    at = {"start": 0, "middle": len(body) // 2, "end": len(body) - 1}[where]
    flipped = bytearray(body)
    flipped[at] ^= 0x01
    _tamper(copy, "UPDATE journal SET body = ? WHERE seq = ?", bytes(flipped), seq)
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, seq), out
    assert "BROKEN" in out


@pytest.mark.parametrize("seq", [1, 4, RECORDS])
def test_one_changed_byte_of_a_hash_names_that_record(journal_dir: Path, tmp_path: Path, seq: int) -> None:
    copy = _copy(journal_dir, tmp_path)
    _, digest = _row(copy, seq)
    at = 17
    changed = digest[:at] + ("0" if digest[at] != "0" else "1") + digest[at + 1:]
    _tamper(copy, "UPDATE journal SET hash = ? WHERE seq = ?", changed, seq)
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, seq), out


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_link(journal_dir: Path, tmp_path: Path) -> None:
    # A forger who edits a sale's total and recomputes its hash still breaks the chain at the next record.
    copy = _copy(journal_dir, tmp_path)
    body, _ = _row(copy, 2)
    forged = body.replace(b'"total":', b'"total":1', 1)
    assert forged != body and canonical(msgspec.json.decode(forged)) == forged
    _tamper(copy, "UPDATE journal SET body = ?, hash = ? WHERE seq = 2", forged, hashlib.sha256(forged).hexdigest())
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, 3), out


@pytest.mark.parametrize("seq", [4, 5])
def test_a_deleted_middle_record_names_the_gap(journal_dir: Path, tmp_path: Path, seq: int) -> None:
    copy = _copy(journal_dir, tmp_path)
    _tamper(copy, "DELETE FROM journal WHERE seq = ?", seq)
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, seq), out
    assert "gap" in out


def test_swapped_records_name_the_first_of_them(journal_dir: Path, tmp_path: Path) -> None:
    copy = _copy(journal_dir, tmp_path)
    conn = sqlite3.connect(copy / "hub.sqlite3")
    with conn:
        conn.execute("UPDATE journal SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE journal SET seq = 3 WHERE seq = 2")
        conn.execute("UPDATE journal SET seq = 2 WHERE seq = -1")
    conn.close()
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, 2), out


def test_a_cut_off_tail_is_named_by_the_sale_that_references_it(journal_dir: Path, tmp_path: Path) -> None:
    copy = _copy(journal_dir, tmp_path)
    _tamper(copy, "DELETE FROM journal WHERE seq = ?", RECORDS)  # the last record is the last sale's
    code, out = _verify(copy)
    assert code == 1
    assert _names_seq(out, RECORDS), out
    assert "truncated" in out
