"""One hub per data directory: `backroom serve` holds an exclusive flock on `<data>/hub.lock` (with its
pid inside) for as long as it runs; `backroom restore` takes the same lock, so it refuses while a hub
runs and no hub can start in the middle of a restore. The kernel drops the lock when the process dies,
however it dies, so a stale file never blocks anything."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "hub.lock"


class Locked(RuntimeError):
    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"a hub is running on {data_dir} ({who} holds {data_dir / LOCK_FILE})")
        self.pid = pid


class DataLock:
    """The held lock; `release()` (or the process ending) lets it go."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def acquire(data_dir: Path) -> DataLock:
    """Take the data directory's lock or raise `Locked`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Locked(data_dir, _pid_in(path)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return DataLock(fd)
