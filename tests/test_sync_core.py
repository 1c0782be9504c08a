"""The pure parts of sync, table-driven: the batch planner, signatures, compression, digests."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from hq_sync.agent import recheck_delay
from hq_sync.hub_state import fold_digest
from hq_sync.protocol import DeltaLine, DeltaTender, EscrowReleaseDelta, SaleDelta, TopupDelta, delta_encoder
from hq_sync.server.service.ingest import MemberView, decode_rows, plan_batch
from hq_sync.wire import (
    DigestRow,
    OutRow,
    PriceChange,
    compress,
    decompress,
    entry_problem,
    feed_body_encoder,
    new_key,
    request_message,
    sign,
    sign_entry,
    sign_request,
    unb64,
    verify,
)

AT = "2026-05-01T10:00:00.000+08:00"


def _row(seq: int, delta: object, kind: str | None = None) -> OutRow:
    tag = type(delta).__struct_config__.tag  # type: ignore[attr-defined]
    return OutRow(seq, kind or str(tag), f"ref-{seq}", AT, msgspec.Raw(delta_encoder.encode(delta)))


def _spend(value: int, member: str = "M1") -> SaleDelta:
    return SaleDelta(sale_id=str(uuid.uuid4()), receipt_no="R", till_id="T1", user_id="U", at=AT,
                     lines=[DeltaLine(1, "S1", 1, value, value, 0, value, 0)],
                     tenders=[DeltaTender("stored_value", value)], subtotal=value, discount=0, total=value, tax=0,
                     change=0, journal_seq=1, member_id=member, value_spent=value)


def _plan(rows: list[OutRow], acked: int = 0, held: dict[int, str] | None = None, base: int = 0,
          escrow: int = 0, balance: int = 1000) -> tuple[int, int, int, int, list[int], int, int]:
    views = {"M1": MemberView(balance=balance, points=0, escrow_value=escrow, escrow_points=0)}
    p = plan_batch("S", base, acked, held or {}, decode_rows(rows), views, set(), AT)
    return (p.acked, p.applied, p.duplicates, p.deferred, [q for q, _ in p.quarantined], views["M1"].balance,
            views["M1"].escrow_value)


TOPUP = TopupDelta(topup_id="t", member_id="M1", amount=300, method="cash", user_id="U", at=AT, journal_seq=1)
RELEASE = EscrowReleaseDelta(request_id="r", member_id="M1", ledger="value", amount=200, at=AT)


@pytest.mark.parametrize(("case", "rows", "kwargs", "expected"), [
    ("in order", [_row(1, _spend(100)), _row(2, _spend(50))], {"escrow": 500}, (2, 2, 0, 0, [], 850, 350)),
    ("already held", [_row(1, _spend(100)), _row(2, _spend(50))], {"acked": 1, "held": {1: "applied"},
                                                                   "escrow": 500}, (2, 1, 1, 0, [], 950, 450)),
    ("past a gap", [_row(3, _spend(100))], {"acked": 1, "escrow": 500}, (1, 0, 0, 1, [], 1000, 500)),
    ("beyond escrow", [_row(1, _spend(600)), _row(2, _spend(500))], {"escrow": 500},
     (2, 1, 0, 0, [1], 500, 0)),
    ("top-up is escrow", [_row(1, TOPUP), _row(2, _spend(300))], {"escrow": 0}, (2, 2, 0, 0, [], 1000, 0)),
    ("release", [_row(1, RELEASE)], {"escrow": 500}, (1, 1, 0, 0, [], 1000, 300)),
    ("release beyond escrow", [_row(1, RELEASE)], {"escrow": 100}, (1, 0, 0, 0, [1], 1000, 100)),
    ("before pairing", [_row(1, _spend(5000))], {"base": 1, "escrow": 0}, (1, 1, 0, 0, [], 1000, 0)),
    ("balance never negative", [_row(1, _spend(900))], {"escrow": 900, "balance": 800},
     (1, 0, 0, 0, [1], 800, 900)),
    ("garbage", [OutRow(1, "sale", "x", AT, msgspec.Raw(b"\xc1"))], {}, (1, 0, 0, 0, [1], 1000, 0)),
    ("kind mismatch", [_row(1, TOPUP, kind="sale")], {}, (1, 0, 0, 0, [1], 1000, 0)),
    ("same row twice", [_row(1, TOPUP), _row(1, TOPUP)], {}, (1, 1, 1, 0, [], 1300, 300)),
])
def test_the_planner_applies_in_order_once_and_never_overspends(case: str, rows: list[OutRow], kwargs: dict[str, int],
                                                                expected: tuple[object, ...]) -> None:
    assert _plan(rows, **kwargs) == expected, case  # type: ignore[arg-type]


def test_signatures_bind_the_key_the_message_and_for_feed_entries_the_position_and_store() -> None:
    private, public = new_key()
    other, _ = new_key()
    assert verify(public, sign(private, b"m"), b"m")
    assert not verify(public, sign(other, b"m"), b"m")
    assert not verify(public, sign(private, b"m"), b"n")
    assert not verify(b"short", sign(private, b"m"), b"m")
    body = feed_body_encoder.encode(PriceChange(prices=[("S1", 100)]))
    entry = sign_entry(private, 7, "*", AT, body)
    assert entry_problem(entry, public, "demo-001", 6) is None
    assert entry_problem(entry, public, "demo-001", 7) == "replayed"
    moved = msgspec.structs.replace(entry, seq=8)
    assert entry_problem(moved, public, "demo-001", 6) == "bad_signature"
    readdressed = msgspec.structs.replace(entry, store="demo-002")
    assert entry_problem(readdressed, public, "demo-002", 6) == "bad_signature"
    headers = sign_request(private, "demo-001", "POST", "/hq/v1/sync/batches", 1_700_000_000, b"body")
    message = request_message("POST", "/hq/v1/sync/batches", 1_700_000_000, b"body")
    assert verify(public, unb64(headers["X-Backroom-Signature"]), message)
    assert not verify(public, unb64(headers["X-Backroom-Signature"]),
                      request_message("POST", "/hq/v1/sync/batches", 1_700_000_000, b"other"))


def test_compression_round_trips_and_refuses_unknown_encodings_and_bombs() -> None:
    data = b"backroom " * 10_000
    packed, encoding = compress(data)
    assert encoding in ("zstd", "deflate") and len(packed) < len(data) // 50
    assert decompress(packed, encoding) == data
    assert decompress(data, None) == data
    with pytest.raises(ValueError, match="unknown content encoding"):
        decompress(packed, "br")
    bomb, enc = compress(b"\0" * (65 * 1024 * 1024))
    with pytest.raises(ValueError, match="too large"):
        decompress(bomb, enc)


def test_daily_digests_count_sum_and_span_each_kind_per_day() -> None:
    rows = [(1, "sale", "2026-05-01", 100), (2, "sale", "2026-05-01", 250), (3, "topup", "2026-05-01", 5000),
            (4, "sale", "2026-05-02", 75), (5, "sale", "2026-05-01", 5)]
    assert fold_digest(rows) == [DigestRow("2026-05-01", "sale", 3, 355, 1, 5),
                                 DigestRow("2026-05-01", "topup", 1, 5000, 3, 3),
                                 DigestRow("2026-05-02", "sale", 1, 75, 4, 4)]


@pytest.mark.parametrize(("streak", "delay"), [(0, 2.0), (1, 8.0), (2, 32.0), (3, 128.0), (4, 300.0), (50, 300.0)])
def test_a_day_that_keeps_differing_is_rechecked_ever_less_often(streak: int, delay: float) -> None:
    # a row HQ keeps quarantining makes the same day differ at every check: its resend backs off
    assert recheck_delay(300.0, streak) == delay


def test_the_recheck_never_waits_longer_than_the_digest_interval() -> None:
    assert recheck_delay(5.0, 0) == 2.0
    assert recheck_delay(5.0, 3) == 5.0

