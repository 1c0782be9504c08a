"""Member rules at HQ (docs/members.md): tier definitions (`GET/PUT /hq/v1/tiers`), automatic tag rules
(`GET/PUT /hq/v1/tag-rules`), recorded tier changes, and the daily member pass (an app lifespan timer)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, get, post, put
from litestar.params import Parameter

from edge.background import background
from edge.members.tagging import TagRuleSet
from edge.members.tiering import TierSettings
from hq_sync.server.api.openapi import with_body
from hq_sync.server.api.support import acting, decode, hq_of, in_thread, json_response
from hq_sync.server.service import member_rules
from hq_sync.server.service.errors import now_text

log = logging.getLogger(__name__)
PASS_CHECK_S = 300  # how often the timer looks whether HQ's date changed


async def _pass(request: Request[Any, Any, Any]) -> member_rules.PassResult:
    hq = hq_of(request)
    at = now_text()
    done: member_rules.PassResult = await in_thread(member_rules.daily_pass, hq.db, hq.private_key,
                                                      member_rules.chain_today(), at)
    if done.feed_seqs:
        hq.signal.notify()
    return done


@get("/hq/v1/tiers")
async def tiers_get(request: Request[Any, Any, Any]) -> Response[bytes]:
    acting(request, "members.read")

    def read() -> TierSettings:
        with hq_of(request).db.read() as tx:
            return member_rules.read_settings(tx)

    return json_response(msgspec.to_builtins(await in_thread(read)))


@put("/hq/v1/tiers", operation_class=with_body(TierSettings))
async def tiers_put(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Replace the tier definitions, send them to every store, and review every member at once."""
    who = acting(request, "members.rules")
    settings = await decode(request, TierSettings)
    hq = hq_of(request)
    seq = await in_thread(member_rules.put_settings, hq.db, who, hq.private_key, settings, now_text())
    hq.signal.notify()
    done = await _pass(request)
    return json_response({**msgspec.to_builtins(settings), "feed_seq": seq, "tier_changes": done.tier_changes})


@get("/hq/v1/tag-rules")
async def tag_rules_get(request: Request[Any, Any, Any]) -> Response[bytes]:
    acting(request, "members.read")

    def read() -> TagRuleSet:
        with hq_of(request).db.read() as tx:
            return TagRuleSet(rules=member_rules.read_tag_rules(tx))

    return json_response(msgspec.to_builtins(await in_thread(read)))


@put("/hq/v1/tag-rules", operation_class=with_body(TagRuleSet))
async def tag_rules_put(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Replace the automatic tag rules and recompute every member's automatic tags at once."""
    who = acting(request, "members.rules")
    rule_set = await decode(request, TagRuleSet)
    await in_thread(member_rules.put_tag_rules, hq_of(request).db, who, rule_set.rules, now_text())
    done = await _pass(request)
    return json_response({**msgspec.to_builtins(rule_set), "tags_changed": done.tags_changed})


@post("/hq/v1/members/review", status_code=200)
async def members_review(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Run the daily member pass now (tier reviews and automatic tags)."""
    acting(request, "members.rules")
    return json_response(msgspec.to_builtins(await _pass(request)))


@get("/hq/v1/tier-changes")
async def tier_changes(request: Request[Any, Any, Any],
                       after: Annotated[int, Parameter(ge=0, le=2**62)] = 0,
                       member_id: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
                       limit: Annotated[int, Parameter(ge=1, le=1000)] = 200) -> Response[bytes]:
    """Recorded tier changes after `after` (a change_id), oldest first; of one member with `member_id`."""
    acting(request, "members.read")
    found = await in_thread(lambda: member_rules.tier_changes(hq_of(request).db, member_id=member_id, after=after,
                                                               limit=limit))
    return json_response({"changes": msgspec.to_builtins(found)})


@asynccontextmanager
async def member_pass_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The daily member pass: once a day (chain date), the first one done before HQ serves (a restart on a
    day that already had its pass skips it), then whenever the chain's date changes."""
    hq = app.state.hq

    async def once(today: datetime.date) -> datetime.date:
        try:
            done = await in_thread(member_rules.daily_pass_once, hq.db, hq.private_key, today, now_text())
            if done is not None and done.feed_seqs:
                hq.signal.notify()
            if done is not None:
                log.info("member pass: %d members, %d tier changes, %d tag changes", done.members,
                         done.tier_changes, done.tags_changed)
        except Exception:
            log.exception("member pass failed")
        return today

    async def daily(last: datetime.date | None) -> None:
        while True:
            await asyncio.sleep(PASS_CHECK_S)
            if member_rules.chain_today() != last and hq.leads():  # one worker of several runs it
                last = await once(member_rules.chain_today())

    first = await once(member_rules.chain_today()) if hq.leads() else None
    async with background(daily(first)):
        yield


ROUTES = [tiers_get, tiers_put, tag_rules_get, tag_rules_put, members_review, tier_changes]
