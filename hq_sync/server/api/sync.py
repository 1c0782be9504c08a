"""The hub endpoints (`/hq/v1/sync/...`): every request signed by the store's key (pairing excepted)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp, Receive, Scope, Send

from edge.stopping import stopping
from hq_sync.server.api.support import MSGPACK, decode, decode_bytes, hq_of, in_thread, json_response, signed_store
from hq_sync.server.service import coupons, digests, feed, intake, member_rules, members, stores, transfers
from hq_sync.server.service.errors import HqError, now_text
from hq_sync.wire import (
    AuthorizeRequest,
    CouponReserve,
    DigestReport,
    PairRequest,
    StockReport,
    feed_page_encoder,
)

log = logging.getLogger(__name__)
POLL_SPREAD = 0.2
FEED_SOURCE_HEADER = "x-backroom-feed-source"  # where a feed page came from: "memory" (the tail) or "database"


# -- hub endpoints -----------------------------------------------------------------------------------------

@post("/hq/v1/sync/pair", status_code=200)
async def sync_pair(request: Request[Any, Any, Any]) -> Response[bytes]:
    req = await decode(request, PairRequest)
    hq = hq_of(request)
    result = await in_thread(stores.pair, hq.db, req, hq.private_key, hq.public_key, hq.demo, now_text())
    hq.forget_key(req.store_id)
    hq.events.sweep_soon()  # the store's home members get their standing escrow
    hq.signal.notify()
    return json_response(msgspec.to_builtins(result))


def _few_batches_at_once(app: ASGIApp) -> ASGIApp:
    """A few batches at a time go into the handler (`Hq.batch_gate`); the rest wait here, before any of the
    handler's work. When a thousand stores upload at once, their requests, signature checks and hand-overs no
    longer all run on the event loop in the same moment, ahead of every authorisation and feed poll that came
    in behind them (docs/hq-serving.md "A burst of uploads")."""

    async def gated(scope: Scope, receive: Receive, send: Send) -> None:
        async with scope["app"].state.hq.batch_gate():
            await app(scope, receive, send)

    return gated


@post("/hq/v1/sync/batches", status_code=200, middleware=[_few_batches_at_once])
async def sync_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = await signed_store(request, body)
    hq = hq_of(request)
    # The batch lane (scheduling.py): processes (PostgreSQL) or threads of its own, at most BATCH_THREADS
    # batches at once
    ack, has_transfer, fed, touched, heard = await hq.lane.run(
        intake.decode_and_ingest, body, request.headers.get("content-encoding"), store_id, now_text())
    if heard.released:  # after the commit: a woken authorisation must see the release
        hq.releases.notify(set(heard.released))
    if heard.shopping:
        hq.events.shopped(heard.shopping)
    if has_transfer or fed > 0:
        hq.signal.notify()  # a transfer step, a member or balances went onto stores' feeds
    if touched:  # upgrades apply as soon as a batch brings a member's figures over a threshold
        if await hq.lane.run(member_rules.after_batch, hq.private_key, touched, member_rules.chain_today(),
                             now_text()):
            hq.signal.notify()
    return json_response(msgspec.to_builtins(ack))


@get("/hq/v1/sync/state")
async def sync_state(request: Request[Any, Any, Any]) -> Response[bytes]:
    store_id = await signed_store(request, b"")
    acked = await in_thread(stores.store_acked, hq_of(request).db, store_id)
    return json_response({"store_id": store_id, "acked": acked})


@get("/hq/v1/sync/feed")
async def sync_feed(request: Request[Any, Any, Any], after: Annotated[int, Parameter(ge=0, le=2**63 - 1)] = 0,
                    wait: Annotated[float, Parameter(ge=0, le=60)] = 0,
                    limit: Annotated[int, Parameter(ge=1, le=1000)] = 200) -> Response[bytes]:
    """The store's feed after `after`; with `wait`, held open until something arrives (long-poll)."""
    store_id = await signed_store(request, b"")
    hq = hq_of(request)
    hq.heard_from(store_id)
    hq.polled(store_id, after)  # which stores have a price change (the console's price history)
    # Held up to `wait`, less by up to a fifth at random: polls that a chain-wide entry woke together would
    # otherwise all time out together again and again, a thousand answers and re-polls in one burst on the
    # event loop, while the tills' authorisations wait behind it (docs/hq-serving.md, "Authorisations first")
    deadline = time.monotonic() + wait * (1 - POLL_SPREAD * random.random())
    tail = hq.waits.tail
    woke = False
    while True:
        # Held as a future of this worker's FeedWaits, not a thread: woken when this store's feed (or
        # everyone's) moves, whichever worker appended (resources.py, bus.py), and answered from the worker's
        # feed tail, which the wake-up filled (feed_tail.py). The first look must see every entry committed
        # before the poll, whoever appended it: when the tail has nothing for the store yet, the poll waits
        # for one take-in that begins after it arrived (shared by every poll arriving meanwhile: one query
        # for all of them, where each read the database). A poll that does not wait, a store the tail has
        # no head for, or a cursor older than the tail reads the database.
        woken = hq.waits.add(store_id) if wait > 0 else None
        try:
            page = tail.page(store_id, after, limit) if woken is not None else None
            if page is not None and not page.entries and not woke:
                caught_up = await hq.waits.caught_up(deadline - time.monotonic())
                page = tail.page(store_id, after, limit) if caught_up else None
            source = "memory"
            if page is None:
                generation = tail.generation
                page = await in_thread(feed.read_feed, hq.db, store_id, after, limit)
                tail.learned(store_id, page.head, generation)
                source = "database"
            remaining = deadline - time.monotonic()
            if page.entries or remaining <= 0 or woken is None or stopping():  # stopping: answered at once
                return Response(feed_page_encoder.encode(page), media_type=MSGPACK,
                                headers={FEED_SOURCE_HEADER: source})
            await asyncio.wait({woken}, timeout=remaining)
            woke = woken.done()
        finally:
            if woken is not None:
                hq.waits.remove(store_id, woken)


@post("/hq/v1/sync/authorize", status_code=200)
async def sync_authorize(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = await signed_store(request, body)
    req = decode_bytes(body, AuthorizeRequest)
    hq = hq_of(request)
    at = now_text()
    marks = [time.perf_counter()] if hq.timing.on else None  # the phases (scheduling.Timing), when timed
    # The whole authorisation runs on one worker thread: it may wait (bounded) for other stores' releases;
    # reclaim entries it appends wake those stores' feed long-polls at once (`fed`).
    try:
        g = await anyio.to_thread.run_sync(lambda: members.authorize(
            hq.auth_db, hq.private_key, store_id, req, at, releases=hq.releases, wait_s=hq.policy.authorize_wait_s,
            fed=hq.signal.notify, marks=marks), limiter=hq.authorize_limiter())
    finally:
        hq.signal.notify()
    if marks is not None:
        marks.append(time.perf_counter())
        hq.timing.authorised(time.time(), marks)
    hq.events.shopped([(req.member_id, store_id)])
    return json_response(msgspec.to_builtins(g))


@post("/hq/v1/sync/digests", status_code=200)
async def sync_digests(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = await signed_store(request, body)
    report = decode_bytes(body, DigestReport)
    verdict = await in_thread(digests.check_digests, hq_of(request).db, store_id, report.rows, report.upto, now_text())
    return json_response(msgspec.to_builtins(verdict))


@post("/hq/v1/sync/stock", status_code=200)
async def sync_stock_report(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = await signed_store(request, body)
    report = decode_bytes(body, StockReport)
    count = await in_thread(transfers.put_stock_report, hq_of(request).db, store_id, report)
    return json_response({"store_id": store_id, "levels": count})


@get("/hq/v1/sync/stock/{sku:str}")
async def sync_stock_lookup(request: Request[Any, Any, Any], sku: str) -> Response[bytes]:
    """Every store's on-hand of a sku from HQ's snapshot, for a store's cross-store lookup."""
    await signed_store(request, b"")
    return json_response({"sku": sku, "stores": await in_thread(transfers.stock_levels, hq_of(request).db, sku)})



@get("/hq/v1/sync/members/lookup")
async def sync_member_lookup(
    request: Request[Any, Any, Any],
    phone: Annotated[str | None, Parameter(max_length=32)] = None,
    card: Annotated[str | None, Parameter(max_length=32)] = None,
    member_id: Annotated[str | None, Parameter(max_length=64)] = None,
) -> Response[bytes]:
    """A store's lookup miss (or balance refresh): the member's profile, chain-wide balance and aliases."""
    store_id = await signed_store(request, b"")
    if sum(v is not None for v in (phone, card, member_id)) != 1:
        raise HqError(400, "invalid_query", "look up by exactly one of phone, card or member_id")
    found = await in_thread(lambda: members.lookup_for_store(hq_of(request).db, store_id, member_id=member_id,
                                                             phone=phone, card=card, at=now_text()))
    return json_response(msgspec.to_builtins(found))


@post("/hq/v1/sync/coupons/reserve", status_code=200)
async def sync_coupon_reserve(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await request.body()
    store_id = await signed_store(request, body)
    req = decode_bytes(body, CouponReserve)
    return json_response(await in_thread(coupons.reserve, hq_of(request).db, store_id, req, now_text()))




ROUTES = [
    sync_pair, sync_batch, sync_state, sync_feed, sync_authorize, sync_digests, sync_stock_report,
    sync_stock_lookup, sync_coupon_reserve, sync_member_lookup,
]
