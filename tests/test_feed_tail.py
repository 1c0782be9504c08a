"""The feed tail's bookkeeping (hq_sync/server/api/feed_tail.py), pure: which pages it answers from memory,
with which entries and head, and when it sends a poll to the database instead."""

from __future__ import annotations

from hq_sync.server.api.feed_tail import FeedTail
from hq_sync.wire import FeedEntry


def _e(seq: int, store: str) -> FeedEntry:
    return FeedEntry(seq, store, "2026-12-03T08:00:00.000+08:00", b"body-%d" % seq, b"sig")


def _started(size: int = 4, end: int = 10, star: int = 7) -> FeedTail:
    tail = FeedTail(size)
    tail.start(end, star)
    return tail


def test_before_it_starts_every_poll_reads_the_database() -> None:
    tail = FeedTail(4)
    tail.learned("s1", 5, tail.generation)  # a read before the start tells nothing it keeps
    assert tail.page("s1", 10, 100) is None


def test_a_store_whose_head_it_does_not_know_reads_the_database_once() -> None:
    tail = _started()
    assert tail.page("s1", 10, 100) is None
    tail.learned("s1", 9, tail.generation)
    page = tail.page("s1", 10, 100)
    assert page is not None and (page.entries, page.head) == ([], 9)


def test_a_store_s_own_and_everyone_s_entries_in_order_with_the_head() -> None:
    tail = _started()
    tail.learned("s1", 9, tail.generation)
    assert tail.take([_e(11, "s2"), _e(12, "s1"), _e(13, "*"), _e(14, "s2")],
                     ["escrow_grant", "escrow_grant", "prices", "escrow_grant"]) == {"s1", "s2", "*"}
    page = tail.page("s1", 10, 100)
    assert page is not None and ([e.seq for e in page.entries], page.head) == ([12, 13], 13)
    page = tail.page("s1", 12, 100)
    assert page is not None and ([e.seq for e in page.entries], page.head) == ([13], 13)
    page = tail.page("s2", 10, 1)  # the limit
    assert page is not None and ([e.seq for e in page.entries], page.head) == ([11], 14)
    assert tail.page("s3", 10, 100) is None  # s3 has not read its feed in this worker: its head is not known
    assert tail.take([_e(12, "s1")], ["escrow_grant"]) == set()  # seen already: not taken twice


def test_a_cursor_below_the_tail_reads_the_database() -> None:
    tail = _started(size=3)
    tail.learned("s1", 10, tail.generation)
    tail.take([_e(n, "s1") for n in range(11, 16)], ["escrow_grant"] * 5)  # holds 13, 14, 15
    assert tail.floor == 12
    assert tail.page("s1", 11, 100) is None
    page = tail.page("s1", 12, 100)
    assert page is not None and [e.seq for e in page.entries] == [13, 14, 15]


def test_an_erasure_drops_every_entry_before_it() -> None:
    tail = _started()
    tail.learned("s1", 10, tail.generation)
    tail.take([_e(11, "s1"), _e(12, "*"), _e(13, "s1")], ["members", "member_erased", "escrow_grant"])
    assert tail.floor == 11  # the profile at 11 was rewritten in 12's transaction: the database has it
    assert tail.page("s1", 10, 100) is None
    page = tail.page("s1", 11, 100)
    assert page is not None and [e.seq for e in page.entries] == [12, 13]


def test_a_restart_forgets_heads_learned_before_it() -> None:
    tail = _started()
    generation = tail.generation
    tail.start(20, 7)
    tail.learned("s1", 9, generation)  # a read begun before the restart
    assert tail.page("s1", 20, 100) is None


def test_a_quiet_store_whose_cursor_the_floor_passed_is_answered_here() -> None:
    tail = _started(size=3)
    tail.learned("quiet", 9, tail.generation)  # its newest entry: 9, and its cursor is there
    tail.take([_e(n, "busy") for n in range(11, 20)], ["escrow_grant"] * 9)  # the floor passes it: 16
    page = tail.page("quiet", 9, 100)
    assert page is not None and (page.entries, page.head) == ([], 9)
    assert tail.page("quiet", 8, 100) is None  # it has not seen 9: that may be gone from here
    tail.take([_e(20, "quiet"), _e(21, "busy"), _e(22, "busy"), _e(23, "busy")], ["escrow_grant"] * 4)
    assert tail.floor == 20 and tail.page("quiet", 9, 100) is None  # its entry 20 is gone from here again


def test_pages_are_the_walk_through_every_entry_with_many_stores_and_a_moving_floor() -> None:
    import random

    rng = random.Random(14)
    tail = _started(size=50, end=0, star=0)
    stores = [f"s{n}" for n in range(12)]
    for store in stores:
        tail.learned(store, 0, tail.generation)
    every: list[FeedEntry] = []
    seq = 0
    for _ in range(40):
        burst = []
        for _ in range(rng.randrange(1, 30)):
            seq += 1
            burst.append(_e(seq, "*" if rng.random() < 0.05 else rng.choice(stores)))
        tail.take(burst, ["escrow_grant"] * len(burst))
        every += burst
        for store in stores:
            after = rng.randrange(0, seq + 1)
            limit = rng.choice([1, 3, 1000])
            page = tail.page(store, after, limit)
            want = [e for e in every if e.seq > after and e.store in ("*", store)]
            head = max([0] + [e.seq for e in every if e.store in ("*", store)])
            if after < tail.floor:
                assert page is None if want else page is not None and (page.entries, page.head) == ([], head)
            else:
                assert page is not None and (page.entries, page.head) == (want[:limit], head)


def test_a_chain_wide_wake_answers_the_polls_a_chunk_at_a_time_with_pauses_between() -> None:
    """FeedWaits answers WAKE_CHUNK woken polls, then pauses WAKE_PAUSE_S before the next chunk: the event loop
    has room for an authorisation between them, and every poll is still answered within a fraction of a second."""
    import asyncio

    from hq_sync.server.api.resources import WAKE_CHUNK, WAKE_PAUSE_S, FeedSignal, FeedWaits

    async def run() -> tuple[list[int], float]:
        waits = FeedWaits(None, FeedSignal())  # type: ignore[arg-type]  (waking reads no database)
        polls = [waits.add(f"s{n}") for n in range(4 * WAKE_CHUNK + 3)]
        loop = asyncio.get_running_loop()
        start = loop.time()
        waits._wake({"*"})
        done_by_turn = [sum(p.done() for p in polls)]
        await asyncio.sleep(0)
        done_by_turn.append(sum(p.done() for p in polls))
        await asyncio.wait_for(asyncio.gather(*polls), 5)
        return done_by_turn, loop.time() - start

    done_by_turn, took = asyncio.run(run())
    assert done_by_turn == [WAKE_CHUNK, WAKE_CHUNK]  # the next chunk waits for the pause, not the next turn
    assert took >= 4 * WAKE_PAUSE_S * 0.9  # five chunks, four pauses
    assert took < 1.0
