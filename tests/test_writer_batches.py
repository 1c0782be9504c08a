"""The writer's group commit (edge/storage/db.py): a batch runs without savepoints when it is one write
or when all its writes are replayable, and with a savepoint per write otherwise. Whichever way, a write
whose caller got a result is committed once, one that raised leaves nothing, and a write that is not
replayable runs exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.storage.db import Database


class Refused(Exception):
    pass


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "hub.sqlite3")
    database.write_sync(lambda c: c.execute("CREATE TABLE t (name TEXT PRIMARY KEY, n INTEGER NOT NULL)"))
    try:
        yield database
    finally:
        database.close()


def _rows(db: Database) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in db.reader().execute("SELECT name, n FROM t")}


def _batch(db: Database, writes: list[tuple[Callable[[Any], Any], bool]]) -> list[Any]:
    """Submit `writes` (fn, replayable) while the writer is held, so they are taken as one batch."""
    gate, holding = threading.Event(), threading.Event()

    def hold(_: Any) -> None:
        holding.set()
        gate.wait(10)

    db.submit(hold)
    assert holding.wait(10)
    futures = [db.submit(fn, replayable=replayable) for fn, replayable in writes]
    gate.set()
    return [f.exception(timeout=30) or f.result(timeout=30) for f in futures]


def _insert(name: str, calls: list[str], *, fail: bool = False) -> Callable[[Any], int]:
    def write(conn: Any) -> int:
        calls.append(name)
        conn.execute("INSERT INTO t (name, n) VALUES (?, 1)", (name,))
        conn.execute("UPDATE t SET n = n + 1 WHERE name = 'total'")
        if fail:
            raise Refused(name)
        return 1
    return write


def test_replayable_writes_around_a_refused_one_commit_once_and_the_refused_leaves_nothing(db: Database) -> None:
    db.write_sync(lambda c: c.execute("INSERT INTO t VALUES ('total', 0)"))
    calls: list[str] = []
    out = _batch(db, [(_insert("a", calls), True), (_insert("bad", calls, fail=True), True),
                      (_insert("c", calls), True)])
    assert out[0] == 1 and isinstance(out[1], Refused) and out[2] == 1, out
    assert _rows(db) == {"total": 2, "a": 1, "c": 1}
    # without savepoints first (a, bad: rolled back), then again with them (a, bad, c)
    assert calls == ["a", "bad", "a", "bad", "c"]


def test_a_batch_of_replayable_writes_that_all_succeed_runs_each_once(db: Database) -> None:
    calls: list[str] = []
    assert _batch(db, [(_insert(n, calls), True) for n in ("a", "b", "c")]) == [1, 1, 1]
    assert calls == ["a", "b", "c"] and _rows(db) == {"a": 1, "b": 1, "c": 1}


def test_a_write_that_is_not_replayable_runs_once_even_when_its_batch_has_a_refusal(db: Database) -> None:
    calls: list[str] = []
    out = _batch(db, [(_insert("a", calls), True), (_insert("once", calls), False),
                      (_insert("bad", calls, fail=True), True), (_insert("d", calls), True)])
    assert out[:2] == [1, 1] and isinstance(out[2], Refused) and out[3] == 1, out
    assert calls == ["a", "once", "bad", "d"]
    assert _rows(db) == {"a": 1, "once": 1, "d": 1}


def test_a_lone_write_that_raises_leaves_nothing_and_the_writer_goes_on(db: Database) -> None:
    calls: list[str] = []
    with pytest.raises(Refused):
        db.write_sync(_insert("alone", calls, fail=True))
    assert calls == ["alone"] and _rows(db) == {}
    with pytest.raises(Exception, match="UNIQUE"):  # an SQL error: the same
        db.write_sync(lambda c: c.executemany("INSERT INTO t VALUES (?, 1)", [("x",), ("x",)]))
    assert _rows(db) == {}
    assert db.write_sync(_insert("after", calls)) == 1 and _rows(db) == {"after": 1}


def test_a_cancelled_write_is_not_run(db: Database) -> None:
    gate, holding = threading.Event(), threading.Event()
    db.submit(lambda _: (holding.set(), gate.wait(10)))
    assert holding.wait(10)
    calls: list[str] = []
    first = db.submit(_insert("first", calls), replayable=True)
    cancelled = db.submit(_insert("cancelled", calls), replayable=True)
    assert cancelled.cancel()
    gate.set()
    assert first.result(timeout=30) == 1
    assert calls == ["first"] and _rows(db) == {"first": 1}
