"""HQ's database: one interface over SQLite (default) and PostgreSQL (psycopg 3).

The SQL is written once with `?` placeholders and portable syntax (ON CONFLICT, RETURNING); the
PostgreSQL adapter turns placeholders into `%s` and the schema's type words into its own.

- SQLite: one write connection behind a lock (`BEGIN IMMEDIATE`, WAL, synchronous=FULL), a read
  connection per thread. Writes are serialised, which is what SQLite does anyway.
- PostgreSQL: a small pool of connections; each write is one transaction; a batch first locks its
  store's row (`FOR UPDATE`) and the members it touches, so batches of different stores run in
  parallel and the same store's batches one after another.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import msgspec

Row = tuple[Any, ...]
Query = tuple[str, Sequence[Any], bool | None]  # for Tx.reads: SQL, arguments, prepare


class Tx:
    """A transaction (or a read snapshot): execute, executemany, fetch. `key_path` is the database's
    personal-data key file (hq_sync/server/service/pii.py)."""

    def __init__(self, cur: Any, dialect: str, key_path: Path) -> None:
        self._cur = cur
        self.dialect = dialect
        self.key_path = key_path

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _execute(self, sql: str, args: Sequence[Any], prepare: bool | None) -> None:
        if prepare is None or self.dialect != "postgresql":
            self._cur.execute(self._sql(sql), args)
        else:
            self._cur.execute(self._sql(sql), args, prepare=prepare)

    def all(self, sql: str, args: Sequence[Any] = (), *, prepare: bool | None = None) -> list[Row]:
        """`prepare=False`: plan this query for its arguments each time (PostgreSQL). A prepared statement
        may settle on a generic plan made while the table was small (a sequential scan) and keep it."""
        self._execute(sql, args, prepare)
        return [tuple(r) for r in self._cur.fetchall()]

    def one(self, sql: str, args: Sequence[Any] = (), *, prepare: bool | None = None) -> Row | None:
        self._execute(sql, args, prepare)
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def reads(self, queries: Sequence[Query]) -> list[list[Row]]:
        """Several statements in order, each `(sql, args, prepare)`, and every one's rows. PostgreSQL: sent
        together in a pipeline (one round trip; each statement on a cursor of its own, so every result is
        kept). A statement without a result (a `SET LOCAL`) gives []. SQLite: one after the other."""
        if self.dialect != "postgresql":
            out = []
            for sql, args, _ in queries:
                self._cur.execute(sql, args)
                out.append([tuple(r) for r in self._cur.fetchall()] if self._cur.description is not None else [])
            return out
        conn = self._cur.connection
        with conn.pipeline() as pipeline:
            cursors = []
            for sql, args, prepare in queries:
                cur = conn.cursor()
                cur.execute(self._sql(sql), args, prepare=prepare)
                cursors.append(cur)
            pipeline.sync()  # sent, and every answer read: each cursor holds its own result
        return [[tuple(r) for r in cur.fetchall()] if cur.description is not None else [] for cur in cursors]

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._cur.execute(self._sql(sql), args)
        return int(self._cur.rowcount)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(self._sql(sql), rows)

    def copy(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Plain inserts of many rows: COPY on PostgreSQL (several times faster than INSERTs), executemany
        on SQLite."""
        if not rows:
            return
        if self.dialect == "postgresql":
            with self._cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(rows[0]))
        self._cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
        """Many rows in one statement, typically an upsert (`tail`: `ON CONFLICT ...`; with DO UPDATE each key
        at most once in `rows`). `columns` names each column with its type (`"store_id text, qty bigint"`).
        PostgreSQL: the rows go as one JSON array of arrays, `INSERT ... SELECT (r->>0)::text, ... FROM
        jsonb_array_elements(...)`: one round trip, one statement text (prepared once) whatever the number
        of rows, and it may go in a `pipeline()` (a COPY may not). Encoding is msgspec's, in C: a few µs a
        row, where psycopg's array dumpers took 10-30 µs. Columns of type bytea go as arrays (`unnest`).
        SQLite: executemany. Plain inserts of many rows are cheaper still as `copy`."""
        if not rows:
            return
        named = [c.split() for c in columns.split(",")]
        names = ", ".join(n for n, _ in named)
        if self.dialect == "postgresql":
            if any(t == "bytea" for _, t in named):
                arrays = ", ".join(f"%b::{t}[]" for _, t in named)
                self._cur.execute(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}",
                                  [list(col) for col in zip(*rows, strict=True)])
                return
            values = ", ".join(f"(r->>{i})::{t}" for i, (_, t) in enumerate(named))
            self._cur.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM jsonb_array_elements(%s::jsonb) r "
                              f"{tail}", (_json_encode(rows).decode(),))
            return
        marks = ", ".join("?" * len(named))
        self._cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks}) {tail}", rows)

    def pipeline(self) -> Any:
        """PostgreSQL: the statements run inside are sent without waiting for each answer (one round trip
        at the end; an error raises there, failing the transaction). Only statements whose results are
        not read inside. SQLite: nothing to save."""
        if self.dialect == "postgresql":
            return self._cur.connection.pipeline()
        return nullcontext()

    def lock(self, table: str, key_column: str, keys: Sequence[str]) -> None:
        """Row locks until commit (PostgreSQL); SQLite's write lock already covers the whole database."""
        if self.dialect == "postgresql" and keys:
            self._cur.execute(f"SELECT 1 FROM {table} WHERE {key_column} = ANY(%s) ORDER BY {key_column} FOR UPDATE",
                              (list(keys),))
            self._cur.fetchall()


_json_encode = msgspec.json.Encoder().encode

KEY_FILE_ENV = "BACKROOM_HQ_KEY_FILE"


class HqDb:
    dialect: str
    key_path: Path  # the personal-data keys: never in the database (docs/privacy.md)

    @contextmanager
    def write(self, pipeline: bool = False) -> Iterator[Tx]:  # pragma: no cover - abstract
        """A transaction. `pipeline` (PostgreSQL): statements whose results are not read yet are sent
        together, with BEGIN before them and COMMIT after: fewer round trips for a short hot-path
        transaction (an authorisation). A statement's `Tx.run` row count is then not known."""
        raise NotImplementedError
        yield

    @contextmanager
    def read(self) -> Iterator[Tx]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    @contextmanager
    def statement(self) -> Iterator[Tx]:
        """For reads that are one statement each (each is its own snapshot): PostgreSQL runs them without
        BEGIN and COMMIT, one round trip instead of three; elsewhere a `read()`. A hot read that needs two
        statements to agree must use `read()`."""
        with self.read() as tx:
            yield tx

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compact(self, tables: Sequence[str]) -> None:  # pragma: no cover - abstract
        """Rewrite these tables so no freed page keeps removed content (personal data)."""
        raise NotImplementedError

    def type_words(self, ddl: str) -> str:
        return ddl


class SqliteDb(HqDb):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.key_path = Path(os.environ.get(KEY_FILE_ENV) or path.with_name(path.stem + ".pii.key"))
        self._lock = threading.Lock()
        self._writer = self._connect()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = [self._writer]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA secure_delete = ON")  # an erased member's sealed data leaves no free page behind
        return conn

    @contextmanager
    def write(self, pipeline: bool = False) -> Iterator[Tx]:
        with self._lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cur, self.dialect, self.key_path)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            yield Tx(cur, self.dialect, self.key_path)
        finally:
            cur.execute("COMMIT")
            cur.close()

    def compact(self, tables: Sequence[str]) -> None:
        """VACUUM the file and truncate the WAL (SQLite vacuums whole files, not tables)."""
        with self._lock:
            self._writer.execute("VACUUM")
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()


# PostgreSQL's words for the schema's SQLite ones. Text in `/*PG: ...*/` is PostgreSQL's only (a comment to
# SQLite): a monthly partitioned table's PARTITION BY, and the primary key of a table whose SQLite id is its
# rowid (`INTEGER PRIMARY KEY AUTOINCREMENT`) but whose PostgreSQL key leads with its distribution column.
_PG_TYPES = [(re.compile(r"\bBLOB\b"), "BYTEA"),
             (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT /\*PG: (PRIMARY KEY \([^)]*\))\*/"),
              r"BIGINT GENERATED BY DEFAULT AS IDENTITY, \1"),
             (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"),
              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
             (re.compile(r"/\*PG: (PARTITION BY RANGE \(\w+\))\*/"), r"\1")]


class PostgresDb(HqDb):
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 8, name: str = "backroom-hq",
                 on_connect: Callable[[Any], None] | None = None) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.name = name  # the connections' application_name (pg_stat_activity tells the pools apart)
        self._on_connect = on_connect  # e.g. the batch pool lowers its backends' CPU priority (api/scheduling.py)
        # No file of its own: BACKROOM_HQ_KEY_FILE, else one per database under ~/.backroom/.
        named = hashlib.sha256(re.sub(r"//[^@/]*@", "//", url).encode()).hexdigest()[:12]
        self.key_path = Path(os.environ.get(KEY_FILE_ENV) or Path.home() / ".backroom" / f"hq-{named}.pii.key")
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._size = pool_size
        self._made = 0
        self._made_lock = threading.Lock()
        self._all: list[Any] = []
        self._pool.put(self._connect())  # fail at start, not at the first request

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self.url, autocommit=True, application_name=self.name)
        if self._on_connect is not None:
            self._on_connect(conn)
        with self._made_lock:
            self._made += 1
            self._all.append(conn)
        return conn

    def fill(self, warm: Callable[[Tx], None] | None = None) -> None:
        """Open the whole pool now: a request that would open a connection waits tens of milliseconds for it.
        `warm`, if given, runs on every connection of the pool, in a transaction rolled back."""
        while True:
            with self._made_lock:
                if self._made >= self._size:
                    break
            self._pool.put(self._connect())
        if warm is None:
            return
        taken = []
        try:
            while True:
                try:
                    taken.append(self._pool.get_nowait())
                except queue.Empty:
                    break
            for conn in taken:
                with conn.transaction(force_rollback=True), conn.cursor() as cur:
                    warm(Tx(cur, self.dialect, self.key_path))
        finally:
            for conn in taken:
                self._pool.put(conn)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            with self._made_lock:
                can_make = self._made < self._size
            conn = self._connect() if can_make else self._pool.get(timeout=60)
        if conn.closed or conn.broken:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._pool.put(conn)

    @contextmanager
    def write(self, pipeline: bool = False) -> Iterator[Tx]:
        with self._conn() as conn, conn.pipeline() if pipeline else nullcontext(), conn.transaction(), \
                conn.cursor() as cur:
            yield Tx(cur, self.dialect, self.key_path)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            yield Tx(cur, self.dialect, self.key_path)

    @contextmanager
    def statement(self) -> Iterator[Tx]:
        with self._conn() as conn, conn.cursor() as cur:  # autocommit: each statement its own transaction
            yield Tx(cur, self.dialect, self.key_path)

    def compact(self, tables: Sequence[str]) -> None:
        """VACUUM FULL rewrites the tables; old row versions go with the old files (the WAL segments
        that saw them are recycled by PostgreSQL's checkpoints)."""
        with self._conn() as conn:
            for table in tables:
                conn.execute(f"VACUUM FULL {table}")
            conn.execute("CHECKPOINT")

    def type_words(self, ddl: str) -> str:
        for pattern, word in _PG_TYPES:
            ddl = pattern.sub(word, ddl)
        return ddl

    def close(self) -> None:
        with self._made_lock:
            for conn in self._all:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 -- closing a broken connection may raise anything
                    pass
            self._all.clear()


def open_db(url: str) -> HqDb:
    """`postgresql://…` (or `postgres://…`) for PostgreSQL; anything else is a SQLite file path
    (`sqlite:///path` also works)."""
    if url.startswith(("postgresql://", "postgres://")):
        # 20 a process for feed reads and the rest: batches and authorisations have pools of their own (resources.py)
        return PostgresDb(url, int(os.environ.get("BACKROOM_HQ_PG_POOL") or 20))
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") - 1:]
    return SqliteDb(Path(url))
