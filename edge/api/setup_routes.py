"""First setup of a box with no store manager (edge/appliance/setup.py): public, guarded by the setup code."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Request, get, post

from edge.api.openapi import body_operation
from edge.api.support import decode_body
from edge.appliance import setup
from edge.auth.login import LoginRequest, authenticate
from edge.auth.passwords import hash_secret
from edge.auth.users import password_problem
from edge.errors import ApiError
from edge.hub import Hub


def attempts(request: Request[Any, Any, Any]) -> setup.Attempts:
    state = request.app.state
    found = getattr(state, "setup_attempts", None)
    if found is None:
        found = state.setup_attempts = setup.Attempts(state.hub.config.data_dir)
    return found


@get("/api/v1/setup", sync_to_thread=False)
def setup_status(hub: Hub) -> setup.SetupStatus:
    """Whether this box still needs its first store manager (the setup code is never sent)."""
    return setup.SetupStatus(needed=setup.needs_setup(hub.db.reader()))


async def first_manager(request: Request[Any, Any, Any], hub: Hub, req: setup.SetupRequest) -> setup.SetupDone:
    """Check the code, make the first store manager, use the code up and log the new manager in."""
    if not setup.needs_setup(hub.db.reader()):
        raise ApiError(409, "already_set_up", "this box has a store manager; staff are added by a manager")
    setup.check_code(hub.config.data_dir, req.code, attempts(request))
    problem = password_problem(req.password, req.username)
    if problem is not None:
        raise ApiError(422, "weak_password", problem)
    hashed = await asyncio.to_thread(hash_secret, req.password)
    user_id, at = str(uuid.uuid4()), hub.clock.stamp()
    await hub.db.write(lambda conn: setup.create_first_manager(conn, user_id, req, hashed, at))
    await asyncio.to_thread(setup.clear_code, hub.config.data_dir)
    login = await asyncio.to_thread(authenticate, hub, LoginRequest(username=req.username, password=req.password))
    return setup.SetupDone(user_id=user_id, username=req.username, role="store_manager", token=login.token,
                           expires_at=login.expires_at)


@post("/api/v1/setup", status_code=201, operation_class=body_operation(setup.SetupRequest))
async def setup_create(request: Request[Any, Any, Any], hub: Hub) -> setup.SetupDone:
    """The first store manager, with the setup code from the status ticket (or `backroom setup-code`)."""
    return await first_manager(request, hub, await decode_body(request, setup.SetupRequest))


SETUP_ROUTES: list[Any] = [setup_status, setup_create]
