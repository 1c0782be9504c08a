"""The check `backroom serve` makes before it opens anything: `PRAGMA quick_check` of the hub database.

A damaged database must not be written to (a write could spread the damage, and every sale after it
would sit on top of it), so the hub refuses to start: it prints what is wrong and the newest verified
backup, and exits with `EXIT_DAMAGED` (78, EX_CONFIG). The systemd unit lists 78 in
`RestartPreventExitStatus=`, so the box does not restart the hub in a loop; someone restores the
backup (`backroom restore FILE`) and starts it again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config import HubConfig

if TYPE_CHECKING:  # the backup module (tarfile and the manifest types) only when the database is damaged
    from edge.storage.backup import Manifest

EXIT_DAMAGED = 78  # EX_CONFIG from sysexits.h: do not restart, a person must act


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


def check_at_start(config: HubConfig) -> str | None:
    """The refusal message when the hub database is damaged; None when it is fine or does not exist yet."""
    if not config.db_path.exists():
        return None
    problem = quick_check(config.db_path)
    return None if problem is None else damaged_message(config, problem)
