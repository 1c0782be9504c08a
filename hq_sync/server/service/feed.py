"""HQ's key pair, named counters and the signed feed every store pulls (docs/sync.md "Down: the feed")."""

from __future__ import annotations

from edge.members.pii import Keys, load
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import (
    FeedBody,
    FeedEntry,
    FeedPage,
    feed_body_encoder,
    new_key,
    sign_entry,
)

# Feed kinds whose body carries members' personal data: sealed in hq_feed (service/pii.py opens
# and seals the same way; it imports this module, so the two small helpers live here).
SEALED_FEED_KINDS = frozenset({"members"})


def keys(tx: Tx) -> Keys:
    return load(tx.key_path)


# -- keys and counters ---------------------------------------------------------------------------------

def hq_key(db: HqDb) -> tuple[bytes, bytes]:
    """HQ's Ed25519 key pair, made on first use and kept in the database."""
    with db.write() as tx:
        row = tx.one("SELECT private_key, public_key FROM hq_keys WHERE id = 1")
        if row is None:
            private, public = new_key()
            tx.run("INSERT INTO hq_keys (id, private_key, public_key) VALUES (1, ?, ?)", (private, public))
            return private, public
        return bytes(row[0]), bytes(row[1])


def next_counter(tx: Tx, name: str) -> int:
    """The next value of a named counter. The row stays locked until commit, so feed entries commit
    in sequence order and a reader never skips one that commits late."""
    row = tx.one("""INSERT INTO hq_counters (name, value) VALUES (?, 1)
                    ON CONFLICT (name) DO UPDATE SET value = hq_counters.value + 1 RETURNING value""", (name,))
    assert row is not None
    return int(row[0])


# -- the feed ------------------------------------------------------------------------------------------------

def append_feed(tx: Tx, private_key: bytes, store: str, body: FeedBody, at: str) -> int:
    seq = next_counter(tx, "feed")
    data = feed_body_encoder.encode(body)
    entry = sign_entry(private_key, seq, store, at, data)
    kind = type(body).__struct_config__.tag
    stored = keys(tx).seal(data, b"feed:" + kind.encode()) if kind in SEALED_FEED_KINDS else data
    tx.run("INSERT INTO hq_feed (seq, store_id, kind, at, body, sig) VALUES (?, ?, ?, ?, ?, ?)",
           (seq, store, kind, at, stored, entry.sig))
    return seq


def append_feed_many(tx: Tx, private_key: bytes, entries: list[tuple[str, FeedBody]], at: str) -> list[int]:
    """Several entries in two statements: the counter moves once by their number, one multi-row INSERT.
    The counter's row stays locked from here to the commit and every feed append waits for it, so a
    hot path (an authorisation) appends last and in as few round trips as it can."""
    if not entries:
        return []
    row = tx.one("""INSERT INTO hq_counters (name, value) VALUES ('feed', ?)
                    ON CONFLICT (name) DO UPDATE SET value = hq_counters.value + ? RETURNING value""",
                 (len(entries), len(entries)))
    assert row is not None
    first = int(row[0]) - len(entries) + 1
    rows = []
    for n, (store, body) in enumerate(entries):
        seq = first + n
        data = feed_body_encoder.encode(body)
        kind = type(body).__struct_config__.tag
        stored = keys(tx).seal(data, b"feed:" + kind.encode()) if kind in SEALED_FEED_KINDS else data
        rows.append((seq, store, kind, at, stored, sign_entry(private_key, seq, store, at, data).sig))
    marks = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
    tx.run(f"INSERT INTO hq_feed (seq, store_id, kind, at, body, sig) VALUES {marks}",
           [value for r in rows for value in r])
    return [r[0] for r in rows]


def read_feed(db: HqDb, store_id: str, after: int, limit: int = 200) -> FeedPage:
    with db.read() as tx:
        rows = tx.all("""SELECT seq, store_id, at, body, sig, kind FROM hq_feed WHERE seq > ? AND store_id IN ('*', ?)
                         ORDER BY seq LIMIT ?""", (after, store_id, limit))
        head_row = tx.one("SELECT max(seq) FROM hq_feed WHERE store_id IN ('*', ?)", (store_id,))
        k = keys(tx) if any(r[5] in SEALED_FEED_KINDS for r in rows) else None
    entries = [FeedEntry(int(r[0]), str(r[1]), str(r[2]),
                         k.open(bytes(r[3]), b"feed:" + str(r[5]).encode()) if k and r[5] in SEALED_FEED_KINDS
                         else bytes(r[3]), bytes(r[4])) for r in rows]
    return FeedPage(entries=entries, head=int(head_row[0] or 0) if head_row else 0)
