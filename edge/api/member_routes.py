"""Member rules on the hub (docs/members.md): tier definitions and automatic tag rules (written only on a
standalone hub: a paired hub's come from HQ), the member list by tag, and a member's tier history."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get, put
from litestar.params import Parameter

from edge.api.openapi import body_operation
from edge.api.support import decode_body, may
from edge.errors import ApiError
from edge.hub import Hub
from edge.members import auto_tags, directory, tiers
from edge.members.directory import MemberRow
from edge.members.tagging import TagRuleSet
from edge.members.tagging import check_rules as check_tag_rules
from edge.members.tiering import TierChange, TierSettings, check_settings


class MemberList(msgspec.Struct, frozen=True):
    members: list[MemberRow]
    total: int


class TierChangeList(msgspec.Struct, frozen=True):
    changes: list[TierChange]


class RulesApplied(msgspec.Struct, frozen=True):
    tier_changes: int = 0
    tags_changed: int = 0


def _standalone_only(conn: Any) -> None:
    if not tiers.is_standalone(conn):
        raise ApiError(409, "managed_by_hq", "this store is paired with HQ: tiers and tag rules are set at HQ")


@get("/api/v1/tiers", opt={"permission": "members.read"}, sync_to_thread=False)
def tier_list(hub: Hub) -> TierSettings:
    return tiers.read_settings(hub.db.reader())


@put("/api/v1/tiers", opt={"permission": "members.rules"}, operation_class=body_operation(TierSettings))
async def tier_put(request: Request[Any, Any, Any], hub: Hub) -> RulesApplied:
    """Replace the tier definitions; every member is reviewed at once (an upgrade applies now)."""
    settings = await decode_body(request, TierSettings)
    today, at = datetime.date.fromisoformat(hub.clock.today()), hub.clock.stamp()

    def write(conn: Any) -> RulesApplied:
        _standalone_only(conn)
        problem = check_settings(settings, tiers.existing_tiers(conn))
        if problem is not None:
            raise ApiError(422, "bad_tiers", problem)
        tiers.put_settings(conn, settings)
        return RulesApplied(tier_changes=len(tiers.review(conn, today, at)))

    return await hub.db.write(write)


@get("/api/v1/tag-rules", opt={"permission": "members.read"}, sync_to_thread=False)
def tag_rules_list(hub: Hub) -> TagRuleSet:
    return TagRuleSet(rules=auto_tags.read_rules(hub.db.reader()))


@put("/api/v1/tag-rules", opt={"permission": "members.rules"}, operation_class=body_operation(TagRuleSet))
async def tag_rules_put(request: Request[Any, Any, Any], hub: Hub) -> RulesApplied:
    """Replace the automatic tag rules; every member's automatic tags are recomputed at once."""
    rule_set = await decode_body(request, TagRuleSet)
    problem = check_tag_rules(rule_set.rules)
    if problem is not None:
        raise ApiError(422, "bad_tag_rules", problem)
    today = datetime.date.fromisoformat(hub.clock.today())

    def write(conn: Any) -> RulesApplied:
        _standalone_only(conn)
        auto_tags.put_rules(conn, rule_set.rules)
        return RulesApplied(tags_changed=len(auto_tags.recompute(conn, today)))

    return await hub.db.write(write)


@get("/api/v1/members", opt={"permission": "members.read"}, sync_to_thread=False)
def member_list(
    request: Request[Any, Any, Any], hub: Hub,
    tag: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=1_000_000)] = 0,
) -> MemberList:
    """Members newest first; `tag` keeps those carrying it (manual or automatic)."""
    show_phone = may(request, "members.phone")
    reader = hub.db.reader()
    if tag is None:
        rows, total = directory.newest(reader, show_phone=show_phone, limit=limit, offset=offset)
    else:
        rows, total = directory.tagged(reader, tag, show_phone=show_phone, limit=limit, offset=offset)
    return MemberList(members=rows, total=total)


@get("/api/v1/members/{member_id:str}/tier-changes", opt={"permission": "members.read"}, sync_to_thread=False)
def member_tier_changes(hub: Hub, member_id: str) -> TierChangeList:
    return TierChangeList(changes=tiers.member_history(hub.db.reader(), member_id[:64]))


MEMBER_RULE_ROUTES = [tier_list, tier_put, tag_rules_list, tag_rules_put, member_list, member_tier_changes]
