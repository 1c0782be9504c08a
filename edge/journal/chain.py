"""Append to and verify the journal: a gapless sequence, each record chained by SHA-256.

A record's body is the canonical JSON (sorted keys, no whitespace) of its sequence number, kind,
reference, time, the previous record's hash and its data; its hash is the SHA-256 of those bytes.
Changing any byte of any record, deleting one or reordering them breaks the chain at that record
(the NF525 / RKSV model).
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import msgspec

from edge.journal import frozen

GENESIS = "0" * 64


class JournalBody(msgspec.Struct, frozen=True):
    seq: int
    kind: str
    ref: str
    at: str
    prev: str
    data: Any


class Appended(msgspec.Struct, frozen=True):
    seq: int
    hash: str


class Verdict(msgspec.Struct, frozen=True):
    ok: bool
    count: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None


_body_decoder = msgspec.json.Decoder(JournalBody)


def canonical(obj: Any) -> bytes:
    return msgspec.json.encode(obj, order="sorted")


def append(conn: sqlite3.Connection, kind: str, ref: str, at: str, data: Any) -> Appended:
    """Append one record inside the caller's transaction (the writer's)."""
    head = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    body = canonical(JournalBody(seq=seq, kind=kind, ref=ref, at=at, prev=prev, data=data))
    digest = hashlib.sha256(body).hexdigest()
    conn.execute(
        "INSERT INTO journal (seq, kind, ref, body, hash) VALUES (?, ?, ?, ?, ?)",
        (seq, kind, ref, body, digest),
    )
    return Appended(seq=seq, hash=digest)


def as_bytes(value: Any) -> bytes:
    """A stored body as bytes: someone editing the file with sqlite3 may have left TEXT where a BLOB was."""
    return value.encode() if isinstance(value, str) else bytes(value)


def verify(conn: sqlite3.Connection) -> Verdict:
    """Walk the whole chain; the verdict names the first record that does not hold."""
    prev = GENESIS
    count = 0
    for row in conn.execute("SELECT seq, kind, ref, body, hash FROM journal ORDER BY seq"):
        seq, kind, ref, body, stored_hash = row[0], row[1], row[2], as_bytes(row[3]), row[4]
        expected_seq = count + 1
        if seq != expected_seq:
            reason = f"sequence gap: expected {expected_seq}, found {seq}"
            return Verdict(ok=False, count=count, head=prev, broken_seq=expected_seq, reason=reason)
        problem = _check_record(seq, kind, ref, body, stored_hash, prev)
        if problem is not None:
            return Verdict(ok=False, count=count, head=prev, broken_seq=seq, reason=problem)
        prev = stored_hash
        count += 1
    # The chain cannot see its own tail cut off; the sales and returns that name their records can.
    for table in ("sales", "returns"):
        referenced = conn.execute(f"SELECT max(journal_seq) FROM {table}").fetchone()[0]
        if referenced is not None and referenced > count:
            return Verdict(ok=False, count=count, head=prev, broken_seq=count + 1,
                           reason=f"journal truncated: {table} reference seq {referenced}, the chain ends at {count}")
    broken = frozen.check(conn)  # Z reports, shifts, pay-outs and drops against their records
    if broken is not None:
        return Verdict(ok=False, count=count, head=prev, broken_seq=broken[0], reason=broken[1])
    return Verdict(ok=True, count=count, head=prev)


def _check_record(seq: int, kind: str, ref: str, body: bytes, stored_hash: str, prev: str) -> str | None:
    """What is wrong with one record, or None."""
    if hashlib.sha256(body).hexdigest() != stored_hash:
        return "record bytes do not match the stored hash"
    try:
        decoded = _body_decoder.decode(body)
    except msgspec.DecodeError:
        return "record body is not a journal record"
    if canonical(decoded) != body:
        return "record body is not canonical"
    if decoded.seq != seq or decoded.kind != kind or decoded.ref != ref:
        return "record columns disagree with its body"
    if decoded.prev != prev:
        return "record does not chain to the previous record"
    return None
