"""Staff administration (users.manage): list, create, change role, reset PIN/password, (de)activate.

Who may change whom, and which secret a role uses, is edge/auth/users.py. Secrets are hashed here, off
the event loop and before the writer (scrypt takes tens of milliseconds), and never logged or audited.
A reset takes effect at the next login and clears that username's failed-login lockout; a reset, a
role change or a deactivation also ends the account's open logins (`hub.user_changed`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from litestar import Request, get, post, put
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.support import claims_of, decode_body
from edge.auth import users
from edge.auth.passwords import hash_secret, verify_secret
from edge.auth.users import Caller, PasswordReset, PinReset, RoleChange, User, UserCreate, UserList
from edge.errors import ApiError
from edge.hub import Hub

_PERM = {"permission": "users.manage"}
UserId = Annotated[str, Parameter(min_length=1, max_length=64)]


def _caller(request: Request[Any, Any, Any]) -> Caller:
    claims = claims_of(request)
    return Caller(user_id=claims.user_id, role=claims.role, till_id=claims.till_id)


@get("/api/v1/users", opt=_PERM, sync_to_thread=False)
def user_list(request: Request[Any, Any, Any], hub: Hub) -> UserList:
    return UserList(users.list_users(hub.db.reader(), _caller(request)))


@get("/api/v1/users/{user_id:str}", opt=_PERM, sync_to_thread=False)
def user_get(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    return users.get_user(hub.db.reader(), user_id, _caller(request))


async def _same_create(hub: Hub, caller: Caller, user_id: str, req: UserCreate, kind: users.SecretKind,
                       secret: str) -> User:
    """A create retried with an existing `user_id`: the same account and secret answer it again, else 409."""
    found = users.get_user(hub.db.reader(), user_id, caller)
    same = (found.username, found.display_name, found.role) == (req.username, req.display_name.strip(), req.role)
    stored = users.stored_hash(hub.db.reader(), user_id, kind)
    if not same or not await asyncio.to_thread(verify_secret, secret, stored):
        raise ApiError(409, "id_conflict", f"user_id {user_id} was already used for a different account")
    return found


@post("/api/v1/users", opt=_PERM, operation_class=body_operation(UserCreate))
async def user_create(request: Request[Any, Any, Any], hub: Hub) -> User:
    req = await decode_body(request, UserCreate)
    caller = _caller(request)
    users.check_grant(caller, req.role)
    kind, secret = users.pick_secret(req.role, req.username, req.password, req.pin)
    user_id = str(req.user_id or uuid.uuid4())
    if hub.db.reader().execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
        return await _same_create(hub, caller, user_id, req, kind, secret)
    hashed = await asyncio.to_thread(hash_secret, secret)
    at = hub.clock.stamp()
    if not await hub.db.write(lambda conn: users.create_user(conn, user_id, req, kind, hashed, caller, at)):
        return await _same_create(hub, caller, user_id, req, kind, secret)
    return users.get_user(hub.db.reader(), user_id, caller)


@put("/api/v1/users/{user_id:str}/role", opt=_PERM, operation_class=body_operation(RoleChange))
async def user_role(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    req = await decode_body(request, RoleChange)
    caller = _caller(request)
    now = users.get_user(hub.db.reader(), user_id, caller)
    users.check_target(caller, user_id, now.role)
    users.check_grant(caller, req.role)
    hashed = None
    if users.secret_kind(req.role) != users.secret_kind(now.role):
        _, secret = users.pick_secret(req.role, now.username, req.password, req.pin)
        hashed = await asyncio.to_thread(hash_secret, secret)
    elif req.password is not None or req.pin is not None:
        raise ApiError(422, "secret_not_needed", f"a {now.role} keeps his {users.secret_kind(now.role)} "
                       f"as a {req.role}; reset it separately")
    at = hub.clock.stamp()
    await hub.db.write(lambda conn: users.change_role(conn, user_id, req.role, hashed, caller, at))
    hub.user_changed(user_id)  # his tokens of the old role stop here
    if hashed is not None:
        hub.throttle.succeeded(now.username)
    return users.get_user(hub.db.reader(), user_id, caller)


async def _reset(request: Request[Any, Any, Any], hub: Hub, user_id: str, kind: users.SecretKind,
                 secret: str) -> User:
    caller = _caller(request)
    now = users.get_user(hub.db.reader(), user_id, caller)
    users.check_target(caller, user_id, now.role)
    users.pick_secret(now.role, now.username, secret if kind == "password" else None, secret if kind == "pin" else None)
    hashed = await asyncio.to_thread(hash_secret, secret)
    at = hub.clock.stamp()
    username = await hub.db.write(lambda conn: users.reset_secret(conn, user_id, kind, hashed, caller, at))
    hub.user_changed(user_id)  # whoever knew the old secret is logged out
    hub.throttle.succeeded(username)  # a locked-out cashier with a new PIN can log in at once
    return users.get_user(hub.db.reader(), user_id, caller)


@post("/api/v1/users/{user_id:str}/pin", opt=_PERM, status_code=200, operation_class=body_operation(PinReset))
async def user_pin(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    req = await decode_body(request, PinReset)
    return await _reset(request, hub, user_id, "pin", req.pin)


@post("/api/v1/users/{user_id:str}/password", opt=_PERM, status_code=200,
      operation_class=body_operation(PasswordReset))
async def user_password(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    req = await decode_body(request, PasswordReset)
    return await _reset(request, hub, user_id, "password", req.password)


async def _set_active(request: Request[Any, Any, Any], hub: Hub, user_id: str, active: bool) -> User:
    caller, at = _caller(request), hub.clock.stamp()
    await hub.db.write(lambda conn: users.set_active(conn, user_id, active, caller, at))
    hub.user_changed(user_id)
    return users.get_user(hub.db.reader(), user_id, caller)


@post("/api/v1/users/{user_id:str}/deactivate", opt=_PERM, status_code=200)
async def user_deactivate(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    return await _set_active(request, hub, user_id, False)


@post("/api/v1/users/{user_id:str}/activate", opt=_PERM, status_code=200)
async def user_activate(request: Request[Any, Any, Any], hub: Hub, user_id: UserId) -> User:
    return await _set_active(request, hub, user_id, True)


USER_ROUTES = [user_list, user_get, user_create, user_role, user_pin, user_password, user_deactivate, user_activate]
