"""HQ's key pair, named counters and the signed feed every store pulls (docs/sync.md "Down: the feed")."""

from __future__ import annotations

from edge.members.pii import Keys, load
from hq_sync.server.storage.db import HqDb, Row, Tx
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


# -- the feed ------------------------------------------------------------------------------------------------
#
# Two ways onto the feed (docs/hq-serving.md "The feed's sequencer"):
# - `append_feed` numbers the entry in the caller's transaction: it takes the next value of the `feed` counter,
#   whose row stays locked until commit, so numbered entries commit in seq order. Every such append in HQ
#   waits for that lock; callers that need the seq (a price change records it) use it.
# - `queue_feed` (PostgreSQL) takes no lock: the entry goes into hq_feed_pending with its transaction's id,
#   and the sequencer (`number_pending`, run by every worker right after its appends commit and on a short
#   tick) numbers, signs and moves the committed ones into hq_feed, holding the counter's lock for that one
#   short transaction. Readers only ever see hq_feed, whose rows still commit in seq order, so a cursor never
#   passes an entry that commits late. On SQLite (one writer) `queue_feed` is `append_feed`.
# An entry is numbered after every entry that committed before its transaction began (append_feed numbers
# the queue first), so a hub applies them in the order HQ made them.

PENDING_BATCH = 1000  # queued entries numbered per sequencer transaction


def _feed_row(tx: Tx, store: str, body: FeedBody) -> tuple[str, str, bytes, bytes]:
    """(store, kind, plain body, body as stored: sealed for the kinds carrying personal data)."""
    data = feed_body_encoder.encode(body)
    kind = type(body).__struct_config__.tag
    assert isinstance(kind, str)
    stored = keys(tx).seal(data, b"feed:" + kind.encode()) if kind in SEALED_FEED_KINDS else data
    return store, kind, data, stored


def _counter_plus(tx: Tx, n: int) -> int:
    """Move the feed counter by `n` (0: only lock it) and return its new value; the row stays locked until
    commit."""
    row = tx.one("""INSERT INTO hq_counters (name, value) VALUES ('feed', ?)
                    ON CONFLICT (name) DO UPDATE SET value = hq_counters.value + ? RETURNING value""", (n, n))
    assert row is not None
    return int(row[0])


def number_pending(tx: Tx, private_key: bytes, limit: int = PENDING_BATCH) -> int:
    """The sequencer's step: number up to `limit` committed queued entries, in (transaction id, insertion)
    order, sign them with their seq and move them into hq_feed. Holds the feed counter's lock from here to
    the caller's commit, so numbering is serial and hq_feed's rows commit in seq order. Returns how many
    it numbered (0 on SQLite, which queues nothing)."""
    if tx.dialect != "postgresql" or tx.one("SELECT 1 FROM hq_feed_pending LIMIT 1") is None:
        return 0
    head = _counter_plus(tx, 0)
    # a statement after the lock: it sees every numbering committed before (their rows gone from the queue)
    rows = tx.all("SELECT id, store_id, kind, at, body FROM hq_feed_pending ORDER BY xid, id LIMIT ?", (limit,))
    if not rows:
        return 0
    k = keys(tx) if any(r[2] in SEALED_FEED_KINDS for r in rows) else None
    out = []
    for seq, (_, store_id, kind_name, at_text, stored) in enumerate(rows, start=head + 1):
        store, kind, at, body = str(store_id), str(kind_name), str(at_text), bytes(stored)
        data = k.open(body, b"feed:" + kind.encode()) if k is not None and kind in SEALED_FEED_KINDS else body
        out.append((seq, store, kind, at, body, sign_entry(private_key, seq, store, at, data).sig))
    tx.copy("hq_feed", "seq, store_id, kind, at, body, sig", out)
    tx.run("DELETE FROM hq_feed_pending WHERE id = ANY(?)", ([int(r[0]) for r in rows],))
    _counter_plus(tx, len(out))
    return len(out)


def number_all_pending(tx: Tx, private_key: bytes) -> int:
    """`number_pending` until the queue is empty (as this transaction sees it)."""
    total = 0
    while (n := number_pending(tx, private_key)) > 0:
        total += n
        if n < PENDING_BATCH:
            break
    return total


def sequence_pending(db: HqDb, private_key: bytes) -> int:
    """Number what is queued, in transactions of its own: what an HQ worker's sequencer does after each
    commit (api/sequencer.py), for a process without one (a command, a test)."""
    total = 0
    while True:
        with db.write() as tx:
            n = number_pending(tx, private_key)
        total += n
        if n < PENDING_BATCH:
            return total


def append_feed(tx: Tx, private_key: bytes, store: str, body: FeedBody, at: str) -> int:
    """Append one entry numbered now (see above); returns its seq."""
    return append_feed_many(tx, private_key, [(store, body)], at)[0]


def append_feed_many(tx: Tx, private_key: bytes, entries: list[tuple[str, FeedBody]], at: str) -> list[int]:
    """Several entries numbered now, in two statements: the counter moves once by their number, one multi-row
    INSERT. The counter's row stays locked from here to the commit and every numbered append waits for it.
    On PostgreSQL the queue is numbered first, so what committed before this transaction comes before it."""
    if not entries:
        return []
    number_all_pending(tx, private_key)
    first = _counter_plus(tx, len(entries)) - len(entries) + 1
    rows = []
    for n, (store, body) in enumerate(entries):
        seq = first + n
        _, kind, data, stored = _feed_row(tx, store, body)
        rows.append((seq, store, kind, at, stored, sign_entry(private_key, seq, store, at, data).sig))
    marks = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
    tx.run(f"INSERT INTO hq_feed (seq, store_id, kind, at, body, sig) VALUES {marks}",
           [value for r in rows for value in r])
    return [r[0] for r in rows]


def queue_feed(tx: Tx, private_key: bytes, store: str, body: FeedBody, at: str) -> None:
    """Append one entry whose seq the caller does not need, without the counter's lock (see above)."""
    queue_feed_many(tx, private_key, [(store, body)], at)


def queue_feed_many(tx: Tx, private_key: bytes, entries: list[tuple[str, FeedBody]], at: str) -> None:
    """Queue entries for the sequencer (PostgreSQL; one INSERT, no lock on anything shared); on SQLite they are
    appended and numbered at once. The caller wakes the feed (`FeedSignal.notify`) after its commit, which
    runs the sequencer."""
    if not entries:
        return
    if tx.dialect != "postgresql":
        append_feed_many(tx, private_key, entries, at)
        return
    rows = [_feed_row(tx, store, body) for store, body in entries]
    marks = ", ".join(["(pg_current_xact_id()::text::bigint, ?, ?, ?, ?)"] * len(rows))
    tx.run(f"INSERT INTO hq_feed_pending (xid, store_id, kind, at, body) VALUES {marks}",
           [value for store, kind, _, stored in rows for value in (store, kind, at, stored)])


def _entries(tx: Tx, rows: list[Row]) -> list[FeedEntry]:
    """Rows of (seq, store_id, at, body, sig, kind) as the entries a store gets: sealed bodies opened."""
    k = keys(tx) if any(r[5] in SEALED_FEED_KINDS for r in rows) else None
    return [FeedEntry(int(r[0]), str(r[1]), str(r[2]),
                      k.open(bytes(r[3]), b"feed:" + str(r[5]).encode()) if k and r[5] in SEALED_FEED_KINDS
                      else bytes(r[3]), bytes(r[4])) for r in rows]


# A store's page and head in one statement (PostgreSQL): no BEGIN/COMMIT round trips, and each part a range of
# the index `hq_feed_store (store_id, seq)` (the store's entries, everyone's), where `store_id IN ('*', ?)` read
# every entry of both (a bitmap scan, about 90 buffers a poll at a thousand stores). Each part is ordered by
# the index's own key, `(store_id, seq)`, so no plan but that index fits: ordered by `seq` alone, the planner
# walked the primary key back from the newest entry looking for a '*' one (400 buffers a poll).
_PG_PAGE = """
SELECT h.head, p.seq, p.store_id, p.at, p.body, p.sig, p.kind
FROM (SELECT greatest((SELECT seq FROM hq_feed WHERE store_id = '*' ORDER BY store_id DESC, seq DESC LIMIT 1),
                      (SELECT seq FROM hq_feed WHERE store_id = ? ORDER BY store_id DESC, seq DESC LIMIT 1)) AS head) h
LEFT JOIN LATERAL (
    SELECT * FROM ((SELECT seq, store_id, at, body, sig, kind FROM hq_feed
                    WHERE store_id = '*' AND seq > ? ORDER BY store_id, seq LIMIT ?)
                   UNION ALL
                   (SELECT seq, store_id, at, body, sig, kind FROM hq_feed
                    WHERE store_id = ? AND seq > ? ORDER BY store_id, seq LIMIT ?)) u
    ORDER BY seq LIMIT ?) p ON true
ORDER BY p.seq"""


def read_feed(db: HqDb, store_id: str, after: int, limit: int = 200) -> FeedPage:
    if db.dialect == "postgresql" and store_id != "*":
        with db.statement() as tx:
            found = tx.all(_PG_PAGE, (store_id, after, limit, store_id, after, limit, limit))
            rows = [r[1:] for r in found if r[1] is not None]
            entries = _entries(tx, rows)
        return FeedPage(entries=entries, head=int(found[0][0] or 0) if found else 0)
    with db.read() as tx:
        rows = tx.all("""SELECT seq, store_id, at, body, sig, kind FROM hq_feed WHERE seq > ? AND store_id IN ('*', ?)
                         ORDER BY seq LIMIT ?""", (after, store_id, limit))
        head_row = tx.one("SELECT max(seq) FROM hq_feed WHERE store_id IN ('*', ?)", (store_id,))
        entries = _entries(tx, rows)
    return FeedPage(entries=entries, head=int(head_row[0] or 0) if head_row else 0)


def read_feed_since(db: HqDb, after: int, limit: int) -> tuple[list[FeedEntry], list[str]]:
    """Every store's entries after `after` (up to `limit`, in seq order) and their kinds: what an HQ worker's
    feed tail takes in after a wake-up (api/feed_tail.py), one query for all its long-polls."""
    with db.statement() as tx:
        rows = tx.all("SELECT seq, store_id, at, body, sig, kind FROM hq_feed WHERE seq > ? ORDER BY seq LIMIT ?",
                      (after, limit))
        entries = _entries(tx, rows)
    return entries, [str(r[5]) for r in rows]


def feed_heads(db: HqDb) -> tuple[int, int]:
    """The feed's newest seq, and the newest addressed to every store ('*')."""
    with db.read() as tx:
        row = tx.one("SELECT max(seq) FROM hq_feed")
        star = tx.one("SELECT max(seq) FROM hq_feed WHERE store_id = '*'")
    return (int(row[0] or 0) if row else 0), (int(star[0] or 0) if star else 0)
