"""The feed's sequencer in each HQ worker on PostgreSQL (docs/hq-serving.md "The feed's sequencer").

Hot paths (authorisations, reclaims, a batch's member entries, the escrow policy) queue their feed entries
without the feed counter's lock (`service/feed.py` `queue_feed`). After such a commit the worker's feed
signal kicks this thread, which numbers what is queued (`number_pending`, one short transaction holding the
counter's lock) and then wakes the long-polls, in this worker and, through the bus, in the others. Kicks that
arrive while a pass runs are merged into one more pass. It also runs every TICK_S, so entries queued by a
worker that died before its kick, or by a command-line process, are numbered too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from hq_sync.server.service.feed import sequence_pending
from hq_sync.server.storage.db import HqDb

log = logging.getLogger(__name__)

TICK_S = float(os.environ.get("BACKROOM_HQ_FEED_SEQUENCE_TICK_S") or 0.5)


class FeedSequencer:
    def __init__(self, db: HqDb, private_key: bytes, numbered: Callable[[], None], tick_s: float = TICK_S) -> None:
        self.db = db
        self.private_key = private_key
        self.numbered = numbered  # wakes the feed's long-polls (here and in the other workers)
        self.tick_s = tick_s
        self.passes = 0
        self.entries = 0
        self._cond = threading.Condition()
        self._due = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="hq-feed-sequencer", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Something was appended or queued and committed: number it and wake the long-polls."""
        with self._cond:
            self._due = True
            self._cond.notify()

    def run_once(self) -> int:
        """Number everything queued now; returns how many entries."""
        total = sequence_pending(self.db, self.private_key)
        self.passes += 1
        self.entries += total
        return total

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._due and not self._stop:
                    self._cond.wait(self.tick_s)
                if self._stop:
                    return
                kicked, self._due = self._due, False
            try:
                made = self.run_once()
            except Exception:  # noqa: BLE001 -- the database away for a moment: the next tick tries again
                log.warning("feed sequencer pass failed", exc_info=True)
                made = 0
                with self._cond:
                    self._cond.wait(self.tick_s)
            if made or kicked:  # a kick may also follow an append numbered in its own transaction
                try:
                    self.numbered()
                except Exception:  # noqa: BLE001
                    log.exception("feed wake-up failed")

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5)
