"""The check `backroom serve` makes before it opens anything: `PRAGMA quick_check` of the hub database.

A damaged database must not be written to (a write could spread the damage, and every sale after it
would sit on top of it), so the hub refuses to start: it prints what is wrong and the newest verified
backup, and exits with `EXIT_DAMAGED` (78, EX_CONFIG). The systemd unit lists 78 in
`RestartPreventExitStatus=`, so the box does not restart the hub in a loop; someone restores the
backup (`backroom restore FILE`) and starts it again.

The check reads every page, so its time grows with the database (a year of a busy store is a few hundred
MB to a GB; on an SD card, tens of seconds). It is skipped when the hub last stopped cleanly and nothing
has touched the file since: on the way out `serve` checkpoints the WAL into the database and records the
file's identity (`clean-close.json`: inode, size, mtime); at start the record is read and removed before
anything opens the database, so a hub that then dies without stopping cleanly (power loss, `kill -9`) is
checked at its next start. A restore, a seed or any other writer changes the file's mtime and size, so
the record no longer matches. Damage that appears on a closed file (bit rot) is found by the nightly
backup, which runs `PRAGMA integrity_check` on its copy, and by `backroom doctor`. Under systemd a long
check extends the unit's start timeout as it goes (`EXTEND_TIMEOUT_USEC`), so it is not killed mid-check.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from edge.config import HubConfig
from edge.storage.durable import fsync_dir, write_atomic

if TYPE_CHECKING:  # the backup module (tarfile and the manifest types) only when the database is damaged
    from edge.storage.backup import Manifest

EXIT_DAMAGED = 78  # EX_CONFIG from sysexits.h: do not restart, a person must act
CLEAN_CLOSE = "clean-close.json"
EXTEND_EVERY_S = 10.0  # under systemd, how often a running check asks for more start-up time
EXTEND_BY_US = 30_000_000


class CleanClose(msgspec.Struct, frozen=True):
    """The database file as the hub left it when it stopped cleanly."""

    inode: int
    size: int
    mtime_ns: int
    closed_at: float


def _identity(db_path: Path, closed_at: float = 0.0) -> CleanClose:
    st = db_path.stat()
    return CleanClose(inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns, closed_at=closed_at)


def _wal_empty(db_path: Path) -> bool:
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        return wal.stat().st_size == 0
    except FileNotFoundError:
        return True


def record_clean_close(config: HubConfig) -> bool:
    """After the hub's last write (the app has shut down): move the WAL into the database and record the
    file as it stands. False (nothing recorded: the next start checks) when the WAL could not be emptied."""
    db_path = config.db_path
    if not db_path.exists():
        return False
    try:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    if busy or not _wal_empty(db_path):
        return False
    try:
        write_atomic(config.data_dir / CLEAN_CLOSE, msgspec.json.encode(_identity(db_path, time.time())))
    except OSError:
        return False
    return True


def closed_cleanly(config: HubConfig) -> bool:
    """Whether the database is exactly as a clean stop left it. The record is removed either way, before
    the hub opens the file: only the next clean stop writes it again."""
    record = config.data_dir / CLEAN_CLOSE
    try:
        raw = record.read_bytes()
    except OSError:
        return False
    try:
        record.unlink()
        fsync_dir(config.data_dir)
    except OSError:
        return False  # a record that cannot be removed could outlive a crash: do not trust it
    try:
        left = msgspec.json.decode(raw, type=CleanClose)
        now = _identity(config.db_path)
    except (msgspec.DecodeError, msgspec.ValidationError, OSError):
        return False
    same = (left.inode, left.size, left.mtime_ns) == (now.inode, now.size, now.mtime_ns)
    return same and _wal_empty(config.db_path)


def quick_check(db_path: Path) -> str | None:
    """None when the database passes SQLite's quick check; otherwise what is wrong."""
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if rows == ["ok"] else "; ".join(rows)


def backup_dirs(config: HubConfig) -> list[Path]:
    """Where backups may be: the configured directory, the tablet's `<data>/backups`, and a `backups`
    directory beside the data directory (the installed layout, /var/lib/backroom/backups)."""
    dirs = [config.backups_dir, config.data_dir / "backups", config.data_dir.resolve().parent / "backups"]
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def last_good_backup(config: HubConfig) -> tuple[Path, Manifest] | None:
    from edge.storage.backup import newest_good

    return newest_good(backup_dirs(config))


def damaged_message(config: HubConfig, problem: str) -> str:
    found = last_good_backup(config)
    lines = [f"backroom: the hub database {config.db_path} is damaged: {problem}",
             "backroom: the hub will not start on it (exit code 78); nothing was written."]
    if found is None:
        searched = ", ".join(str(d) for d in backup_dirs(config))
        lines.append(f"backroom: no verified backup was found (looked in {searched}).")
    else:
        archive, manifest = found
        journal = f", journal {manifest.journal.count} records" if manifest.journal else ""
        lines.append(f"backroom: last good backup: {archive} (taken {manifest.created_at}{journal})")
        lines.append(f"backroom: restore it with: backroom restore {archive} --data {config.data_dir}")
    return "\n".join(lines)


def _checked_with_progress(db_path: Path) -> str | None:
    """`quick_check` on a thread; meanwhile, under systemd, the start timeout is extended as it runs."""
    from edge.appliance.sdnotify import notify

    found: list[str | None] = []
    worker = threading.Thread(target=lambda: found.append(quick_check(db_path)), name="start-check", daemon=True)
    started = time.monotonic()
    worker.start()
    while True:
        worker.join(EXTEND_EVERY_S)
        if not worker.is_alive():
            return found[0] if found else "the check stopped without an answer"
        elapsed = time.monotonic() - started
        notify(f"EXTEND_TIMEOUT_USEC={EXTEND_BY_US}\nSTATUS=checking the database ({elapsed:.0f} s)")


def check_at_start(config: HubConfig) -> str | None:
    """The refusal message when the hub database is damaged; None when it is fine or does not exist yet."""
    if not config.db_path.exists():
        (config.data_dir / CLEAN_CLOSE).unlink(missing_ok=True)
        return None
    if closed_cleanly(config):
        print("backroom: the database was closed cleanly and not changed since; start-up check skipped",
              file=sys.stderr, flush=True)
        return None
    started = time.monotonic()
    problem = _checked_with_progress(config.db_path)
    size_mb = config.db_path.stat().st_size / 1e6
    print(f"backroom: start-up check of the database ({size_mb:.1f} MB) took {time.monotonic() - started:.2f} s",
          file=sys.stderr, flush=True)
    return None if problem is None else damaged_message(config, problem)
