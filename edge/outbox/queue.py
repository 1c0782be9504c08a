"""Append deltas to the outbox. The sequence is gapless: the sync agent sends from HQ's ack on.
A delta that carries a member's personal data is stored sealed (edge/members/pii.py)."""

from __future__ import annotations

import sqlite3

from edge.members import pii
from edge.members.chainwide import record_effects
from hq_sync.protocol import Delta, delta_encoder


def append(conn: sqlite3.Connection, delta: Delta, ref: str, at: str) -> int:
    head = conn.execute("SELECT max(seq) FROM outbox").fetchone()[0]
    seq = int(head or 0) + 1
    kind = type(delta).__struct_config__.tag
    conn.execute(
        "INSERT INTO outbox (seq, kind, ref, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        (seq, kind, ref, pii.seal_payload(conn, str(kind), delta_encoder.encode(delta)), at),
    )
    record_effects(conn, seq, delta)  # what the member's chain-wide balance shows until HQ's next snapshot
    return seq
