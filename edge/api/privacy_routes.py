"""Members' personal data on the API (members.privacy, managers): the audit of unmasked reads, export
and erase on request (edge/members/privacy.py, docs/privacy.md). `audit_read` is what every other
route that answers an unmasked phone calls before it answers."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import Parameter

from edge.api.support import actor_of
from edge.errors import ApiError
from edge.hub import Hub
from edge.members import privacy

_PERM = {"permission": "members.privacy"}
MemberId = Annotated[str, Parameter(min_length=1, max_length=64)]


async def audit_read(request: Request[Any, Any, Any], hub: Hub, member_ids: list[str],
                     fields: tuple[str, ...] = privacy.PERSONAL_FIELDS, action: str = "read",
                     via: privacy.Via = "api") -> None:
    """Record, durably and before the data leaves, that this login read these members unmasked."""
    if not member_ids:
        return
    actor = actor_of(request)
    at = hub.clock.stamp()
    await hub.db.write(lambda conn: privacy.record_reads(conn, member_ids, fields, action, via, actor, at))


@get("/api/v1/members/audit", opt=_PERM, sync_to_thread=False)
def member_audit(
    hub: Hub,
    member_id: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
) -> privacy.AuditPage:
    """Reads of unmasked personal data, erasures and exports, newest first."""
    return privacy.audit_page(hub.db.reader(), member_id=member_id, limit=limit, offset=offset)


@get("/api/v1/members/{member_id:str}/export", opt=_PERM)
async def member_export(request: Request[Any, Any, Any], hub: Hub, member_id: MemberId) -> privacy.MemberExport:
    """Everything this hub holds about the member, as JSON (audited)."""
    doc = privacy.export(hub.db.reader(), member_id, hub.store_id, hub.clock.stamp())
    if doc is None:
        raise ApiError(404, "unknown_member", f"no member {member_id[:64]}")
    await audit_read(request, hub, [member_id], action="export")
    return doc


@post("/api/v1/members/{member_id:str}/erase", opt=_PERM, status_code=200)
async def member_erase(request: Request[Any, Any, Any], hub: Hub, member_id: MemberId) -> privacy.EraseResult:
    """Remove the member's phone, name, birthday, card and tags here and, through HQ, at every store.
    Ledgers and sales stay under the member id; the journal keeps a tombstone."""
    actor = actor_of(request)
    at = hub.clock.stamp()
    result = await hub.db.write(lambda conn: privacy.erase(conn, member_id, actor, at, "api"))
    await hub.db.run_checkpoint()
    return result


PRIVACY_ROUTES = [member_audit, member_export, member_erase]
