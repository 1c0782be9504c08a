"""HQ logins: users, password check, bearer tokens."""

from __future__ import annotations

import secrets
import time

from edge.auth.passwords import hash_secret, verify_secret
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb, Tx

TOKEN_TTL_S = 12 * 3600


# -- admin logins ---------------------------------------------------------------------------------------------

def add_user(tx: Tx, username: str, password: str, role: str = "hq_admin") -> None:
    tx.run("INSERT INTO hq_users (username, password_hash, role) VALUES (?, ?, ?) ON CONFLICT (username) DO NOTHING",
           (username, hash_secret(password), role))


def login(db: HqDb, username: str, password: str) -> tuple[str, str, int]:
    with db.read() as tx:
        row = tx.one("SELECT password_hash, role FROM hq_users WHERE username = ?", (username,))
    if row is None or not verify_secret(password, row[0]):
        raise HqError(401, "bad_credentials", "unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    expires = int(time.time()) + TOKEN_TTL_S
    with db.write() as tx:
        tx.run("DELETE FROM hq_tokens WHERE expires_at < ?", (int(time.time()),))
        tx.run("INSERT INTO hq_tokens (token, username, expires_at) VALUES (?, ?, ?)", (token, username, expires))
    return token, str(row[1]), expires


def check_token(db: HqDb, token: str) -> str | None:
    with db.read() as tx:
        row = tx.one("SELECT username FROM hq_tokens WHERE token = ? AND expires_at > ?", (token, int(time.time())))
    return str(row[0]) if row else None
