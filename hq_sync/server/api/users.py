"""HQ users and the audit log over the API: who am I, log out, users administration
(`/hq/v1/users...`, permission users.manage; reading users.read), regions, and `GET /hq/v1/audit`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import Parameter

from hq_sync.server.api.openapi import with_body
from hq_sync.server.api.support import acting, bearer_principal, decode, hq_of, in_thread, json_response
from hq_sync.server.service import audit, auth, users
from hq_sync.server.service.errors import now_text

Filter = Annotated[str, Parameter(max_length=120)]


@get("/hq/v1/me")
async def me(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = bearer_principal(request)
    return json_response({"username": who.username, "role": who.role, "regions": list(who.regions)})


@post("/hq/v1/auth/logout", status_code=200)
async def logout(request: Request[Any, Any, Any]) -> Response[bytes]:
    bearer_principal(request)
    await in_thread(auth.logout, hq_of(request).db, request.headers["authorization"][7:].strip())
    return json_response({"ok": True})


@get("/hq/v1/regions")
async def region_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    acting(request, "stores.read")
    return json_response({"regions": await in_thread(users.list_regions, hq_of(request).db)})


@get("/hq/v1/users")
async def user_list(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "users.read")
    found = await in_thread(users.list_users, hq_of(request).db, who)
    return json_response({"users": msgspec.to_builtins(found)})


@post("/hq/v1/users", operation_class=with_body(users.UserIn))
async def user_create(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "users.manage")
    req = await decode(request, users.UserIn)
    return json_response(msgspec.to_builtins(await in_thread(users.create_user, hq_of(request).db, who, req,
                                                             now_text())), 201)


@get("/hq/v1/users/{username:str}")
async def user_detail(request: Request[Any, Any, Any], username: str) -> Response[bytes]:
    who = acting(request, "users.read")
    return json_response(msgspec.to_builtins(await in_thread(users.user_view, hq_of(request).db, who, username)))


@put("/hq/v1/users/{username:str}/role", operation_class=with_body(users.RoleIn))
async def user_role(request: Request[Any, Any, Any], username: str) -> Response[bytes]:
    """`{"role", "regions"?}`; ends the user's logins."""
    who = acting(request, "users.manage")
    req = await decode(request, users.RoleIn)
    return json_response(msgspec.to_builtins(await in_thread(users.set_role, hq_of(request).db, who, username, req,
                                                             now_text())))


@post("/hq/v1/users/{username:str}/password", status_code=200, operation_class=with_body(users.PasswordIn))
async def user_password(request: Request[Any, Any, Any], username: str) -> Response[bytes]:
    """`{"password"}` (8–128 characters); ends the user's logins."""
    who = acting(request, "users.manage")
    req = await decode(request, users.PasswordIn)
    return json_response(msgspec.to_builtins(await in_thread(users.reset_password, hq_of(request).db, who, username,
                                                             req, now_text())))


@post("/hq/v1/users/{username:str}/deactivate", status_code=200)
async def user_deactivate(request: Request[Any, Any, Any], username: str) -> Response[bytes]:
    who = acting(request, "users.manage")
    return json_response(msgspec.to_builtins(await in_thread(users.set_active, hq_of(request).db, who, username, False,
                                                             now_text())))


@post("/hq/v1/users/{username:str}/activate", status_code=200)
async def user_activate(request: Request[Any, Any, Any], username: str) -> Response[bytes]:
    who = acting(request, "users.manage")
    return json_response(msgspec.to_builtins(await in_thread(users.set_active, hq_of(request).db, who, username, True,
                                                             now_text())))


@get("/hq/v1/audit")
async def audit_log(request: Request[Any, Any, Any], actor: Filter = "", action: Filter = "", target: Filter = "",
                    limit: Annotated[int, Parameter(ge=1, le=audit.MAX_LIMIT)] = 50,
                    offset: Annotated[int, Parameter(ge=0, le=audit.MAX_OFFSET)] = 0) -> Response[bytes]:
    """Newest first; `action` may be a prefix ending in `.` (`price.`), `target` one ending in `:`."""
    who = acting(request, "audit.read")
    found = await in_thread(lambda: audit.audit_page(hq_of(request).db, who, actor=actor, action=action,
                                                     target=target, limit=limit, offset=offset))
    return json_response(msgspec.to_builtins(found))


ROUTES = [me, logout, region_list, user_list, user_create, user_detail, user_role, user_password, user_deactivate,
          user_activate, audit_log]
