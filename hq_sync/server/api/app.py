"""The reference HQ as a Litestar app: the admin API of CONTRACT.md (`admin.py`, `users.py`), the sync
endpoints for hubs (`sync.py`) and the browser console at `/hq/ui` (`hq_sync/server/console`).

Admin calls carry `Authorization: Bearer <token>` from `POST /hq/v1/auth/login`. Hub calls carry
the store's Ed25519 signature over method, path, time and body (`hq_sync.wire.sign_request`); a
request signed by any other key than the one registered at pairing is refused (401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from edge import __version__, stopping
from edge.serving import NoEventListeners
from hq_sync.server.api import admin, engage, member_desk, member_rules, merchandising, statements, sync, users
from hq_sync.server.api.openapi import document_on_first_use
from hq_sync.server.api.resources import CONTACT_EVERY_S, Hq
from hq_sync.server.api.scheduling import collector_settings
from hq_sync.server.api.support import in_thread, json_response
from hq_sync.server.console.router import console_error_page, console_router
from hq_sync.server.service.errors import HqError, now_text
from hq_sync.server.service.escrow import run_policy
from hq_sync.server.storage.partitions import partition_schedule

log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = float(os.environ.get("BACKROOM_HQ_SWITCH_INTERVAL_S") or 0.0005)


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


async def escrow_timer(hq: Hq) -> None:
    """The escrow policy's timer (docs/sync.md): every `tick_s` proactive grants for members who shopped
    at a store; every `sweep_s` (and after a pairing) every member's standing home escrow and the idle
    reclaims. Feed entries it appends wake the stores' long-polls."""
    next_sweep = 0.0
    while True:
        await asyncio.sleep(hq.policy.tick_s)
        if not hq.leads():  # another worker runs the policy: hand it what happened here
            shopped, paired = hq.events.take()
            busy = hq.releases.watched()
            if hq.bus is not None and (shopped or paired or busy):
                hq.bus.escrow(shopped, paired, busy)
            continue
        shopped, paired = hq.events.take()
        sweep = paired or time.monotonic() >= next_sweep
        if not shopped and not sweep:
            continue
        if sweep:
            next_sweep = time.monotonic() + hq.policy.sweep_s
        try:
            made = await asyncio.to_thread(run_policy, hq.db, hq.private_key, hq.policy, shopped, sweep,
                                           hq.busy_members(), now_text())
        except Exception:  # noqa: BLE001 -- the timer must outlive one failure (a database hiccup)
            log.exception("escrow policy turn failed; trying again next tick")
            hq.events.shopped(shopped)
            continue
        if made:
            hq.signal.notify()


async def _flush_contacts(hq: Hq) -> None:
    while True:
        await asyncio.sleep(CONTACT_EVERY_S)
        try:
            await in_thread(hq.flush_contacts)
        except Exception:  # noqa: BLE001 -- a failed flush (database away) is retried next round
            log.warning("could not record the stores' last contact", exc_info=True)


def create_hq_app(db_url: str, demo: bool = False) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # A thread back from the database gets the GIL sooner (5 ms by default): a transaction holding the
        # feed counter's lock waits for the GIL at every round trip (docs/hq-serving.md)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        hq = Hq(db_url, demo)
        hq.signal.bind()
        await asyncio.to_thread(hq.start_bus)  # PostgreSQL: the other workers (bus.py)
        await asyncio.to_thread(hq.warm)  # the stores' keys and the authorisations' connections
        app.state.hq = hq
        timer = asyncio.create_task(escrow_timer(hq), name="hq-escrow-policy")
        flusher = asyncio.create_task(_flush_contacts(hq), name="hq-store-contacts")
        waker = asyncio.create_task(hq.waits.run(), name="hq-feed-waits")
        timing = asyncio.create_task(hq.timing.run(), name="hq-timing")  # BACKROOM_HQ_TIMING_DIR (scheduling.py)
        collector_settings()  # start-up's objects frozen, collections rarer (scheduling.py)
        # Told to stop, the worker answers the long-polls it holds at once, and the console's live streams end
        # (edge/stopping.py): the stop no longer waits out uvicorn's grace period and cancels them
        restore_signals = stopping.install()
        forget = stopping.when_stopping(hq.waits.close_polls)
        try:
            yield
        finally:
            forget()
            restore_signals()
            for task in (timer, flusher, waker, timing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            hq.flush_contacts()
            hq.close()

    return _litestar(lifespan)


def create_hq_app_from_env() -> Litestar:
    """The app of one worker of `backroom hq serve --workers N` (uvicorn's factory, in each worker
    process): the database from BACKROOM_HQ_DB; the parent made the schema (and seeded --demo) once."""
    import os

    from edge.members.pii import redact_access_log

    redact_access_log()
    return create_hq_app(os.environ["BACKROOM_HQ_DB"])


def _litestar(lifespan: Any) -> Litestar:
    app = Litestar(
        route_handlers=[*admin.ROUTES, *merchandising.ROUTES, *users.ROUTES, *member_desk.ROUTES, *sync.ROUTES,
                        *member_rules.ROUTES, *engage.ROUTES, *statements.ROUTES, console_router()],
        # the member pass and the campaigns after the resources
        lifespan=[lifespan, member_rules.member_pass_lifespan, engage.campaign_schedule, partition_schedule],
        exception_handlers={HqError: _hq_error, HTTPException: _http_error, Exception: _internal},
        request_max_body_size=64 * 1024 * 1024,
        event_emitter_backend=NoEventListeners,  # no listeners: no anyio task group at start (edge/serving.py)
        openapi_config=OpenAPIConfig(title="Backroom HQ", version=__version__, path="/schema"),
        debug=False,
    )
    document_on_first_use(app)  # /schema/openapi.json: bodies, errors and credentials as HQ reads them
    return app
