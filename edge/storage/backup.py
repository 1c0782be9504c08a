"""Online backup of the hub database (SQLite's backup API: consistent while tills keep selling),
into `<data>/backups/`, keeping the newest few."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

PAGES_PER_STEP = 512


def backup(source: Path, dest_dir: Path, stamp: str, progress: Callable[[int, int], None] | None = None,
           keep: int = 7) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"backroom-{stamp}.db"
    partial = final.with_suffix(".db.part")
    src = sqlite3.connect(source)
    dst = sqlite3.connect(partial)
    try:
        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=PAGES_PER_STEP, progress=step)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    partial.replace(final)  # a backup file exists only once it is whole
    for old in sorted(dest_dir.glob("backroom-*.db"))[:-keep]:
        old.unlink()
    return final
