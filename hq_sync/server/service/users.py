"""HQ users administration: create, change role and regions, reset a password, deactivate and
reactivate. A role change, a password reset or a deactivation ends the user's logins in the same
transaction; every change is audited (never the password)."""

from __future__ import annotations

import re
import time
from typing import Annotated

import msgspec

from edge.auth.passwords import hash_secret
from hq_sync.server.service.access import HQ_ROLES, Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.auth import end_logins
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb, Tx

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
Region = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class UserIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: Username
    password: Password
    role: str
    regions: Annotated[list[Region], msgspec.Meta(max_length=50)] = []
    display_name: Annotated[str, msgspec.Meta(max_length=80)] = ""


class RoleIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: str
    regions: Annotated[list[Region], msgspec.Meta(max_length=50)] = []


class PasswordIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    password: Password


class UserView(msgspec.Struct, frozen=True):
    username: str
    display_name: str
    role: str
    regions: list[str]
    active: bool
    created_at: str | None
    changed_at: str | None
    logins: int  # live tokens


# -- reading ----------------------------------------------------------------------------------------------------

def list_regions(db: HqDb) -> list[str]:
    with db.read() as tx:
        return [str(r[0]) for r in tx.all("SELECT region FROM hq_regions ORDER BY region")]


def _views(tx: Tx, username: str | None = None) -> list[UserView]:
    where, args = ("WHERE u.username = ?", [username]) if username is not None else ("", [])
    rows = tx.all(f"""SELECT u.username, u.display_name, u.role, u.active, u.created_at, u.changed_at,
                             (SELECT count(*) FROM hq_tokens t WHERE t.username = u.username AND t.expires_at > ?)
                      FROM hq_users u {where} ORDER BY u.username""", [int(time.time()), *args])
    regions: dict[str, list[str]] = {}
    for name, region in tx.all("SELECT username, region FROM hq_user_regions ORDER BY username, region"):
        regions.setdefault(str(name), []).append(str(region))
    return [UserView(r[0], r[1], r[2], regions.get(r[0], []), bool(r[3]), r[4], r[5], int(r[6])) for r in rows]


def list_users(db: HqDb, principal: Principal) -> list[UserView]:
    require(principal, "users.read")
    with db.read() as tx:
        return _views(tx)


def user_view(db: HqDb, principal: Principal, username: str) -> UserView:
    require(principal, "users.read")
    with db.read() as tx:
        found = _views(tx, username)
    if not found:
        raise HqError(404, "unknown_user", f"no user {username[:64]}")
    return found[0]


# -- changing ---------------------------------------------------------------------------------------------------

def _check_role(tx: Tx, role: str, regions: list[str]) -> list[str]:
    if role not in HQ_ROLES:
        raise HqError(422, "bad_role", f"role is one of {', '.join(HQ_ROLES)}")
    regions = sorted(set(regions))
    if role == "region_manager":
        if not regions:
            raise HqError(422, "regions_required", "a region manager needs at least one region")
        known = {str(r[0]) for r in tx.all("SELECT region FROM hq_regions")}
        unknown = [r for r in regions if r not in known]
        if unknown:
            raise HqError(422, "unknown_region", f"no region {unknown[0][:64]}")
        return regions
    if regions:
        raise HqError(422, "regions_not_allowed", "only a region manager has regions")
    return []


def _locked(tx: Tx, username: str) -> UserView:
    tx.lock("hq_users", "username", [username])
    found = _views(tx, username)
    if not found:
        raise HqError(404, "unknown_user", f"no user {username[:64]}")
    return found[0]


def _keep_an_admin(tx: Tx, username: str) -> None:
    """Refuse a change that would leave HQ without an active admin."""
    row = tx.one("SELECT count(*) FROM hq_users WHERE role = 'hq_admin' AND active = 1 AND username <> ?",
                 (username,))
    if row is None or int(row[0]) == 0:
        raise HqError(409, "last_admin", "HQ keeps at least one active hq_admin")


def _summary(user: UserView) -> dict[str, object]:
    return {"role": user.role, "regions": user.regions, "active": user.active, "display_name": user.display_name}


def create_user(db: HqDb, principal: Principal, req: UserIn, at: str) -> UserView:
    require(principal, "users.manage")
    if not USERNAME.fullmatch(req.username):
        raise HqError(422, "bad_username", "2–32 lower-case letters, digits, dot, dash or underscore")
    with db.write() as tx:
        regions = _check_role(tx, req.role, list(req.regions))
        if tx.one("SELECT 1 FROM hq_users WHERE username = ?", (req.username,)) is not None:
            raise HqError(409, "user_exists", f"user {req.username} exists")
        tx.run("""INSERT INTO hq_users (username, password_hash, role, display_name, active, created_at, changed_at)
                  VALUES (?, ?, ?, ?, 1, ?, ?)""",
               (req.username, hash_secret(req.password), req.role, req.display_name.strip(), at, at))
        tx.many("INSERT INTO hq_user_regions (username, region) VALUES (?, ?)",
                [(req.username, region) for region in regions])
        user = _views(tx, req.username)[0]
        audit(tx, principal, "user.create", f"user:{req.username}", None, _summary(user), at=at)
    return user


def set_role(db: HqDb, principal: Principal, username: str, req: RoleIn, at: str) -> UserView:
    require(principal, "users.manage")
    with db.write() as tx:
        before = _locked(tx, username)
        regions = _check_role(tx, req.role, list(req.regions))
        if before.role == "hq_admin" and req.role != "hq_admin":
            _keep_an_admin(tx, username)
        tx.run("UPDATE hq_users SET role = ?, changed_at = ? WHERE username = ?", (req.role, at, username))
        tx.run("DELETE FROM hq_user_regions WHERE username = ?", (username,))
        tx.many("INSERT INTO hq_user_regions (username, region) VALUES (?, ?)", [(username, r) for r in regions])
        end_logins(tx, username)
        after = _views(tx, username)[0]
        audit(tx, principal, "user.role", f"user:{username}", _summary(before), _summary(after), at=at)
    return after


def reset_password(db: HqDb, principal: Principal, username: str, req: PasswordIn, at: str) -> UserView:
    require(principal, "users.manage")
    with db.write() as tx:
        _locked(tx, username)
        tx.run("UPDATE hq_users SET password_hash = ?, changed_at = ? WHERE username = ?",
               (hash_secret(req.password), at, username))
        ended = end_logins(tx, username)
        audit(tx, principal, "user.password", f"user:{username}", None, {"password": "reset", "logins_ended": ended},
              at=at)
        return _views(tx, username)[0]


def set_active(db: HqDb, principal: Principal, username: str, active: bool, at: str) -> UserView:
    require(principal, "users.manage")
    with db.write() as tx:
        before = _locked(tx, username)
        if not active:
            if username == principal.username:
                raise HqError(409, "own_account", "you cannot deactivate your own account")
            if before.role == "hq_admin":
                _keep_an_admin(tx, username)
        tx.run("UPDATE hq_users SET active = ?, changed_at = ? WHERE username = ?", (int(active), at, username))
        if not active:
            end_logins(tx, username)
        after = _views(tx, username)[0]
        audit(tx, principal, "user.activate" if active else "user.deactivate", f"user:{username}",
              _summary(before), _summary(after), at=at)
    return after
