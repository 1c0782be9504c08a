"""What HQ's worker processes tell each other (`backroom hq serve --workers N`, PostgreSQL only;
docs/hq-serving.md).

Each worker keeps its in-process signals (the feed's wake-up, the releases an authorisation waits for,
the escrow policy's events). `PgBus` carries them to the other workers over PostgreSQL LISTEN/NOTIFY on
one channel, and elects the one worker that runs the timers (escrow policy, member pass, campaigns)
with a session advisory lock:

- a listener thread holds its own connection in `LISTEN backroom_hq` and hands what arrives to the
  local signals (the feed's wake-up goes to the event loop, thread-safe);
- a publisher thread sends what this worker's signals raised, coalesced: a hundred feed wake-ups
  raised while one NOTIFY was on its way leave as one;
- the leader lock (`pg_try_advisory_lock`) sits on the publisher's connection; a worker that dies
  drops its connection and with it the lock, and another worker takes it within a second.

Messages are small JSON objects `{"w": <pid of the sender>, "k": kind, ...}`; a worker ignores its own.
NOTIFY payloads are under 8,000 bytes: long member lists are split.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "backroom_hq"
LEADER_LOCK = 0x4261636B  # "Back": the advisory lock key of the timers' leader
_PAYLOAD_MAX = 7000


def _chunks(items: list[str], kind: str, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    part: list[str] = []
    size = 0
    for item in items:
        if part and size + len(item) + 4 > _PAYLOAD_MAX:
            out.append({"k": kind, "ids": part})
            part, size = [], 0
        part.append(item)
        size += len(item) + 4
    if part or extra:
        out.append({"k": kind, "ids": part, **(extra or {})})
    return out


class PgBus:
    """LISTEN/NOTIFY between HQ's workers, and the timers' leader. Handlers are called on the listener
    thread: `on_feed()`, `on_release(member_ids)`, `on_forget(store_ids)`, `on_escrow(message)`."""

    def __init__(self, url: str, *, on_feed: Callable[[], None], on_release: Callable[[list[str]], None],
                 on_forget: Callable[[list[str]], None], on_escrow: Callable[[dict[str, Any]], None]) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.me = os.getpid()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "feed": lambda m: on_feed(),
            "release": lambda m: on_release([str(x) for x in m.get("ids", [])]),
            "forget": lambda m: on_forget([str(x) for x in m.get("ids", [])]),
            "escrow": on_escrow,
        }
        self._cond = threading.Condition()  # the outgoing queue
        self._conn_lock = threading.Lock()  # the send connection (NOTIFYs and the leader lock)
        self._feed_due = False
        self._out: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.leader = False
        self.sent = 0  # NOTIFYs sent, received (for the bench's and tests' curiosity)
        self.received = 0
        self._listen_conn = self._listen()  # fail at start, not later
        self._send_conn = psycopg.connect(url, autocommit=True)
        self._try_lead()
        self._threads = [threading.Thread(target=self._listen_loop, name="hq-bus-listen", daemon=True),
                         threading.Thread(target=self._publish_loop, name="hq-bus-publish", daemon=True)]
        for thread in self._threads:
            thread.start()

    # -- sending (any thread) --------------------------------------------------------------------------

    def feed(self) -> None:
        with self._cond:
            self._feed_due = True
            self._cond.notify()

    def release(self, member_ids: Iterable[str]) -> None:
        self._post(_chunks(sorted(set(member_ids)), "release"))

    def forget(self, store_id: str) -> None:
        self._post([{"k": "forget", "ids": [store_id]}])

    def escrow(self, shopped: set[tuple[str, str]], sweep: bool, busy: set[str]) -> None:
        """A follower's escrow events for the leader's policy timer (and who its authorisations wait on)."""
        pairs = [f"{m}\t{s}" for m, s in sorted(shopped)]
        messages = _chunks(pairs, "escrow", {"sweep": sweep, "busy": sorted(busy)[:200]})
        self._post(messages)

    def _post(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        with self._cond:
            self._out.extend(messages)
            self._cond.notify()

    # -- threads ---------------------------------------------------------------------------------------

    def _listen(self) -> Any:
        conn = self._psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for note in self._listen_conn.notifies(timeout=1.0):
                    self._dispatch(note.payload)
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 -- a dropped connection: listen again, and wake everyone once
                if self._stop.is_set():
                    return
                log.warning("HQ bus: listener connection lost; reconnecting", exc_info=True)
                time.sleep(0.5)
                try:
                    self._listen_conn.close()
                    self._listen_conn = self._listen()
                except Exception:  # noqa: BLE001
                    continue
                self._handlers["feed"]({})  # whatever was said while deaf: the feed waiters look again
            if not self.leader:
                self._try_lead()

    def _dispatch(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("w") == self.me:
            return
        handler = self._handlers.get(str(message.get("k")))
        if handler is None:
            return
        self.received += 1
        try:
            handler(message)
        except Exception:  # noqa: BLE001 -- one bad message must not stop the listener
            log.exception("HQ bus: handling %s failed", message.get("k"))

    def _publish_loop(self) -> None:
        while True:
            with self._cond:
                while not self._feed_due and not self._out and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                out, self._out = self._out, []
                if self._feed_due:
                    out.append({"k": "feed"})
                    self._feed_due = False
            try:
                with self._conn_lock:  # the send connection is shared with the leader lock's attempts
                    for message in out:
                        self._send_conn.execute("SELECT pg_notify(%s, %s)",
                                                (CHANNEL, json.dumps({"w": self.me, **message}, separators=(",", ":"))))
                        self.sent += 1
            except Exception:  # noqa: BLE001 -- reconnect; the lock went with the connection
                log.warning("HQ bus: could not notify; reconnecting", exc_info=True)
                self._reconnect_sender()

    def _reconnect_sender(self) -> None:
        with self._conn_lock:
            self.leader = False
            try:
                self._send_conn.close()
            except Exception:  # noqa: BLE001
                pass
            try:
                self._send_conn = self._psycopg.connect(self.url, autocommit=True)
            except Exception:  # noqa: BLE001 -- the database is away; the next send tries again
                time.sleep(0.5)

    def _try_lead(self) -> None:
        with self._conn_lock:
            try:
                row = self._send_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            except Exception:  # noqa: BLE001
                log.warning("HQ bus: leader lock attempt failed", exc_info=True)
                return
            took = bool(row and row[0])
        if took:
            log.info("HQ worker %d runs the timers", self.me)
        self.leader = took

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=3)
        for conn in (self._listen_conn, self._send_conn):
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
