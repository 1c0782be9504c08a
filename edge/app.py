"""The Litestar application: routes, the permission guard, error shapes, the hub's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from edge import __version__
from edge.api.engage_routes import engage_lifespan
from edge.api.openapi import BEARER, bearer_where_permission, build_on_first_use
from edge.api.routes import ROUTES
from edge.api.support import permission_guard
from edge.appliance.first_boot import first_boot_lifespan
from edge.appliance.liveness import probe_lifespan
from edge.appliance.sdnotify import notify_lifespan
from edge.config import HubConfig
from edge.device_link.link import device_lifespan
from edge.errors import ApiError, StorageFull, unexpected
from edge.hub import Hub
from edge.members.points import points_lifespan
from edge.members.review import review_lifespan
from edge.sales.sale_writer import sale_writer_lifespan
from edge.serving import NoEventListeners
from edge.stopping import stop_signals_lifespan
from edge.ui.router import ui_error_page, ui_lifespan, ui_router
from hq_sync.agent import sync_lifespan

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
               429: "too_many_requests"}


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    if isinstance(exc, StorageFull) and request.url.path.startswith("/ui"):
        return ui_error_page(request, exc.status)
    return Response(exc.body(), status_code=exc.status)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if request.url.path.startswith("/ui"):
        return ui_error_page(request, exc.status_code)
    code = "invalid_parameter" if isinstance(exc, ValidationException) else _HTTP_CODES.get(exc.status_code, "error")
    body: dict[str, Any] = {"code": code, "message": exc.detail}
    if isinstance(exc, ValidationException) and exc.extra:
        body["errors"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _api_error(request, unexpected(exc, f"{request.method} {request.url.path}", log))


def create_app(config: HubConfig, hub: Hub | None = None) -> Litestar:
    """Build the app. The hub (database, keys) is opened in the lifespan and closed after it."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = hub is None
        app.state.hub = hub or Hub(config)
        try:
            yield
        finally:
            if owned:
                app.state.hub.close()
                from edge.care.startup import record_clean_close

                record_clean_close(config)  # the next start may skip its integrity check (edge/care/startup.py)

    def provide_hub(request: Request[Any, Any, Any]) -> Hub:
        return request.app.state.hub  # type: ignore[no-any-return]

    app = Litestar(
        route_handlers=[*ROUTES, ui_router()],
        dependencies={"hub": Provide(provide_hub, sync_to_thread=False)},
        guards=[permission_guard],
        # points expiry, the member pass and campaigns (unpaired hubs); the HQ sync agent runs when an HQ URL is
        # configured
        lifespan=[lifespan, sale_writer_lifespan, points_lifespan, review_lifespan, engage_lifespan, sync_lifespan,
                  device_lifespan, first_boot_lifespan, ui_lifespan, probe_lifespan, notify_lifespan,
                  stop_signals_lifespan],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
        request_max_body_size=config.max_body_bytes,
        openapi_config=OpenAPIConfig(title="Backroom hub", version=__version__, path="/schema"),
        event_emitter_backend=NoEventListeners,  # no listeners: no anyio task group at start (edge/serving.py)
        debug=False,
    )
    # the OpenAPI document (with the bodies' schemas) on the first /schema, not at start
    build_on_first_use(app, schemes=BEARER, security=bearer_where_permission(ROUTES))
    return app
