"""HQ logins: users, password check, bearer tokens, and the principal a token stands for.

Tokens live in `hq_tokens`, so ending a user's logins (a role change, a password reset, a deactivation)
is deleting his rows: the next request with an old token is 401.
"""

from __future__ import annotations

import secrets
import time

from edge.auth.passwords import hash_secret, verify_secret
from hq_sync.server.service.access import Principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb, Tx

TOKEN_TTL_S = 12 * 3600
MAX_FAILURES = 5
LOCK_S = 300


# -- admin logins ---------------------------------------------------------------------------------------------

def add_user(tx: Tx, username: str, password: str, role: str = "hq_admin", regions: tuple[str, ...] = (),
             display_name: str = "", at: str | None = None) -> None:
    """A user (nothing if the name exists), with his regions when he is a region manager."""
    done = tx.run("""INSERT INTO hq_users (username, password_hash, role, display_name, created_at, changed_at)
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING""",
                  (username, hash_secret(password), role, display_name, at, at))
    if done:
        tx.many("INSERT INTO hq_user_regions (username, region) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(username, region) for region in regions])


def login(db: HqDb, username: str, password: str) -> tuple[str, str, int]:
    """A token for a right password of an active user. MAX_FAILURES wrong ones in a row lock the name for
    LOCK_S (429 `locked_out`), as at the hub, so nobody guesses a password through the API or console."""
    now = int(time.time())
    username = username[:64]
    with db.read() as tx:
        row = tx.one("SELECT password_hash, role, active FROM hq_users WHERE username = ?", (username,))
        lock = tx.one("SELECT locked_until FROM hq_login_failures WHERE username = ?", (username,))
    if lock is not None and int(lock[0]) > now:
        raise HqError(429, "locked_out", "too many failed logins; try again in a few minutes")
    if row is None or not verify_secret(password, row[0]) or not int(row[2]):
        with db.write() as tx:
            tx.run("""INSERT INTO hq_login_failures (username, failures, locked_until) VALUES (?, 1, 0)
                      ON CONFLICT (username) DO UPDATE SET failures = hq_login_failures.failures + 1""", (username,))
            tx.run("UPDATE hq_login_failures SET failures = 0, locked_until = ? WHERE username = ? AND failures >= ?",
                   (now + LOCK_S, username, MAX_FAILURES))
        raise HqError(401, "bad_credentials", "unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    expires = now + TOKEN_TTL_S
    with db.write() as tx:
        tx.run("DELETE FROM hq_tokens WHERE expires_at < ?", (now,))
        tx.run("DELETE FROM hq_login_failures WHERE username = ?", (username,))
        tx.run("INSERT INTO hq_tokens (token, username, expires_at) VALUES (?, ?, ?)", (token, username, expires))
    return token, str(row[1]), expires


def principal_for_token(db: HqDb, token: str) -> Principal | None:
    """The active user a live token belongs to, with his role and regions as they are now."""
    if not token or len(token) > 128:
        return None
    with db.read() as tx:
        row = tx.one("""SELECT u.username, u.role FROM hq_tokens t JOIN hq_users u ON u.username = t.username
                        WHERE t.token = ? AND t.expires_at > ? AND u.active = 1""", (token, int(time.time())))
        if row is None:
            return None
        regions = tuple(str(r[0]) for r in tx.all(
            "SELECT region FROM hq_user_regions WHERE username = ? ORDER BY region", (row[0],)))
    return Principal(str(row[0]), str(row[1]), regions)


def check_token(db: HqDb, token: str) -> str | None:
    principal = principal_for_token(db, token)
    return principal.username if principal else None


def logout(db: HqDb, token: str) -> None:
    with db.write() as tx:
        tx.run("DELETE FROM hq_tokens WHERE token = ?", (token,))


def end_logins(tx: Tx, username: str) -> int:
    """End every login of `username` (inside the transaction that changes him)."""
    return tx.run("DELETE FROM hq_tokens WHERE username = ?", (username,))
