"""The reference HQ as a Litestar app: the admin API of CONTRACT.md (`admin.py`, `users.py`), the sync
endpoints for hubs (`sync.py`) and the browser console at `/hq/ui` (`hq_sync/server/console`).

Admin calls carry `Authorization: Bearer <token>` from `POST /hq/v1/auth/login`. Hub calls carry
the store's Ed25519 signature over method, path, time and body (`hq_sync.wire.sign_request`); a
request signed by any other key than the one registered at pairing is refused (401).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException

from hq_sync.server.api import admin, sync, users
from hq_sync.server.api.resources import Hq
from hq_sync.server.api.support import json_response
from hq_sync.server.console.router import console_error_page, console_router
from hq_sync.server.service.errors import HqError

log = logging.getLogger(__name__)


# -- the app ---------------------------------------------------------------------------------------------------

def _hq_error(_: Request[Any, Any, Any], exc: HqError) -> Response[bytes]:
    return json_response({"code": exc.code, "message": exc.message, **exc.extra}, exc.status)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if request.url.path.startswith("/hq/ui"):
        return console_error_page(request, exc.status_code)  # a console URL gets a page, not JSON
    return json_response({"code": "bad_request" if exc.status_code == 400 else "error", "message": exc.detail},
                          exc.status_code)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"code": "internal", "message": "internal error; nothing was committed"}, 500)


def create_hq_app(db_url: str, demo: bool = False) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        hq = Hq(db_url, demo)
        hq.signal.bind()
        app.state.hq = hq
        try:
            yield
        finally:
            hq.close()

    return Litestar(
        route_handlers=[*admin.ROUTES, *users.ROUTES, *sync.ROUTES, console_router()],
        lifespan=[lifespan],
        exception_handlers={HqError: _hq_error, HTTPException: _http_error, Exception: _internal},
        request_max_body_size=64 * 1024 * 1024,
        debug=False,
    )
