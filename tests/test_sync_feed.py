"""The hub applies HQ's feed only when HQ signed it, for this store, at a new position; anything else is
refused and raises an alert. In process, on a real demo hub database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_support import cli

from edge.storage.db import Database
from hq_sync import hub_state
from hq_sync.wire import (
    EscrowGrant,
    EscrowReclaim,
    FeedEntry,
    PairResult,
    PriceChange,
    b64,
    feed_body_encoder,
    new_key,
    sign_entry,
)

NOW = "2026-05-01T10:00:00.000+08:00"


@pytest.fixture
def paired(tmp_path: Path) -> Iterator[tuple[Database, bytes]]:
    data = tmp_path / "hub"
    assert cli("seed", "--demo", "--data", str(data)).returncode == 0
    db = Database(data / "hub.sqlite3")
    hq_private, hq_public = new_key()
    store_private, store_public = new_key()
    db.write_sync(lambda c: hub_state.store_paired(
        c, PairResult("demo-001", b64(hq_public), 0, kept=["M000001"]), hq_url="http://hq", private_key=store_private,
        public_key=store_public, hq_public_key=hq_public, at=NOW))
    yield db, hq_private
    db.close()


def _entry(key: bytes, seq: int, body: object, store: str = "*") -> FeedEntry:
    return sign_entry(key, seq, store, NOW, feed_body_encoder.encode(body))


def _price(db: Database, sku: str) -> int:
    return int(db.reader().execute("SELECT price FROM items WHERE sku = ?", (sku,)).fetchone()[0])


def _alerts(db: Database) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in db.reader().execute("SELECT kind, ref FROM sync_alerts ORDER BY alert_id")]


def _apply(db: Database, entries: list[FeedEntry]) -> hub_state.FeedOutcome:
    return db.write_sync(lambda c: hub_state.apply_feed(c, entries, entries[-1].seq, NOW))


def test_a_signed_price_applies_and_forged_replayed_or_foreign_entries_are_refused(
        paired: tuple[Database, bytes]) -> None:
    db, hq_key = paired
    good = _entry(hq_key, 1, PriceChange(prices=[("SKU00001", 1777)]))
    assert _apply(db, [good]).applied == 1
    assert _price(db, "SKU00001") == 1777

    forger, _ = new_key()
    forged = _entry(forger, 2, PriceChange(prices=[("SKU00001", 1)]))
    tampered = FeedEntry(2, "*", NOW, feed_body_encoder.encode(PriceChange(prices=[("SKU00001", 2)])), good.sig)
    foreign = _entry(hq_key, 2, PriceChange(prices=[("SKU00001", 3)]), store="demo-002")
    for bad, reason in ((forged, "bad_signature"), (tampered, "bad_signature"), (foreign, "other_store")):
        out = _apply(db, [bad])
        assert (out.applied, out.refused) == (0, [(2, reason)])
    replay = _apply(db, [good])
    assert (replay.applied, replay.refused) == (0, [(1, "replayed")])
    assert _price(db, "SKU00001") == 1777
    assert _alerts(db) == [("feed_bad_signature", "2"), ("feed_other_store", "2"), ("feed_replayed", "1")]
    cursor = db.reader().execute("SELECT feed_cursor FROM sync_state").fetchone()[0]
    assert cursor == 1


def test_entries_after_a_refused_one_wait_and_the_cursor_stays_before_it(paired: tuple[Database, bytes]) -> None:
    db, hq_key = paired
    forger, _ = new_key()
    entries = [_entry(hq_key, 1, PriceChange(prices=[("SKU00002", 700)])),
               _entry(forger, 2, PriceChange(prices=[("SKU00002", 1)])),
               _entry(hq_key, 3, PriceChange(prices=[("SKU00002", 900)]))]
    out = _apply(db, entries)
    assert (out.applied, out.refused) == (1, [(2, "bad_signature")])
    assert _price(db, "SKU00002") == 700
    assert db.reader().execute("SELECT feed_cursor FROM sync_state").fetchone()[0] == 1


def test_grants_apply_once_and_reclaims_release_only_what_is_unspent(paired: tuple[Database, bytes]) -> None:
    db, hq_key = paired
    balance = "SELECT balance FROM member_balance WHERE member_id = 'M000002'"
    assert db.reader().execute(balance).fetchone()[0] == 0  # pairing handed the store's holdings to HQ
    grant = EscrowGrant(grant_id="G-1", member_id="M000002", ledger="value", amount=800)
    _apply(db, [_entry(hq_key, 1, grant, "demo-001"), _entry(hq_key, 2, grant, "demo-001")])
    assert db.reader().execute(balance).fetchone()[0] == 800  # the same grant twice counts once
    reclaim = EscrowReclaim(request_id="R-1", member_id="M000002", ledger="value", amount=5000)
    _apply(db, [_entry(hq_key, 3, reclaim, "demo-001")])
    assert db.reader().execute(balance).fetchone()[0] == 0
    conn = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
    outbox = conn.execute("SELECT kind, ref FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()
    conn.close()
    assert outbox == ("release", "R-1")
    # M000001 was adopted by HQ as this store's holding at pairing ("kept"): its balance stayed.
    assert db.reader().execute("SELECT balance FROM member_balance WHERE member_id = 'M000001'").fetchone()[0] == 20000


def test_future_prices_wait_for_their_time(paired: tuple[Database, bytes]) -> None:
    db, hq_key = paired
    later = PriceChange(prices=[("SKU00004", 4321)], effective_at="2999-01-01T00:00:00+08:00")
    _apply(db, [_entry(hq_key, 1, later)])
    before = _price(db, "SKU00004")
    assert before != 4321
    assert db.write_sync(lambda c: hub_state.apply_due_prices(c, NOW)) == 0
    assert db.write_sync(lambda c: hub_state.apply_due_prices(c, "2999-01-01T00:00:01+08:00")) == 1
    assert _price(db, "SKU00004") == 4321
