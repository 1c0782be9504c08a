"""systemd notification (edge/appliance/sdnotify.py, liveness.py): a hung SQLite writer stops the watchdog
heartbeat while the event loop itself still runs, and READY=1/STOPPING=1 wait for a full queue instead of
being dropped."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from edge.appliance import liveness, sdnotify
from edge.storage.db import Database


def _wait(pred, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(tmp_path / "hub.sqlite3")
    yield database
    database.close()


def _hang(db: Database) -> threading.Event:
    """A write that holds the writer thread until the returned event is set (a stand-in for an fsync that
    never returns)."""
    release = threading.Event()
    entered = threading.Event()

    def stuck(conn):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(30)

    db.submit(stuck)
    assert entered.wait(10)
    return release


def test_a_probe_counts_as_stalled_only_while_the_writer_holds_it_past_the_limit(db: Database) -> None:
    probe = liveness.WriterProbe(db, stall_s=0.3)
    probe.poke()
    _wait(lambda: probe.stalled_for() == 0.0)  # an idle writer takes the probe at once
    assert probe.alive()

    release = _hang(db)
    probe.poke()
    assert probe.alive()  # queued behind the write, not yet past the limit
    _wait(lambda: probe.stalled_for() >= 0.3)
    assert not probe.alive()
    probe.poke()  # still outstanding: no second probe piles up
    assert probe.stalled_for() >= 0.3

    release.set()
    _wait(lambda: probe.stalled_for() == 0.0)
    assert probe.alive()
    row = db.reader().execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert row[0] > 0  # the probe wrote nothing, and the database is as it was


def test_a_refused_probe_is_not_a_stall(tmp_path: Path, db: Database) -> None:
    import sqlite3

    other = sqlite3.connect(str(db.path), timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: the writer's BEGIN fails (busy)
    probe = liveness.WriterProbe(db, stall_s=60)
    try:
        probe.poke()
        _wait(lambda: probe.stalled_for() == 0.0, seconds=20)  # busy_timeout is 5 s; then the probe is answered
        assert probe.alive()
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_the_watchdog_heartbeat_stops_while_the_writer_hangs_and_resumes(
        tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    probe = liveness.WriterProbe(db, stall_s=0.2)

    def messages_until(text: str) -> list[str]:
        seen: list[str] = []
        while not any(text in m for m in seen):
            seen.append(receiver.recv(4096).decode())
        return seen

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        beat = asyncio.get_running_loop().create_task(sdnotify.heartbeat(0.02, probe))
        try:
            healthy = await asyncio.to_thread(messages_until, "WATCHDOG=1")
            release = await asyncio.to_thread(_hang, db)
            probe.poke()
            hung = await asyncio.to_thread(messages_until, "has taken no write")
            # While hung, several beats pass and none is a WATCHDOG=1.
            quiet = [await asyncio.to_thread(lambda: receiver.recv(4096).decode()) for _ in range(5)]
            release.set()
            await asyncio.to_thread(_wait, lambda: probe.stalled_for() == 0.0)
            back = await asyncio.to_thread(messages_until, "WATCHDOG=1")
            return healthy, hung + quiet, back
        finally:
            beat.cancel()

    healthy, hung, back = asyncio.run(scenario())
    receiver.close()
    assert healthy[-1] == "WATCHDOG=1"
    stalled = hung[hung.index(next(m for m in hung if "has taken no write" in m)):]
    assert stalled and all("WATCHDOG=1" not in m for m in stalled)
    assert "STATUS=the database writer takes work again" in back
    assert back[-1] == "WATCHDOG=1"


def test_stopping_is_not_lost_when_the_managers_queue_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    sent = 0
    while sdnotify.notify("WATCHDOG=1", quiet=True):  # a manager that has not read for a while
        sent += 1
        assert sent < 10_000
    assert sdnotify.notify("WATCHDOG=1", quiet=True) is False  # a heartbeat is dropped, not waited for

    def drain_later() -> list[str]:
        time.sleep(0.3)
        return [receiver.recv(4096).decode() for _ in range(sent + 1)]

    async def scenario() -> tuple[bool, list[str]]:
        reader = asyncio.create_task(asyncio.to_thread(drain_later))
        ok = await sdnotify.notify_surely("STOPPING=1", wait_s=5)
        return ok, await reader

    ok, received = asyncio.run(scenario())
    receiver.close()
    assert ok
    assert received[-1] == "STOPPING=1" and received.count("WATCHDOG=1") == sent
