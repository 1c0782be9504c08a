"""The newest feed entries of one HQ worker, in memory: what its woken long-polls are answered from
(docs/hq-serving.md "Fan-out from memory").

The worker's `FeedWaits` task fills it: after each feed wake-up it reads every store's entries past the
tail's end in one query (`feed.read_feed_since`) and appends them here, then wakes the long-polls of the
stores those entries are addressed to. A woken poll takes its page from here without a thread or a query,
so a price change reaches a thousand waiting stores with one query per worker instead of a thousand.

Why an answer from here is the one the database would give:
- `hq_feed`'s rows commit in seq order (the feed counter's lock, docs/hq-serving.md "The feed's
  sequencer"), so one read of `seq > end` sees a gap-free run of entries: the tail holds every entry with
  `floor < seq <= end`, signed and opened exactly as `read_feed` returns them.
- A poll is answered here only when its cursor is at or past `floor`; an older cursor (a store back from
  a day offline) reads the database as before. So is a poll that does not wait (`wait=0`): it must see
  every entry committed before it, not only those the tail has taken in yet.
- A member's erasure rewrites earlier entries (it takes the member out of the profiles they carry) in the
  transaction that appends its `member_erased` entry: taking that entry in drops everything before it.
- A page carries the store's `head` (its newest entry, its own or everyone's). The tail knows it once the
  store has had an entry through the tail or read the database once in this worker; until then the
  poll reads the database, which tells it.
"""

from __future__ import annotations

import bisect
import os

from hq_sync.wire import FeedEntry, FeedPage

# Entries kept per worker (BACKROOM_HQ_FEED_TAIL): a few hundred bytes each.
TAIL_SIZE = int(os.environ.get("BACKROOM_HQ_FEED_TAIL") or 10_000)
ERASED_KIND = "member_erased"


class FeedTail:
    def __init__(self, size: int = TAIL_SIZE) -> None:
        self.size = max(1, size)
        self._entries: list[FeedEntry] = []  # seq order
        self._seqs: list[int] = []
        self.floor = -1  # every entry with floor < seq <= end is here; -1: not started
        self.end = -1
        self._own: dict[str, int] = {}  # store -> its newest entry addressed to it alone (known once through here)
        self._known: dict[str, int] = {}  # store -> its head as a database read told it
        self._star = 0  # the newest entry addressed to every store
        self.generation = 0  # moves at each start: a database read begun before it tells an old head
        self.served = 0  # pages answered from here

    def start(self, end: int, star: int) -> None:
        """Begin at the feed's current end (`star`: its newest entry for every store): nothing before it is
        held, and heads learned before are forgotten."""
        self._entries, self._seqs = [], []
        self.floor = self.end = end
        self._star = star
        self._own.clear()
        self._known.clear()
        self.generation += 1

    def take(self, entries: list[FeedEntry], kinds: list[str]) -> set[str]:
        """Entries read after `self.end`, in seq order, with their kinds. Returns the stores they are
        addressed to ('*': all)."""
        stores: set[str] = set()
        for entry, kind in zip(entries, kinds, strict=True):
            if entry.seq <= self.end:
                continue
            if kind == ERASED_KIND:  # earlier entries were rewritten in its transaction: not served from here
                self._entries, self._seqs = [], []
                self.floor = entry.seq - 1
            self._entries.append(entry)
            self._seqs.append(entry.seq)
            if entry.store == "*":
                self._star = entry.seq
            else:
                self._own[entry.store] = entry.seq
            stores.add(entry.store)
            self.end = entry.seq
        if len(self._entries) > self.size:
            cut = len(self._entries) - self.size
            self.floor = self._seqs[cut - 1]
            del self._entries[:cut], self._seqs[:cut]
        return stores

    def learned(self, store_id: str, head: int, generation: int) -> None:
        """A database read of this store's feed, begun at `generation`, said its head."""
        if generation != self.generation or self.floor < 0:
            return
        if head > self._known.get(store_id, -1):
            self._known[store_id] = head

    def forget(self, store_id: str) -> None:
        """The store was paired again: its head is learned afresh."""
        self._known.pop(store_id, None)
        self._own.pop(store_id, None)

    def page(self, store_id: str, after: int, limit: int) -> FeedPage | None:
        """The store's page after `after` from memory, or None when the database must answer."""
        if self.floor < 0 or after < self.floor:
            return None
        known = self._known.get(store_id)
        own = self._own.get(store_id)
        if known is None and own is None:
            return None
        out: list[FeedEntry] = []
        for entry in self._entries[bisect.bisect_right(self._seqs, after):]:
            if entry.store == "*" or entry.store == store_id:
                out.append(entry)
                if len(out) >= limit:
                    break
        self.served += 1
        return FeedPage(entries=out, head=max(known or 0, own or 0, self._star))
