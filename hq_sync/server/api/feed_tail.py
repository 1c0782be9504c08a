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
- A poll is answered here when its cursor is at or past `floor`, or when the store has nothing past its
  cursor at all (its newest entry, as below, is at or before the cursor: a quiet store whose cursor the
  tail's floor has passed). Any other older cursor (a store back from a day offline) reads the database
  as before. So does a poll that does not wait (`wait=0`): it must see every entry committed before it,
  not only those the tail has taken in yet.
- The tail keeps each store's entries apart (and everyone's), so a page is a binary search in the store's
  few entries, not a walk through every entry after the cursor (up to the tail's 10,000 a poll).
- A member's erasure rewrites earlier entries (it takes the member out of the profiles they carry) in the
  transaction that appends its `member_erased` entry: taking that entry in drops everything before it.
- A page carries the store's `head` (its newest entry, its own or everyone's). The tail knows it once the
  store has had an entry through the tail or read the database once in this worker; until then the
  poll reads the database, which tells it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os

from hq_sync.wire import FeedEntry, FeedPage

# Entries kept per worker (BACKROOM_HQ_FEED_TAIL): a few hundred bytes each.
TAIL_SIZE = int(os.environ.get("BACKROOM_HQ_FEED_TAIL") or 10_000)
ERASED_KIND = "member_erased"


def _seq(entry: FeedEntry) -> int:
    return entry.seq


class FeedTail:
    def __init__(self, size: int = TAIL_SIZE) -> None:
        self.size = max(1, size)
        self._entries: list[FeedEntry] = []  # seq order
        self._by_store: dict[str, list[FeedEntry]] = {}  # the same entries by addressee ('*': everyone), seq order
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
        self._entries, self._by_store = [], {}
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
                self._entries, self._by_store = [], {}
                self.floor = entry.seq - 1
            self._entries.append(entry)
            self._by_store.setdefault(entry.store, []).append(entry)
            if entry.store == "*":
                self._star = entry.seq
            else:
                self._own[entry.store] = entry.seq
            stores.add(entry.store)
            self.end = entry.seq
        if len(self._entries) > self.size:
            cut = len(self._entries) - self.size
            self.floor = self._entries[cut - 1].seq
            for entry in self._entries[:cut]:  # each is the first of its addressee's entries still here
                mine = self._by_store[entry.store]
                del mine[0]
                if not mine:
                    del self._by_store[entry.store]
            del self._entries[:cut]
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
        if self.floor < 0:
            return None
        known = self._known.get(store_id)
        own = self._own.get(store_id)
        if known is None and own is None:
            return None
        # The store's newest entry: what a database read told this worker, or newer through here (every entry
        # since the start passed through here, kept or since dropped), or everyone's newest.
        head = max(known or 0, own or 0, self._star)
        if after < self.floor:
            if head > after:  # some of what it has not seen may be gone from here
                return None
            self.served += 1
            return FeedPage(entries=[], head=head)
        mine = self._by_store.get(store_id, [])
        everyone = self._by_store.get("*", []) if store_id != "*" else []
        i, j = bisect.bisect_right(mine, after, key=_seq), bisect.bisect_right(everyone, after, key=_seq)
        out = list(itertools.islice(heapq.merge(itertools.islice(mine, i, None), itertools.islice(everyone, j, None),
                                                key=_seq), limit))
        self.served += 1
        return FeedPage(entries=out, head=head)
