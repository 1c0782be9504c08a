"""Referrals and campaigns at HQ (service/engage.py): the admin endpoints and the hubs' inbox read."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, get, post, put
from litestar.params import Parameter

from edge.background import background
from edge.engage.campaigns import check_day
from edge.engage.policy import EngagePolicy, shown
from hq_sync.server.api.openapi import with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response, signed_store
from hq_sync.server.service import engage
from hq_sync.server.service.access import Principal
from hq_sync.server.service.errors import now_text

log = logging.getLogger(__name__)
SCHEDULE_CHECK_S = 300


@get("/hq/v1/engage/policy")
async def policy_get(request: Request[Any, Any, Any]) -> Response[bytes]:
    acting(request, "campaigns.read")
    return json_response(shown(await in_thread(engage.read_policy, hq_of(request).db)))


@put("/hq/v1/engage/policy", operation_class=with_body(EngagePolicy))
async def policy_put(request: Request[Any, Any, Any]) -> Response[bytes]:
    who = acting(request, "campaigns.manage")
    body = await request.body()
    return json_response(shown(await in_thread(engage.put_policy, hq_of(request).db, who, body)))


class RunIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    day: datetime.date | None = None  # the chain-local day to run for (default: today)

    def __post_init__(self) -> None:
        check_day(self.day)


async def _run(hq: Any, day: datetime.date, who: Principal | None = None) -> dict[str, Any]:
    result: dict[str, Any] = await in_thread(engage.run_campaigns, hq.db, day, now_text(), who)
    result["delivered"] = await in_thread(engage.deliver_queued, hq.db, now_text())
    hq.signal.notify()  # birthday coupons went down the feed
    return result


@post("/hq/v1/campaigns/run", status_code=200, operation_class=with_body(RunIn))
async def campaigns_run(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Generate today's (or `day`'s) campaigns now and deliver them; a rerun adds nothing."""
    who = acting(request, "campaigns.manage")
    body = await request.body()
    req = await decode(request, RunIn) if body.strip() else RunIn()
    return json_response(await _run(hq_of(request), req.day or engage.today_local(), who))


@get("/hq/v1/notifications")
async def notification_list(
        request: Request[Any, Any, Any],
        status: Literal["queued", "delivered", "sent", "failed", "not_configured"] | None = None,
        member_id: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100) -> Response[bytes]:
    acting(request, "campaigns.read")
    rows = await in_thread(engage.notifications, hq_of(request).db, status, member_id, limit)
    return json_response({"notifications": rows})


@get("/hq/v1/members/{member_id:str}/referrals")
async def member_referrals(request: Request[Any, Any, Any], member_id: str) -> Response[bytes]:
    acting(request, "members.read")
    return json_response(await in_thread(engage.referral_view, hq_of(request).db, member_id[:64]))


@get("/hq/v1/members/{member_id:str}/inbox")
async def member_inbox(request: Request[Any, Any, Any], member_id: str,
                       limit: Annotated[int, Parameter(ge=1, le=200)] = 50) -> Response[bytes]:
    acting(request, "members.read")
    return json_response({"member_id": member_id[:64],
                           "messages": await in_thread(engage.inbox, hq_of(request).db, member_id[:64], limit)})


@get("/hq/v1/sync/members/{member_id:str}/inbox")
async def sync_member_inbox(request: Request[Any, Any, Any], member_id: str,
                            limit: Annotated[int, Parameter(ge=1, le=200)] = 50) -> Response[bytes]:
    """A member's inbox for a store's member page or till (signed by the store)."""
    await signed_store(request, b"")
    return json_response({"member_id": member_id[:64],
                           "messages": await in_thread(engage.inbox, hq_of(request).db, member_id[:64], limit)})


@asynccontextmanager
async def campaign_schedule(app: Litestar) -> AsyncIterator[None]:
    """Once a chain-local day, at or after the policy's hour, generate and deliver the campaigns."""
    hq = app.state.hq

    async def daily() -> None:
        while True:
            await asyncio.sleep(SCHEDULE_CHECK_S)  # checked every few minutes, the first time after a start
            try:
                await _tick(hq)
            except Exception:
                log.exception("campaign run failed")

    async with background(daily()):
        yield


async def _tick(hq: Any) -> None:
    if not hq.leads():  # with several workers, the leader's schedule runs the campaigns
        return
    now = datetime.datetime.now(engage.timezone())
    policy = await in_thread(engage.read_policy, hq.db)
    if not policy.campaigns.scheduled or now.hour < policy.campaigns.schedule_hour:
        return
    if await in_thread(engage.last_run_day, hq.db) == now.date().isoformat():
        return
    result = await _run(hq, now.date())
    await in_thread(engage.mark_run_day, hq.db, now.date().isoformat())
    log.info("campaigns for %s: %s", now.date(), result)


ADMIN_ROUTES = [policy_get, policy_put, campaigns_run, notification_list, member_referrals, member_inbox]
ROUTES = [policy_get, policy_put, campaigns_run, notification_list, member_referrals, member_inbox,
          sync_member_inbox]
