"""The in-process signals of the escrow flow: `ReleaseSignal` wakes an authorisation waiting for other
stores' releases when a batch brings them; `EscrowEvents` tells the policy timer who shopped where. A
leaf: the members service, ingest and the escrow policy all import it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class ReleaseSignal:
    """Per-member version counters behind one condition variable. A waiter reads the version, does its
    transaction, then waits until the version moves (a notify between the two is not lost)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._watchers: dict[str, int] = {}
        # Set when HQ runs as several workers: tells the others (hq_sync/server/api/bus.py)
        self.publish: Callable[[list[str]], None] | None = None

    @contextmanager
    def watch(self, member_id: str) -> Iterator[None]:
        """While inside, releases for this member are counted (and the policy timer leaves them alone)."""
        with self._cond:
            self._watchers[member_id] = self._watchers.get(member_id, 0) + 1
            self._versions.setdefault(member_id, 0)
        try:
            yield
        finally:
            with self._cond:
                left = self._watchers[member_id] - 1
                if left:
                    self._watchers[member_id] = left
                else:
                    del self._watchers[member_id]
                    self._versions.pop(member_id, None)

    def version(self, member_id: str) -> int:
        with self._cond:
            return self._versions.get(member_id, 0)

    def watched(self) -> set[str]:
        with self._cond:
            return set(self._watchers)

    def notify(self, member_ids: Iterable[str]) -> None:
        member_ids = list(member_ids)
        self.notify_local(member_ids)
        if self.publish is not None and member_ids:
            self.publish(member_ids)

    def notify_local(self, member_ids: Iterable[str]) -> None:
        """Releases this worker heard of (its own, or another worker's through the bus)."""
        with self._cond:
            hit = False
            for member_id in member_ids:
                if member_id in self._versions:
                    self._versions[member_id] += 1
                    hit = True
            if hit:
                self._cond.notify_all()

    def wait(self, member_id: str, seen: int, timeout: float) -> bool:
        """Block until the member's version differs from `seen` (True) or `timeout` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._versions.get(member_id, 0) != seen, timeout)


class EscrowEvents:
    """What happened since the policy timer last looked: (member, store) pairs that shopped, and
    whether a store paired (its home members' standing escrow is due)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shopped: set[tuple[str, str]] = set()
        self._sweep = True

    def shopped(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._shopped.update(pairs)

    def sweep_soon(self) -> None:
        with self._lock:
            self._sweep = True

    def take(self) -> tuple[set[tuple[str, str]], bool]:
        with self._lock:
            shopped, sweep = self._shopped, self._sweep
            self._shopped, self._sweep = set(), False
        return shopped, sweep
