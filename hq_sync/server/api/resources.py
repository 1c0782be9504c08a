"""HQ's resources for the lifetime of the app: the database, its key pair, the feed signal, the escrow
policy and its signals."""

from __future__ import annotations

import asyncio
from typing import Any

from hq_sync.server.service import stores
from hq_sync.server.service.demo import is_demo, seed_demo
from hq_sync.server.service.errors import now_text
from hq_sync.server.service.escrow import EscrowPolicy
from hq_sync.server.service.escrow_signals import EscrowEvents, ReleaseSignal
from hq_sync.server.service.feed import hq_key
from hq_sync.server.service.stores import record_contacts, record_feed_cursors
from hq_sync.server.storage.db import HqDb, open_db
from hq_sync.server.storage.schema import create_schema

CONTACT_EVERY_S = 10.0


class FeedSignal:
    """Wakes long-polling feed requests when something is appended (appends happen in worker threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._fire)

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


class Hq:
    """HQ's resources: the database, its key, the feed signal, the escrow policy, releases and events."""

    def __init__(self, db_url: str, demo: bool = False, policy: EscrowPolicy | None = None) -> None:
        self.db: HqDb = open_db(db_url)
        create_schema(self.db)
        if demo:
            seed_demo(self.db, now_text())
        self.demo = is_demo(self.db)
        self.private_key, self.public_key = hq_key(self.db)
        self.signal = FeedSignal()
        self.policy = policy or EscrowPolicy.from_env()
        self.releases = ReleaseSignal()  # wakes authorisations waiting for other stores' releases
        self.events = EscrowEvents()  # shopping and pairings, for the policy timer
        self._keys: dict[str, bytes] = {}
        self._contacts: dict[str, str] = {}
        self._cursors: dict[str, int] = {}  # the highest feed cursor each store polled with, recorded or not
        self._cursors_due: dict[str, int] = {}  # ... and those not yet written
        self.tasks: set[asyncio.Task[Any]] = set()  # background jobs (price imports) held until they end

    def store_key(self, store_id: str) -> bytes | None:
        key = self._keys.get(store_id)
        if key is None:
            key = stores.store_key(self.db, store_id)
            if key is not None:
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
        self._contacts[store_id] = now_text()

    def flush_contacts(self) -> int:
        pending, self._contacts = self._contacts, {}
        cursors, self._cursors_due = self._cursors_due, {}
        if pending:
            record_contacts(self.db, sorted(pending.items()))
        if cursors:
            record_feed_cursors(self.db, sorted(cursors.items()))
        return len(pending)

    def forget_key(self, store_id: str) -> None:
        self._keys.pop(store_id, None)
        self._cursors.pop(store_id, None)  # a store paired again starts its feed afresh
        self._cursors_due.pop(store_id, None)

    def close(self) -> None:
        self.db.close()

