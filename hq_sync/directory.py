"""The hub's side of the chain's member directory (docs/sync.md "Members across the chain"): a member
this store lacks is asked of HQ online, and a member it has gets its chain-wide balance refreshed.

HQ's answer (`GET /hq/v1/sync/members/lookup`, signed, short timeout) goes into the member cache with
its balance snapshot and aliases (`cache_answer`, one writer transaction). Out of reach of HQ the miss
is `404 member_unknown_offline`, a hit is served from the cache; a hub without an HQ answers from its
own ledger as before.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import msgspec

from edge.errors import ApiError
from edge.members import chainwide
from hq_sync import hub_state
from hq_sync.caller import HqCaller
from hq_sync.wire import MemberFound

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)

log = logging.getLogger(__name__)
LOOKUP_PATH = "/hq/v1/sync/members/lookup"


class Offline(Exception):
    """HQ could not be asked (not reachable, not answering in time, this hub not paired)."""


def offline_error() -> ApiError:
    return ApiError(404, "member_unknown_offline",
                    "this store does not know the member and HQ cannot be reached to ask; "
                    "try again when the store is online, or sell without the member")


def cache_answer(conn: sqlite3.Connection, found: MemberFound, at: str) -> str:
    """HQ's answer into the cache: profile, aliases, chain-wide balance. Returns the member id."""
    member = found.member
    hub_state.put_member(conn, member, at)
    chainwide.record_aliases(conn, member.member_id, found.aliases, at)
    chainwide.put_balances(conn, [(member.member_id, found.balance, found.points)], found.as_of, found.acked)
    return member.member_id


async def ask_hq(caller: HqCaller, hub: Any, timeout: float, *, member_id: str | None = None,
                 phone: str | None = None, card: str | None = None) -> str | None:
    """HQ's member for this id, phone or card, cached here; None when HQ does not know it either.
    Raises Offline when HQ cannot be asked."""
    if not caller.online:
        raise Offline("the sync agent is offline")
    params = {k: v for k, v in (("member_id", member_id), ("phone", phone), ("card", card)) if v is not None}
    if any(len(v) > 64 for v in params.values()):
        return None  # no member has such an id, phone or card
    try:
        resp = await caller.call_hq("GET", LOOKUP_PATH, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise Offline(type(exc).__name__) from None
    if resp is None:
        raise Offline("not paired")
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise Offline(f"HQ answered {resp.status_code}")
    try:
        found = msgspec.json.decode(resp.content, type=MemberFound)
    except msgspec.DecodeError as exc:
        raise Offline(f"undecodable answer: {exc}") from None
    at = hub.clock.stamp()
    return await hub.db.write(lambda conn: cache_answer(conn, found, at))  # type: ignore[no-any-return]


def _caller(app_state: Any) -> HqCaller | None:
    return getattr(app_state, "sync", None)


def _timeouts(caller: HqCaller) -> tuple[float, float]:
    settings = getattr(caller, "settings", None)
    return (float(getattr(settings, "lookup_timeout_s", 1.5)), float(getattr(settings, "member_refresh_timeout_s",
                                                                               0.5)))


async def lookup(app_state: Any, hub: Any, *, member_id: str | None = None, phone: str | None = None,
                 card: str | None = None, known: bool) -> str | None:
    """Before a member read: a member this store knows (`known`) is refreshed from HQ (short timeout; the cache
    answers if HQ does not); one it lacks is asked of HQ. Returns HQ's member id for a miss HQ answered,
    None otherwise; raises `member_unknown_offline` for a miss HQ could not be asked about. No-op
    without an HQ."""
    caller = _caller(app_state)
    if caller is None:
        return None
    miss_timeout, refresh_timeout = _timeouts(caller)
    try:
        return await ask_hq(caller, hub, refresh_timeout if known else miss_timeout, member_id=member_id,
                            phone=phone, card=card)
    except Offline as exc:
        if known:
            log.info("member refresh from HQ failed (%s); showing the cached balance", exc)
            return None
        raise offline_error() from None


async def refuse_known(app_state: Any, hub: Any, phone: str, card: str | None) -> None:
    """Before a sign-up at a paired store: a phone or card HQ already knows is `409 member_exists` naming
    the member (now cached here), not a second record to merge later. Offline the sign-up goes ahead
    (HQ merges a duplicate when it arrives)."""
    caller = _caller(app_state)
    if caller is None:
        return
    timeout = _timeouts(caller)[0]
    for key, value in (("phone", phone), ("card", card)):
        if value is None:
            continue
        try:
            found = await ask_hq(caller, hub, timeout, **{key: value})
        except Offline:
            return
        if found is not None:
            raise ApiError(409, "member_exists", f"a member with this {key} already exists in the chain",
                           member_id=found)


async def ensure_member(app_state: Any, hub: Any, member_id: str | None) -> str | None:
    """The member a quote or sale names, as this store knows it: an alias resolves to its member; a member
    this store lacks is fetched from HQ (offline: `member_unknown_offline`; unknown at HQ too: left for the
    quote to refuse as `unknown_member`)."""
    if member_id is None:
        return None
    reader = hub.db.reader()
    resolved = chainwide.resolve(reader, member_id)
    if reader.execute("SELECT 1 FROM members WHERE member_id = ?", (resolved,)).fetchone() is not None:
        return resolved
    caller = _caller(app_state)
    if caller is None:
        return member_id
    try:
        found = await ask_hq(caller, hub, _timeouts(caller)[0], member_id=member_id)
    except Offline:
        raise offline_error() from None
    return found or member_id
