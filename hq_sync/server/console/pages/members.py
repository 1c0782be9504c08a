"""Members (会员): search the chain's members by phone, card or name; a member's chain-wide balance and
points with the escrow each store holds, history across stores, manual adjustments with a reason, tier
and tags, and taking escrow back from the stores.

Everything goes through service/member_desk.py with the reader's principal: masking (`members.phone`),
the record of unmasked views, region scope of per-store detail, the adjustment rules (append-only,
audited, `balance ≥ Σ escrow ≥ 0`) are decided there, for the console and the API alike. Forms carry
the CSRF token; an adjustment carries an id made when the page was drawn, so a form sent twice books
once.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.response import Redirect

from edge.ui.pages.members import LEDGER_KINDS, yuan_to_fen
from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import N_
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import member_desk, members
from hq_sync.server.service.errors import HqError, now_text

KINDS = {**LEDGER_KINDS, "adjust": N_("Adjusted at HQ"), "merge_in": N_("Merged in"),
         "merge_out": N_("Merged away")}
LEDGERS = {"value": N_("Stored value"), "points": N_("Points")}
MAX_FIELD = 200


def member_path(member_id: str) -> str:
    return f"/hq/ui/members/{quote(member_id, safe='')}"


@get("/hq/ui/members", opt=page("members.read"), sync_to_thread=True)
def members_page(request: Request[Any, Any, Any], q: str = "") -> Response[str]:
    ui = ConsoleView(request)
    query = q.strip()[:64]
    hits = member_desk.search(ui.hq.db, ui.who, query, now_text()) if query else []
    return ui.render("members/index.html", title=ui._("Members"), q=query, hits=hits, limit=member_desk.SEARCH_LIMIT,
                     path=member_path)


@get("/hq/ui/members/{member_id:str}", opt=page("members.read"), sync_to_thread=True)
def member_page(request: Request[Any, Any, Any], member_id: str) -> Response[str]:
    ui = ConsoleView(request)
    view = member_desk.detail(ui.hq.db, ui.who, member_id[:64], now_text())
    return ui.render("members/member.html", title=view["name"] or view["member_id"], m=view, kinds=KINDS,
                     ledgers=LEDGERS, adjustment_id=str(uuid.uuid4()), path=member_path(view["member_id"]),
                     can_change=member_desk.may_change(ui.hq.db, ui.who, view["member_id"]),
                     can_merge=member_desk.merge_service() is not None)


def _amount(ledger: str, text: str) -> int | None:
    """Stored value in yuan (exact fen), points as a whole number."""
    if ledger == "value":
        return yuan_to_fen(text)
    cleaned = text.strip()
    return int(cleaned) if cleaned.isdigit() and len(cleaned) <= 9 else None


@post("/hq/ui/members/{member_id:str}/adjust", opt=page("members.write"))
async def member_adjust(request: Request[Any, Any, Any], member_id: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    back = member_path(member_id[:64])
    ledger = form.get("ledger", "")
    amount = _amount(ledger, form.get("amount", "")) if ledger in LEDGERS else None
    direction = form.get("direction", "")
    if amount is None or amount <= 0 or direction not in ("add", "deduct"):
        return ui.redirect(back, error=ui._("Give a positive amount (yuan with at most two decimals, or whole "
                                            "points) and whether to add or deduct it."))
    adj = member_desk.Adjustment(adjustment_id=form.get("adjustment_id", "")[:MAX_FIELD], ledger=ledger,
                                 delta=amount if direction == "add" else -amount,
                                 reason=form.get("reason", "")[:MAX_FIELD + 1])
    try:
        done = await in_thread(member_desk.adjust, ui.hq.db, ui.who, member_id[:64], adj, now_text())
    except HqError as exc:
        if exc.status == 403:
            raise  # a forged form: the 403 page, nothing written
        if exc.code in ("insufficient_balance", "insufficient_points"):
            shown = ui.fmt.money(exc.extra["available"]) if ledger == "value" else ui.fmt.number(exc.extra["available"])
            return ui.redirect(back, error=ui._("The member has only %(amount)s.") % {"amount": shown})
        if exc.code == "escrow_held":
            shown = ui.fmt.money(exc.extra["unallocated"]) if ledger == "value" else \
                ui.fmt.number(exc.extra["unallocated"])
            return ui.redirect(back, error=ui._("Only %(amount)s is not held by stores. Take the stores' escrow back "
                                                "first, then deduct again once they have given it back.")
                               % {"amount": shown})
        if exc.code == "reason_required":
            return ui.redirect(back, error=ui._("Say why: a reason of 1 to 200 characters is required."))
        return ui.redirect(back, error=ui.problem(exc))
    if done["repeated"]:
        return ui.redirect(back, notice=ui._("This adjustment was already booked."))
    return ui.redirect(back, notice=ui._("Adjustment booked."))


@post("/hq/ui/members/{member_id:str}/profile", opt=page("members.write"))
async def member_profile(request: Request[Any, Any, Any], member_id: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    back = member_path(member_id[:64])
    tags = [t for t in form.get("tags", "").replace("，", ",").split(",")][:member_desk.MAX_TAGS + 1]
    change = member_desk.ProfileEdit(tier=form.get("tier") or None, tags=tags)
    try:
        done = await in_thread(member_desk.edit, ui.hq.db, ui.hq.private_key, ui.who, member_id[:64], change,
                                now_text())
    except HqError as exc:
        if exc.status == 403:
            raise  # a forged form: the 403 page, nothing written
        if exc.code == "invalid_field":
            return ui.redirect(back, error=ui._("Tags: at most 20, each 1 to 32 letters, digits or - . _ :"))
        return ui.redirect(back, error=ui.problem(exc))
    if done["changed"]:
        ui.hq.signal.notify()
        return ui.redirect(back, notice=ui._("Tier and tags saved; the stores receive them."))
    return ui.redirect(back, notice=ui._("Nothing changed."))


@post("/hq/ui/members/{member_id:str}/reclaim", opt=page("members.reclaim"))
async def member_reclaim(request: Request[Any, Any, Any], member_id: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    back = member_path(member_id[:64])
    ledger = form.get("ledger", "value")
    if ledger not in LEDGERS:
        return ui.redirect(back, error=ui._("Choose stored value or points."))
    try:
        asked = await in_thread(members.reclaim, ui.hq.db, ui.who, ui.hq.private_key, member_id[:64], ledger, None,
                                 now_text())
    except HqError as exc:
        if exc.status == 403:
            raise  # a forged form: the 403 page, nothing written
        return ui.redirect(back, error=ui.problem(exc))
    ui.hq.signal.notify()
    if not asked:
        return ui.redirect(back, notice=ui._("No store holds any of it."))
    return ui.redirect(back, notice=ui._("The stores were asked to give it back; it shows as not held once they "
                                         "have (seconds when they are online)."))


@post("/hq/ui/members/{member_id:str}/merge", opt=page("members.write"))
async def member_merge(request: Request[Any, Any, Any], member_id: str) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    back = member_path(member_id[:64])
    loser = form.get("loser", "").strip().upper()[:64]
    if form.get("confirm") != "yes":
        return ui.redirect(back, error=ui._("Tick the box to confirm the merge: it cannot be undone."))
    try:
        await in_thread(member_desk.merge, ui.hq.db, ui.hq.private_key, ui.who, member_id[:64], loser, now_text())
    except HqError as exc:
        if exc.status == 403:
            raise
        return ui.redirect(back, error=ui.problem(exc))
    ui.hq.signal.notify()
    return ui.redirect(back, notice=ui._("Member %(loser)s was merged into this one; the old number still finds "
                                         "this member at every store.") % {"loser": loser})


ROUTES = [members_page, member_page, member_adjust, member_profile, member_reclaim, member_merge]
