"""Staff accounts of the store: who may manage whom, the login secret each role uses, and the writes.

Rules (docs in the module, enforced here so every caller gets them):
- Rank: hq_admin > region_manager > store_manager > cashier = sales_guide. A caller creates, changes,
  resets and (de)activates only users whose role ranks below his own, and grants only such roles;
  hq_admin, the top of the chain, also manages other hq_admins. Nobody changes his own account here
  (no self-promotion, no self-deactivation, no reset without the old secret).
- Secret kind by role: manager-level roles log in with a password (8+ characters), cashier and
  sales_guide with a PIN (4-8 digits) at a till. An account holds only its role's kind, so a manager
  account is never reachable by a 4-digit PIN and a cashier never logs in without a till.
- PINs: all-same digits (0000) and straight runs (1234, 9876) are refused; with the login throttle at
  five tries they are what a guesser tries first. PINs need not be unique: a PIN login names the user,
  and a "PIN already in use" answer would tell the manager someone else's PIN.
- Every change writes one `audit` row naming the account and what changed, never a secret or hash.
- Tokens are stateless, so a deactivation, a role change or a secret reset also sets `tokens_after`:
  the account's tokens issued before it are refused (edge/hub.py keeps the cut-offs in memory). It is
  the second after the change, as a token's issue time has whole seconds; a login in the same second
  as the change is issued at `tokens_after` (edge/auth/login.py), so it holds, and a second change in
  that second moves the cut past it.
Secrets arrive here already hashed (hashing is slow; it runs off the writer thread).
"""

from __future__ import annotations

import datetime
import sqlite3
import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edge.auth.roles import Role
from edge.errors import ApiError

SecretKind = Literal["password", "pin"]

RANK: dict[str, int] = {"hq_admin": 3, "region_manager": 2, "store_manager": 1, "cashier": 0, "sales_guide": 0}
PIN_ROLES = frozenset({"cashier", "sales_guide"})

Username = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{1,31}$",
                               description="2-32 characters: lower-case letters, digits, '.', '_', '-'")]
DisplayName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^(?!\s*$)[^\x00-\x1f\x7f]+$")]
Password = Annotated[str, Meta(min_length=8, max_length=256)]
Pin = Annotated[str, Meta(pattern=r"^[0-9]{4,8}$")]


class UserCreate(msgspec.Struct, frozen=True):
    """A new account. `user_id` (a UUID) makes the create idempotent; without it the hub makes one."""

    username: Username
    display_name: DisplayName
    role: Role
    password: Password | None = None
    pin: Pin | None = None
    user_id: uuid.UUID | None = None


class RoleChange(msgspec.Struct, frozen=True):
    """A new role; crossing between PIN and password roles needs the new kind of secret too."""

    role: Role
    password: Password | None = None
    pin: Pin | None = None


class PinReset(msgspec.Struct, frozen=True):
    pin: Pin


class PasswordReset(msgspec.Struct, frozen=True):
    password: Password


class Caller(msgspec.Struct, frozen=True):
    user_id: str
    role: str
    till_id: str | None


class User(msgspec.Struct):
    user_id: str
    username: str
    display_name: str
    role: str
    active: bool
    has_password: bool
    has_pin: bool
    created_at: str
    can_manage: bool = False  # whether the caller may change this account


class UserList(msgspec.Struct):
    users: list[User]


# -- pure rules ----------------------------------------------------------------------------------------

def secret_kind(role: str) -> SecretKind:
    return "pin" if role in PIN_ROLES else "password"


def outranks(caller_role: str, role: str) -> bool:
    return caller_role == "hq_admin" or RANK[caller_role] > RANK[role]


def may_manage(caller: Caller, user_id: str, role: str) -> bool:
    return user_id != caller.user_id and outranks(caller.role, role)


def check_grant(caller: Caller, role: str) -> None:
    """The caller may hand out `role` (create a user with it, or change someone to it)."""
    if not outranks(caller.role, role):
        raise ApiError(403, "role_too_high", f"a {caller.role} may not give the role {role}", role=role)


def check_target(caller: Caller, user_id: str, role: str) -> None:
    """The caller may change the account `user_id` that now has `role`."""
    if user_id == caller.user_id:
        raise ApiError(403, "own_account", "nobody changes his own role, secret or status here")
    if not outranks(caller.role, role):
        raise ApiError(403, "user_too_high", f"a {caller.role} may not change a {role}", role=role)


def pin_problem(pin: str) -> str | None:
    if len(set(pin)) == 1:
        return "a PIN of one repeated digit is the first one a guesser tries"
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {-1}):
        return "a straight run of digits (1234, 9876) is the first one a guesser tries"
    return None


def password_problem(password: str, username: str) -> str | None:
    if len(set(password)) == 1:
        return "a password of one repeated character is too easy to guess"
    if username in password.lower():
        return "the password must not contain the username"
    return None


def pick_secret(role: str, username: str, password: str | None, pin: str | None) -> tuple[SecretKind, str]:
    """The one secret `role` logs in with, checked; a secret of the other kind is refused."""
    kind = secret_kind(role)
    wanted, other = (pin, password) if kind == "pin" else (password, pin)
    if other is not None:
        other_kind = "password" if kind == "pin" else "PIN"
        raise ApiError(422, "secret_kind", f"a {role} logs in with a {kind}, not a {other_kind}")
    if wanted is None:
        raise ApiError(422, "secret_required", f"a {role} needs a {kind}")
    problem = pin_problem(wanted) if kind == "pin" else password_problem(wanted, username)
    if problem is not None:
        raise ApiError(422, f"weak_{kind}", problem)
    return kind, wanted


# -- reads ---------------------------------------------------------------------------------------------

_COLUMNS = """user_id, username, display_name, role, active, password_hash IS NOT NULL AS has_password,
              pin_hash IS NOT NULL AS has_pin, created_at"""


def _view(row: sqlite3.Row, caller: Caller) -> User:
    user = msgspec.convert(dict(row), User, strict=False)
    user.can_manage = may_manage(caller, user.user_id, user.role)
    return user


def list_users(conn: sqlite3.Connection, caller: Caller) -> list[User]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY active DESC, username").fetchall()
    return [_view(row, caller) for row in rows]


def get_user(conn: sqlite3.Connection, user_id: str, caller: Caller) -> User:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_user", f"no user {user_id[:64]}")
    return _view(row, caller)


def stored_hash(conn: sqlite3.Connection, user_id: str, kind: SecretKind) -> str | None:
    column = "pin_hash" if kind == "pin" else "password_hash"
    row = conn.execute(f"SELECT {column} FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else row[0]


# -- writes (each runs inside one writer transaction) -------------------------------------------------

def _audit(conn: sqlite3.Connection, caller: Caller, at: str, action: str, target: str, detail: dict[str, Any]) -> None:
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (at, caller.user_id, caller.till_id, action, target, msgspec.json.encode(detail).decode()))


def create_user(conn: sqlite3.Connection, user_id: str, req: UserCreate, kind: SecretKind, hashed: str,
                caller: Caller, at: str) -> bool:
    """Insert the account; False if `user_id` already exists (the caller answers it as a replay or 409)."""
    check_grant(caller, req.role)
    if conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
        return False
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (req.username,)).fetchone():
        raise ApiError(409, "username_taken", f"the username {req.username} is taken", username=req.username)
    conn.execute(
        """INSERT INTO users (user_id, username, display_name, role, password_hash, pin_hash, active, created_at)
           VALUES (?, ?, ?, ?, ?, ?, 1, ?)""",
        (user_id, req.username, req.display_name.strip(), req.role,
         hashed if kind == "password" else None, hashed if kind == "pin" else None, at))
    _audit(conn, caller, at, "user.create", user_id,
           {"username": req.username, "display_name": req.display_name.strip(), "role": req.role, "login": kind})
    return True


def _cut_tokens(conn: sqlite3.Connection, user_id: str, at: str) -> None:
    """Refuse the account's tokens issued up to the second of `at`, and those a login after an earlier
    cut in the same second was issued at (the old `tokens_after`): the new cut is one past both."""
    second = int(datetime.datetime.fromisoformat(at).timestamp())
    conn.execute("UPDATE users SET tokens_after = max(coalesce(tokens_after, 0), ?) + 1 WHERE user_id = ?",
                 (second, user_id))


def tokens_after(conn: sqlite3.Connection) -> dict[str, int]:
    """Every account's token cut-off (unix seconds), for the hub's in-memory check."""
    rows = conn.execute("SELECT user_id, tokens_after FROM users WHERE tokens_after IS NOT NULL").fetchall()
    return {row[0]: int(row[1]) for row in rows}


def _target(conn: sqlite3.Connection, user_id: str, caller: Caller) -> sqlite3.Row:
    row = conn.execute("SELECT user_id, username, role, active FROM users WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_user", f"no user {user_id[:64]}")
    check_target(caller, row["user_id"], row["role"])
    return row  # type: ignore[no-any-return]


def change_role(conn: sqlite3.Connection, user_id: str, role: str, hashed: str | None,
                caller: Caller, at: str) -> None:
    """Give `role`; a change of secret kind stores the new secret (`hashed`) and drops the old one."""
    row = _target(conn, user_id, caller)
    check_grant(caller, role)
    if row["role"] == role:
        return
    kind = secret_kind(role)
    crosses = kind != secret_kind(row["role"])
    if crosses != (hashed is not None):
        raise ApiError(409, "user_changed", "the account changed meanwhile; read it again and retry")
    if crosses:
        conn.execute("UPDATE users SET role = ?, password_hash = ?, pin_hash = ? WHERE user_id = ?",
                     (role, hashed if kind == "password" else None, hashed if kind == "pin" else None, user_id))
    else:
        conn.execute("UPDATE users SET role = ? WHERE user_id = ?", (role, user_id))
    _cut_tokens(conn, user_id, at)
    _audit(conn, caller, at, "user.role", user_id, {"username": row["username"], "old": row["role"], "new": role,
                                                   "login": kind if crosses else None})


def reset_secret(conn: sqlite3.Connection, user_id: str, kind: SecretKind, hashed: str, caller: Caller, at: str) -> str:
    """Replace the account's PIN or password; returns the username (whose login throttle the caller clears)."""
    row = _target(conn, user_id, caller)
    if secret_kind(row["role"]) != kind:
        raise ApiError(422, "secret_kind", f"a {row['role']} logs in with a {secret_kind(row['role'])}, not a {kind}")
    column = "pin_hash" if kind == "pin" else "password_hash"
    conn.execute(f"UPDATE users SET {column} = ? WHERE user_id = ?", (hashed, user_id))
    _cut_tokens(conn, user_id, at)
    _audit(conn, caller, at, f"user.{kind}_reset", user_id, {"username": row["username"]})
    return str(row["username"])


def set_active(conn: sqlite3.Connection, user_id: str, active: bool, caller: Caller, at: str) -> None:
    """Deactivate or activate; asking for the state the account is already in changes nothing."""
    row = _target(conn, user_id, caller)
    if bool(row["active"]) == active:
        return
    conn.execute("UPDATE users SET active = ? WHERE user_id = ?", (int(active), user_id))
    if not active:
        _cut_tokens(conn, user_id, at)
    _audit(conn, caller, at, "user.activate" if active else "user.deactivate", user_id, {"username": row["username"]})
