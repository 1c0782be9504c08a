"""Setting up a box that has no store manager yet: a one-time setup code, printed on the status ticket.

A box installed for a real store (`backroom install --store ID`, not the demo) starts with no accounts,
so nobody could log in at the tablet to pair it with HQ or add the staff. While no active store manager
(or higher) exists, the hub keeps a setup code in `<data>/setup-code` (mode 0600): eight characters of
an alphabet without look-alikes (no 0/O, 1/I), shown as `K7QM-2XPD`. The code is printed on the status
ticket the box prints when it boots (edge/appliance/first_boot.py), and `backroom setup-code` prints it
to someone with a shell on the box. Whoever holds it is at the box: at `/ui/setup` on the tablet (or
`POST /api/v1/setup`) they choose the first store manager's user name and password, and are logged in.
The code then is gone; once a manager exists, setup answers 409 and staff are added by that manager.

Wrong codes are limited for the whole hub, not per address (a guesser can change address): after
`MAX_FAILURES` in `WINDOW_S` the setup refuses every attempt (429) until the window has passed, also
across a restart of the hub (the failures are kept in `<data>/setup-failures`). With 40
bits of code that leaves a guesser nothing. The code is never logged.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from edge.auth import users
from edge.auth.users import Caller, DisplayName, Password, UserCreate, Username
from edge.errors import ApiError
from edge.storage.durable import write_atomic

CODE_FILE = "setup-code"
FAILURES_FILE = "setup-failures"
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
LENGTH = 8
MAX_FAILURES = 5
WINDOW_S = 600.0
MANAGER_ROLES = ("store_manager", "region_manager", "hq_admin")
SETUP_ACTOR = Caller(user_id="setup", role="hq_admin", till_id=None)  # who the audit names for the first account


class SetupStatus(msgspec.Struct, frozen=True):
    needed: bool  # no active store manager yet: `POST /api/v1/setup` with the code makes the first one


class SetupRequest(msgspec.Struct, frozen=True):
    """The setup code from the status ticket (dashes and case do not matter) and the first manager's login."""

    code: Annotated[str, Meta(min_length=1, max_length=32)]
    username: Username
    display_name: DisplayName
    password: Password


class SetupDone(msgspec.Struct, frozen=True):
    user_id: str
    username: str
    role: str
    token: str  # logged in already, as `POST /api/v1/auth/login` would answer
    expires_at: str


def needs_setup(conn: sqlite3.Connection) -> bool:
    """No active account that can run the store (a store manager or above)."""
    placeholders = ", ".join("?" for _ in MANAGER_ROLES)
    row = conn.execute(f"SELECT 1 FROM users WHERE active = 1 AND role IN ({placeholders}) LIMIT 1",
                       MANAGER_ROLES).fetchone()
    return row is None


def normalize(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def shown(code: str) -> str:
    """How the code is printed and displayed: two groups of four."""
    return f"{code[:4]}-{code[4:]}"


def read_code(data_dir: Path) -> str | None:
    try:
        code = normalize((data_dir / CODE_FILE).read_text("ascii"))
    except (OSError, UnicodeDecodeError):
        return None
    return code if len(code) == LENGTH and all(ch in ALPHABET for ch in code) else None


def ensure_code(data_dir: Path) -> str:
    """The setup code, made now if there is none (two processes racing both end with the same one)."""
    found = read_code(data_dir)
    if found is not None:
        return found
    code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    path = data_dir / CODE_FILE
    temp = path.with_name(f".{CODE_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(code + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if os.geteuid() == 0:  # `backroom setup-code` run as root: the hub's own user must read it
        owner = data_dir.stat()
        os.chown(temp, owner.st_uid, owner.st_gid)
    try:
        os.link(temp, path)  # only one writer wins; a loser reads the winner's code
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return read_code(data_dir) or code


def clear_code(data_dir: Path) -> None:
    (data_dir / CODE_FILE).unlink(missing_ok=True)
    (data_dir / FAILURES_FILE).unlink(missing_ok=True)


def code_if_needed(conn: sqlite3.Connection, data_dir: Path) -> str | None:
    """The code to show (the ticket, `backroom setup-code`) while the box needs setting up; else None,
    and a leftover code file is removed."""
    if not needs_setup(conn):
        clear_code(data_dir)
        return None
    return ensure_code(data_dir)


class Attempts:
    """Wrong setup codes in the last WINDOW_S, for the whole hub. Kept in `<data>/setup-failures` (wall-clock
    times, one a line), so restarting the hub does not give a guesser a fresh allowance; a time further than
    WINDOW_S from now either way (the clock was set) no longer counts."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self._path = data_dir / FAILURES_FILE if data_dir is not None else None
        self._failures: deque[float] = deque(sorted(self._load()))
        self._lock = threading.Lock()

    def _load(self) -> list[float]:
        if self._path is None:
            return []
        try:
            text = self._path.read_text("ascii")
        except (OSError, UnicodeDecodeError):
            return []
        found = []
        for line in text.split():
            try:
                found.append(float(line))
            except ValueError:
                continue
        return found[-MAX_FAILURES:]

    def _trim(self, now: float) -> None:
        kept = [t for t in self._failures if now - WINDOW_S < t <= now + WINDOW_S]
        if len(kept) != len(self._failures):
            self._failures = deque(kept)

    def check(self) -> None:
        now = time.time()
        with self._lock:
            self._trim(now)
            if len(self._failures) >= MAX_FAILURES:
                retry = max(1, int(min(self._failures) + WINDOW_S - now) + 1)
                raise ApiError(429, "locked_out", f"too many wrong setup codes; try again in {retry} s",
                               retry_after_s=retry)

    def failed(self) -> None:
        with self._lock:
            self._failures.append(time.time())
            while len(self._failures) > MAX_FAILURES:
                self._failures.popleft()
            if self._path is not None:
                try:
                    write_atomic(self._path, "".join(f"{t:.3f}\n" for t in self._failures).encode("ascii"))
                except OSError:  # a full disk: the count still holds in memory until a restart
                    pass


def check_code(data_dir: Path, given: str, attempts: Attempts) -> None:
    """Refuse unless `given` is the box's setup code (429 while locked out, 403 for a wrong code)."""
    attempts.check()
    code = read_code(data_dir)
    if code is None or not hmac.compare_digest(normalize(given).encode(), code.encode()):
        attempts.failed()
        raise ApiError(403, "bad_setup_code", "that is not this box's setup code (it is on the status ticket, "
                                              "or `backroom setup-code` on the box)")


def create_first_manager(conn: sqlite3.Connection, user_id: str, req: SetupRequest, hashed: str,
                         at: str) -> None:
    """In the writer: the first store manager, only while none exists. The caller clears the code once
    this has committed."""
    if not needs_setup(conn):
        raise ApiError(409, "already_set_up", "this box has a store manager; staff are added by a manager")
    create = UserCreate(username=req.username, display_name=req.display_name, role="store_manager",
                        password=req.password)
    if not users.create_user(conn, user_id, create, "password", hashed, SETUP_ACTOR, at):
        raise ApiError(409, "already_set_up", "this box has just been set up")
