"""Referrals, the member inbox and campaigns at the hub (edge/engage/, docs/members.md)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import Parameter
from msgspec import Meta

from edge.api.openapi import body_operation
from edge.api.support import actor_of, decode_body, raw_json
from edge.background import background
from edge.engage import campaigns, referrals
from edge.engage.channels import channels_for
from edge.engage.policy import EngagePolicy, decode_policy, keep_secrets, shown
from edge.errors import ApiError
from edge.hub import Hub

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
INBOX_TIMEOUT_S = 1.5
SCHEDULE_CHECK_S = 300


def _perm(name: str) -> dict[str, Any]:
    return {"permission": name}


def _known(hub: Hub, member_id: str) -> None:
    if hub.db.reader().execute("SELECT 1 FROM members WHERE member_id = ?", (member_id,)).fetchone() is None:
        raise ApiError(404, "unknown_member", f"no member {member_id[:64]}")


@get("/api/v1/members/{member_id:str}/referrals", opt=_perm("members.read"), sync_to_thread=False)
def member_referrals(hub: Hub, member_id: str) -> Response[bytes]:
    """The member's code, who referred him, whom he referred and the rewards either way."""
    _known(hub, member_id)
    return raw_json(_encoder.encode(referrals.view(hub.db.reader(), member_id)))


class ReferrerIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    referral_code: Annotated[str, Meta(min_length=1, max_length=20)]


@post("/api/v1/members/{member_id:str}/referrer", opt=_perm("members.create"), status_code=200,
      operation_class=body_operation(ReferrerIn))
async def member_referrer(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Response[bytes]:
    """Name the member's referrer after sign-up (only before the first purchase, once)."""
    req = await decode_body(request, ReferrerIn)
    _known(hub, member_id)
    actor, at = actor_of(request), hub.clock.stamp()
    await hub.db.write(lambda conn: referrals.record(conn, member_id, req.referral_code, hub.store_id, actor, at))
    return raw_json(_encoder.encode(referrals.view(hub.db.reader(), member_id)))


@get("/api/v1/members/{member_id:str}/inbox", opt=_perm("members.read"))
async def member_inbox(request: Request[Any, Any, Any], hub: Hub, member_id: str,
                       limit: Annotated[int, Parameter(ge=1, le=200)] = 50) -> Response[bytes]:
    """The member's inbox. A paired hub asks HQ (short timeout) and keeps the answer; offline it shows
    what it kept (`source` "cache", with `hq_error`). A standalone hub shows its own campaigns."""
    _known(hub, member_id)
    messages, source, problem = await fetch_inbox(request.app.state, hub, member_id, limit)
    body: dict[str, Any] = {"member_id": member_id, "source": source, "messages": messages}
    if problem:
        body["hq_error"] = problem
    return raw_json(_encoder.encode(body))


class InboxAnswer(msgspec.Struct, frozen=True):
    messages: list[campaigns.InboxMessage]


async def fetch_inbox(app_state: Any, hub: Hub, member_id: str,
                      limit: int) -> tuple[list[campaigns.InboxMessage], str, str | None]:
    """(messages, source, problem): a paired hub asks HQ and keeps the answer; when HQ does not answer,
    what it kept ("cache"); a standalone hub its own ("hub")."""
    agent = getattr(app_state, "sync", None)
    source, problem = "hub", None
    if agent is not None:
        try:
            resp = await agent.call_hq("GET", f"/hq/v1/sync/members/{member_id}/inbox", params={"limit": str(limit)},
                                       timeout=INBOX_TIMEOUT_S)
        except httpx.HTTPError as exc:
            resp, problem = None, f"HQ unreachable: {type(exc).__name__}"
        if resp is not None and resp.status_code == 200:
            try:
                got = msgspec.json.decode(resp.content, type=InboxAnswer).messages
            except (msgspec.ValidationError, msgspec.DecodeError):
                problem = "HQ's answer did not decode"
            else:
                at = hub.clock.stamp()
                await hub.db.write(lambda conn: campaigns.cache_inbox(conn, got, at))
                source = "hq"
        elif resp is not None:
            problem = f"HQ answered {resp.status_code}"
        if problem is not None:
            source = "cache"
    return campaigns.inbox(hub.db.reader(), member_id, limit), source, problem


class RunIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    day: datetime.date | None = None

    def __post_init__(self) -> None:
        campaigns.check_day(self.day)


def _paired(hub: Hub) -> bool:
    return hub.db.reader().execute("SELECT 1 FROM sync_state").fetchone() is not None


async def run_now(hub: Hub, day: datetime.date) -> dict[str, Any]:
    """Generate `day`'s campaigns and deliver what is queued (a standalone hub)."""
    at = hub.clock.stamp()
    policy = referrals.load_policy(hub.db.reader())
    result = await hub.db.write(lambda conn: campaigns.run(conn, day, at, policy))
    rows = campaigns.queued(hub.db.reader())
    outcomes = await asyncio.to_thread(campaigns.deliver, rows, channels_for(policy))
    await hub.db.write(lambda conn: campaigns.record(conn, outcomes, hub.clock.stamp()))
    counts: dict[str, int] = {}
    for _, d in outcomes:
        counts[d.status] = counts.get(d.status, 0) + 1
    return {**msgspec.to_builtins(result), "delivered": counts}


@post("/api/v1/campaigns/run", opt=_perm("campaigns.run"), status_code=200, operation_class=body_operation(RunIn))
async def campaigns_run(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    """Run the campaigns now (a standalone hub; a paired hub's campaigns run at HQ: 409)."""
    body = await request.body()
    req = await decode_body(request, RunIn) if body.strip() else RunIn()
    if _paired(hub) or hub.config.hq_url is not None:
        raise ApiError(409, "campaigns_at_hq", "this store is part of a chain: HQ runs the campaigns")
    day = req.day or datetime.date.fromisoformat(hub.clock.today())
    return raw_json(_encoder.encode(await run_now(hub, day)))


@get("/api/v1/notifications", opt=_perm("campaigns.run"), sync_to_thread=False)
def notification_list(
        hub: Hub, status: Literal["queued", "delivered", "sent", "failed", "not_configured"] | None = None,
        member_id: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100) -> Response[bytes]:
    sql = ("SELECT id, member_id, campaign, period, channel, status, created_at, sent_at, error FROM notifications"
           " WHERE (? IS NULL OR status = ?) AND (? IS NULL OR member_id = ?) ORDER BY created_at DESC, id LIMIT ?")
    keys = ("id", "member_id", "campaign", "period", "channel", "status", "created_at", "sent_at", "error")
    rows = hub.db.reader().execute(sql, (status, status, member_id, member_id, limit)).fetchall()
    return raw_json(_encoder.encode({"notifications": [dict(zip(keys, r, strict=True)) for r in rows]}))


@get("/api/v1/engage/policy", opt=_perm("campaigns.run"), sync_to_thread=False)
def policy_get(hub: Hub) -> Response[bytes]:
    return raw_json(_encoder.encode(shown(referrals.load_policy(hub.db.reader()))))


@put("/api/v1/engage/policy", opt=_perm("campaigns.run"), operation_class=body_operation(EngagePolicy))
async def policy_put(request: Request[Any, Any, Any], hub: Hub) -> Response[bytes]:
    """The referral rewards, campaign settings and channel configuration (docs/members.md)."""
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request needs a JSON body (the whole policy)")
    try:
        new = decode_policy(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "invalid_field", str(exc)[:300]) from None

    def store(conn: Any) -> EngagePolicy:
        policy = keep_secrets(new, referrals.load_policy(conn))
        referrals.store_policy(conn, policy)
        return policy
    return raw_json(_encoder.encode(shown(await hub.db.write(store))))


@asynccontextmanager
async def engage_lifespan(app: Any) -> AsyncIterator[None]:
    """Give members their referral codes at start; a standalone hub runs its campaigns once a day (from the
    policy's hour). A paired hub, or one with an HQ configured, leaves campaigns to HQ."""
    hub = app.state.hub
    await hub.db.write(referrals.ensure_codes)

    async def daily() -> None:
        last = None
        while True:
            await asyncio.sleep(SCHEDULE_CHECK_S)  # checked every few minutes, the first time after a start
            try:
                policy = referrals.load_policy(hub.db.reader()).campaigns
                now = hub.clock.now()
                today = now.date()
                if (policy.scheduled and now.hour >= policy.schedule_hour and today != last
                        and hub.config.hq_url is None and not _paired(hub)):
                    log.info("campaigns for %s: %s", today, await run_now(hub, today))
                    last = today
            except Exception:
                log.exception("campaign run failed")

    async with background(daily()):
        yield


ENGAGE_ROUTES: list[Any] = [member_referrals, member_referrer, member_inbox, campaigns_run, notification_list,
                            policy_get, policy_put]
