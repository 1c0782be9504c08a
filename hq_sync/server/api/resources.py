"""HQ's resources for the lifetime of the app: the database, its key pair, the feed signal and the feed's
waiting long-polls, the escrow policy and its signals, and (on PostgreSQL) the bus to the other workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio

from hq_sync.server.api.feed_tail import FeedTail
from hq_sync.server.api.scheduling import BATCH_LANE, BatchLane, ProcessLane, Timing
from hq_sync.server.service import members, stores
from hq_sync.server.service.demo import is_demo, seed_demo
from hq_sync.server.service.errors import clock_text, now_text
from hq_sync.server.service.escrow import EscrowPolicy
from hq_sync.server.service.escrow_signals import EscrowEvents, ReleaseSignal
from hq_sync.server.service.feed import feed_heads, hq_key, read_feed_since
from hq_sync.server.service.stores import record_contacts, record_feed_cursors
from hq_sync.server.storage.db import HqDb, PostgresDb, open_db
from hq_sync.server.storage.schema import create_schema

CONTACT_EVERY_S = 10.0
# The feed's waiters look at the feed this often even without a wake-up (an append whose notify was
# lost); BACKROOM_HQ_FEED_RECHECK_S changes it (tests set it long, so only a wake-up can end a wait).
FEED_RECHECK_S = float(os.environ.get("BACKROOM_HQ_FEED_RECHECK_S") or 1.0)
# Threads a worker gives store batches at once (BACKROOM_HQ_BATCH_THREADS): the rest wait as coroutines,
# so a thousand stores uploading together leave threads and pooled connections to authorisations and
# feed reads instead of queueing them behind every batch (docs/hq-serving.md). They are the batch lane's own
# threads, with connections of their own (scheduling.py).
BATCH_THREADS = int(os.environ.get("BACKROOM_HQ_BATCH_THREADS") or 2)
BATCH_ADMITTED_PER_LANE = 2  # batches verified and handed to the lane at once, per lane process (`batch_gate`)
# ... and authorisations (BACKROOM_HQ_AUTHORIZE_THREADS): those queued on a member's or the feed counter's
# lock must not hold every pooled connection either.
AUTHORIZE_THREADS = int(os.environ.get("BACKROOM_HQ_AUTHORIZE_THREADS") or 8)
WAKE_CHUNK = 10  # long-polls answered at once when a feed entry wakes many (FeedWaits) ...
WAKE_PAUSE_S = 0.01  # ... and the pause before the next ten: a thousand a second in a worker, with room between
BUSY_TTL_S = 5.0  # how long another worker's waiting authorisation keeps its member from the policy timer
ALL_KEYS_EVERY_S = 5.0  # a key this worker lacks reads every store's key, at most this often (`Hq.key_of`)

log = logging.getLogger(__name__)


class FeedSignal:
    """Wakes long-polling feed requests when something is appended (appends happen in worker threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.publish: Callable[[], None] | None = None  # the other workers (bus.py), when there are any
        # PostgreSQL: the feed's sequencer (sequencer.py) numbers queued entries first, then calls `wake`
        self.sequence: Callable[[], None] | None = None

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        """Called after a commit that appended to (or queued for) the feed."""
        if self.sequence is not None:
            self.sequence()
            return
        self.wake()

    def wake(self) -> None:
        """Wake the long-polls of this worker and the others."""
        self.notify_local()
        if self.publish is not None:
            self.publish()

    def notify_local(self) -> None:
        """This worker's waiters only (another worker's append, heard through the bus)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self.event is not None:
            self.event.set()
        self.event = asyncio.Event()

    def current(self) -> asyncio.Event | None:
        """The event the next append will set: take it *before* reading the feed, so an append between
        the read and the wait is not missed (the wait returns at once)."""
        return self.event

    async def wait(self, timeout: float, event: asyncio.Event | None = None) -> None:
        event = event or self.event
        if event is None:
            await asyncio.sleep(timeout)
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass


class FeedWaits:
    """The feed long-polls this worker holds, by store: an asyncio future each, no thread. One task
    (`run`) wakes them: on each feed signal (coalesced) and every FEED_RECHECK_S it reads, in one query,
    every entry appended since it last looked into the worker's feed tail (feed_tail.py), and wakes only
    the long-polls of the stores those entries are for (`'*'`: every store's). They take their page from
    the tail. A price change wakes all of them with one query per worker; an escrow reclaim for one store
    wakes that store's, not a thousand."""

    def __init__(self, db: HqDb, signal: FeedSignal) -> None:
        self.db = db
        self.signal = signal
        self.tail = FeedTail()
        self._by_store: dict[str, set[asyncio.Future[None]]] = {}
        self._asked: asyncio.Future[bool] | None = None  # polls waiting for a take-in that begins after they asked
        self.checks = 0

    def add(self, store_id: str) -> asyncio.Future[None]:
        """Register *before* reading the feed: an append committed after the read wakes this future."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._by_store.setdefault(store_id, set()).add(fut)
        return fut

    def remove(self, store_id: str, fut: asyncio.Future[None]) -> None:
        held = self._by_store.get(store_id)
        if held is not None:
            held.discard(fut)
            if not held:
                del self._by_store[store_id]

    async def caught_up(self, timeout: float) -> bool:
        """Wait (at most `timeout`) for a take-in that *begins* after this call: the tail then holds every entry
        committed before it, as a database read now would see them. Every poll asking meanwhile shares the
        one take-in (one query for all of them, instead of a database read each). False if it failed or
        did not end in time: the caller reads the database."""
        fut = self._asked
        if fut is None:
            fut = self._asked = asyncio.get_running_loop().create_future()
            self.signal.notify_local()  # wakes `run` (this worker only: nothing was appended)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max(0.0, timeout))
        except TimeoutError:
            return False

    def held(self) -> int:
        return sum(len(futs) for futs in self._by_store.values())

    def close_polls(self) -> None:
        """The worker was told to stop (edge/stopping.py): wake every held long-poll, which then answers with
        what it has (its store polls again, after the restart), instead of holding the stop for the server's
        grace period and then being cancelled, each cancellation logged with its traceback (a thousand at a
        chain's HQ)."""
        self._wake({"*"})

    def _wake(self, stores: set[str]) -> None:
        targets = list(self._by_store) if "*" in stores else [s for s in stores if s in self._by_store]
        woken = [fut for store_id in targets for fut in self._by_store.pop(store_id, ())]
        self._wake_some(woken, 0)

    def _wake_some(self, woken: list[asyncio.Future[None]], start: int) -> None:
        """WAKE_CHUNK polls, then a pause of WAKE_PAUSE_S before the next chunk. Each answered poll comes
        back at once (its store polls again, a signed request to check), so a chain-wide entry woke a
        thousand answers and then a thousand requests: answered a chunk a turn of the event loop, back to
        back, they kept the loop busy for a third of a second, and an authorisation arriving meanwhile
        waited a turn at each of its steps (up to 200 ms in bench chain). An answer and the poll that follows
        it take the loop about half a millisecond: paced at ten every 10 ms, the loop keeps about half of its
        time for the rest, and a thousand stores on two workers have the entry within about half a second
        (docs/hq-serving.md, "Authorisations first")."""
        for fut in woken[start:start + WAKE_CHUNK]:
            if not fut.done():
                fut.set_result(None)
        if start + WAKE_CHUNK < len(woken):
            asyncio.get_running_loop().call_later(WAKE_PAUSE_S, self._wake_some, woken, start + WAKE_CHUNK)

    async def _take_in(self) -> set[str]:
        """What was appended since the tail's end, into the tail (in pages of the tail's size)."""
        stores: set[str] = set()
        while True:
            entries, kinds = await anyio.to_thread.run_sync(read_feed_since, self.db, self.tail.end, self.tail.size)
            stores |= self.tail.take(entries, kinds)
            if len(entries) < self.tail.size:
                return stores

    async def run(self) -> None:
        end, star = await anyio.to_thread.run_sync(feed_heads, self.db)
        self.tail.start(end, star)
        event = self.signal.current()
        while True:
            if event is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), FEED_RECHECK_S)
            else:
                await asyncio.sleep(FEED_RECHECK_S)
            # The next wake-up's event, taken before the read: a commit whose signal fires during the read
            # sets it, and the wait above returns at once (taken after the read, that wake-up was lost
            # until the next re-check).
            event = self.signal.current()
            asked, self._asked = self._asked, None  # polls that asked before this take-in begins
            try:
                stores = await self._take_in()
            except Exception:  # noqa: BLE001 -- the database away for a moment: the waiters time out and poll again
                log.warning("feed wake-up check failed", exc_info=True)
                if asked is not None and not asked.done():
                    asked.set_result(False)
                await asyncio.sleep(FEED_RECHECK_S)
                continue
            self.checks += 1
            if asked is not None and not asked.done():
                asked.set_result(True)
            if stores:
                self._wake(stores)


class Hq:
    """HQ's resources: the database, its key, the feed signal, the escrow policy, releases and events."""

    def __init__(self, db_url: str, demo: bool = False, policy: EscrowPolicy | None = None) -> None:
        self.db: HqDb = open_db(db_url)
        create_schema(self.db)
        if demo:
            seed_demo(self.db, now_text())
        self.demo = is_demo(self.db)
        self.private_key, self.public_key = hq_key(self.db)
        # Authorisations' own connections (PostgreSQL): never queued behind batches and feed reads for one
        self.auth_db: HqDb = (PostgresDb(self.db.url, AUTHORIZE_THREADS, name="backroom-hq-authorize")
                              if isinstance(self.db, PostgresDb) else self.db)
        # ... and batches theirs, on the batch lane's threads (scheduling.py): at most BATCH_THREADS batches at
        # once, so authorisations, feed polls and the event loop never wait for a thread or a connection behind
        # them (their backends niced only with BACKROOM_HQ_BATCH_NICE)
        # On PostgreSQL the lane is processes of the worker's own, each with its connection (scheduling.py)
        self.lane: BatchLane | ProcessLane
        if isinstance(self.db, PostgresDb) and BATCH_LANE == "process":
            self.lane = ProcessLane(BATCH_THREADS, self.db.url)
        else:
            self.lane = BatchLane(BATCH_THREADS)
            self.lane.db = (PostgresDb(self.db.url, BATCH_THREADS, name="backroom-hq-batch",
                                       on_connect=self.lane.backend_started)
                            if isinstance(self.db, PostgresDb) else self.db)
        self.timing = Timing()
        self.signal = FeedSignal()
        self.policy = policy or EscrowPolicy.from_env()
        self.releases = ReleaseSignal()  # wakes authorisations waiting for other stores' releases
        self.events = EscrowEvents()  # shopping and pairings, for the policy timer
        self._keys: dict[str, bytes] = {}
        self._keys_forgotten = 0  # moves at each forget: a key read before it may be the store's old one
        self._all_keys: asyncio.Future[None] | None = None  # the read of every store's key under way, if any
        self._all_keys_at = -ALL_KEYS_EVERY_S  # when it last began (time.monotonic())
        self._contacts: dict[str, float] = {}  # store -> when it last called (time.time(); text at the flush)
        self._cursors: dict[str, int] = {}  # the highest feed cursor each store polled with, recorded or not
        self._cursors_due: dict[str, int] = {}  # ... and those not yet written
        self.tasks: set[asyncio.Task[Any]] = set()  # background jobs (price imports) held until they end
        self.waits = FeedWaits(self.db, self.signal)
        self.bus: Any = None  # bus.PgBus on PostgreSQL (`start_bus`): the other workers
        self.sequencer: Any = None  # sequencer.FeedSequencer on PostgreSQL (`start_bus`)
        self._remote_busy: dict[str, float] = {}  # members other workers' authorisations wait on (until when)
        self._authorize_limiter: anyio.CapacityLimiter | None = None
        self._batch_gate: asyncio.Semaphore | None = None

    def batch_gate(self) -> asyncio.Semaphore:
        """The batches this worker takes into the handler at once (api/sync.py `_few_batches_at_once`): two a
        lane process (or thread), so each has its next batch waiting (scheduling.py). The rest wait before it."""
        if self._batch_gate is None:
            self._batch_gate = asyncio.Semaphore(BATCH_ADMITTED_PER_LANE * self.lane.threads)
        return self._batch_gate

    def authorize_limiter(self) -> anyio.CapacityLimiter:
        if self._authorize_limiter is None:
            self._authorize_limiter = anyio.CapacityLimiter(AUTHORIZE_THREADS)
        return self._authorize_limiter

    # -- several workers (PostgreSQL) ------------------------------------------------------------------

    def start_bus(self) -> None:
        """On PostgreSQL: LISTEN/NOTIFY to the other workers and the timers' leader lock (bus.py). Called
        in the app's start-up, after `signal.bind()`."""
        if not isinstance(self.db, PostgresDb):
            return
        from hq_sync.server.api.bus import PgBus

        self.bus = PgBus(self.db.url, on_feed=self.signal.notify_local,
                         on_release=self.releases.notify_local, on_forget=self._forget_local,
                         on_escrow=self._heard_escrow)
        self.signal.publish = self.bus.feed
        self.releases.publish = self.bus.release
        from hq_sync.server.api.sequencer import FeedSequencer

        self.sequencer = FeedSequencer(self.db, self.private_key, self.signal.wake)
        self.signal.sequence = self.sequencer.kick

    def warm(self) -> None:
        """Before serving (after `start_bus`, so that a re-pairing from here on is heard): every paired store's
        key in the cache, and the authorisations' connections open. A store's first request in this worker
        otherwise read its key on the event loop, waiting for a pooled connection while the loop held every
        other request, and an authorisation opened a connection of its own (tens of milliseconds)."""
        self._keys.update(stores.store_keys(self.db))
        if isinstance(self.auth_db, PostgresDb):
            self.auth_db.fill(warm=members.warm_authorize)

    def leads(self) -> bool:
        """Whether this worker runs the timers (escrow policy, member pass, campaigns): always with one
        process; with several, the holder of the leader lock."""
        return self.bus is None or bool(self.bus.leader)

    def _heard_escrow(self, message: dict[str, Any]) -> None:
        if not self.leads():  # only the leader's timer reads them (a follower would only send them on)
            return
        pairs = [str(p).split("\t", 1) for p in message.get("ids", [])]
        self.events.shopped((m, s) for m, s in (p for p in pairs if len(p) == 2))
        if message.get("sweep"):
            self.events.sweep_soon()
        until = time.monotonic() + BUSY_TTL_S
        for member_id in message.get("busy", []):
            self._remote_busy[str(member_id)] = until

    def busy_members(self) -> set[str]:
        """Members an authorisation waits on, in this worker or (recently said) in another."""
        now = time.monotonic()
        self._remote_busy = {m: t for m, t in self._remote_busy.items() if t > now}
        return self.releases.watched() | set(self._remote_busy)

    def _forget_local(self, store_ids: list[str]) -> None:
        self._keys_forgotten += 1
        for store_id in store_ids:
            self._keys.pop(store_id, None)
            self._cursors.pop(store_id, None)
            self._cursors_due.pop(store_id, None)
            self.waits.tail.forget(store_id)

    def cached_key(self, store_id: str) -> bytes | None:
        return self._keys.get(store_id)

    async def key_of(self, store_id: str) -> bytes | None:
        """The store's key (None: not paired). One this worker has not cached (stores paired since it started)
        is read with every other store's, in one query on a thread that every request missing meanwhile
        shares, at most every ALL_KEYS_EVERY_S: when a chain's stores pair after HQ's start, their first
        requests to each worker read a key each, a thousand thread hops and queries as the busy hour began.
        Past that, or for a store still missing, the store's own key is read on a thread (support.signed_store:
        never on the event loop)."""
        key = self._keys.get(store_id)
        if key is not None:
            return key
        if self._all_keys is None and time.monotonic() - self._all_keys_at >= ALL_KEYS_EVERY_S:
            self._all_keys_at = time.monotonic()
            self._all_keys = asyncio.ensure_future(self._read_all_keys())
        if self._all_keys is not None:
            await asyncio.shield(self._all_keys)
            key = self._keys.get(store_id)
            if key is not None:
                return key
        return await anyio.to_thread.run_sync(self.store_key, store_id)

    async def _read_all_keys(self) -> None:
        try:
            forgotten = self._keys_forgotten
            keys = await anyio.to_thread.run_sync(stores.store_keys, self.db)
            if forgotten == self._keys_forgotten:  # else a store paired again meanwhile: it may be its old key
                for store_id, key in keys.items():
                    self._keys.setdefault(store_id, key)
        except Exception:  # noqa: BLE001 -- the database away for a moment: each request reads its own key
            log.warning("could not read the stores' keys", exc_info=True)
        finally:
            self._all_keys = None

    def store_key(self, store_id: str) -> bytes | None:
        """The store's key, read from the database when this worker has not cached it (a blocking read: on a
        thread, `key_of`). Not cached if the store was forgotten meanwhile (paired again: it may be the old key)."""
        key = self._keys.get(store_id)
        if key is None:
            forgotten = self._keys_forgotten
            key = stores.store_key(self.db, store_id)
            if key is not None and forgotten == self._keys_forgotten:
                self._keys[store_id] = key
        return key

    def polled(self, store_id: str, cursor: int) -> None:
        """A feed poll with `after=cursor`: the store has applied every entry up to it. Kept here when it moved
        on, written with the stores' contacts by `flush_contacts`."""
        if cursor > self._cursors.get(store_id, -1):
            self._cursors[store_id] = cursor
            self._cursors_due[store_id] = cursor

    def heard_from(self, store_id: str) -> None:
        """The store called (a feed poll): remembered here, written with the others by `flush_contacts`
        every CONTACT_EVERY_S, so a thousand long-polling stores cost one small transaction, not a
        thousand."""
        self._contacts[store_id] = time.time()  # the clock text (a time zone lookup) only at the flush

    def flush_contacts(self) -> int:
        pending, self._contacts = self._contacts, {}
        cursors, self._cursors_due = self._cursors_due, {}
        if pending:  # stores a batch held the row of (PostgreSQL) are kept for the next flush
            for store_id in record_contacts(self.db, sorted((s, clock_text(t)) for s, t in pending.items())):
                if store_id in self._keys:
                    self._contacts.setdefault(store_id, pending[store_id])
        if cursors:
            for store_id in record_feed_cursors(self.db, sorted(cursors.items())):
                if store_id in self._keys and store_id not in self._cursors_due:
                    self._cursors_due[store_id] = cursors[store_id]
        return len(pending)

    def forget_key(self, store_id: str) -> None:
        self._forget_local([store_id])  # a store paired again starts its feed afresh
        if self.bus is not None:  # ... in every worker, with its new key
            self.bus.forget(store_id)

    def close(self) -> None:
        if self.sequencer is not None:
            self.sequencer.close()
            self.sequencer = None
        if self.bus is not None:
            self.bus.close()
            self.bus = None
        self.lane.close()
        for pool in (self.auth_db, getattr(self.lane, "db", None)):
            if pool is not None and pool is not self.db:
                pool.close()
        self.db.close()

