"""The members page (会员): find a member, read the profile with its points and stored-value
histories, top up stored value, and sign up a new member.

Top-ups and sign-ups call the same domain functions as the till API (`commit_topup`,
`create_member`); a top-up carries a client UUID made when the form was drawn, so a double tap or a
re-sent form books once. Phones are masked in the list of newest members, and in search results and
on a member's page for readers without `members.phone`; a page that shows a phone unmasked is
audited before it is sent (edge/members/privacy.py).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post

from edge.api.engage_routes import fetch_inbox
from edge.api.privacy_routes import audit_read
from edge.api.support import actor_of
from edge.engage import referrals
from edge.errors import ApiError
from edge.hub import Hub
from edge.members import directory, privacy
from edge.members import tiers as member_tiers
from edge.members.models import CreateMemberRequest
from edge.members.service import commit_topup, create_member, find_member
from edge.sales.checkout import Replay, request_hash
from edge.sales.models import TopupRequest, TopupResult
from edge.ui.nav import N_
from edge.ui.session import page
from edge.ui.view import UiView, page_offset
from hq_sync import directory as chain_directory

PAGE_SIZE = 25
AUDIT_SIZE = 10
HISTORY_SIZE = 10
MAX_TOPUP = 500_000  # fen, as TopupRequest allows

TOPUP_METHODS = {
    "cash": N_("Cash"),
    "card": N_("Bank card"),
    "alipay": N_("Alipay"),
    "wechat": N_("WeChat Pay"),
    "unionpay": N_("UnionPay"),
}

AUDIT_ACTIONS = {
    "read": N_("Read"),
    "export": N_("Export"),
    "erase": N_("Erase"),
}

LEDGER_KINDS = {
    "opening": N_("Opening balance"),
    "topup": N_("Top-up"),
    "spend": N_("Paid with stored value"),
    "refund": N_("Refunded on a return"),
    "earn": N_("Earned on a purchase"),
    "redeem": N_("Paid with points"),
    "reward": N_("Points reward"),
    "reverse": N_("Taken back on a return"),
    "reward_return": N_("Reward returned"),
    "expire": N_("Points expired"),
    "hq_pairing": N_("Moved to HQ at pairing"),
    "escrow_grant": N_("Granted by HQ"),
    "escrow_release": N_("Given back to HQ"),
    "merge_in": N_("Merged in from a duplicate record"),
    "merge_out": N_("Moved to the merged record"),
    "referral": N_("Referral reward"),
    "referral_reverse": N_("Referral reward taken back"),
}

REFERRAL_STATES = {
    "pending": N_("Waiting for the first purchase"),
    "rewarded": N_("Rewarded"),
    "reversed": N_("Reversed (purchase returned)"),
    "refused": N_("Refused"),
    "granted": N_("Granted"),
}

TIER_REASONS = {
    "upgrade": N_("Reached the tier's threshold"),
    "downgrade": N_("Below the threshold on the review date"),
    "unknown_tier": N_("Former tier no longer exists"),
    "hq": N_("Changed by HQ's tier rules"),
}


def _tier_names(conn: Any, lang: str) -> dict[str, str]:
    column = "name_zh" if lang == "zh_CN" else "name_en"
    return {str(r[0]): str(r[1]) for r in conn.execute(f"SELECT tier, {column} FROM tiers")}


_YUAN = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$")


def yuan_to_fen(text: str) -> int | None:
    """'100' -> 10000, '100.5' -> 10050, '100.50' -> 10050; None for anything else (more than two
    decimals, signs, exponents, grouping, words). Exact: Decimal, never float."""
    cleaned = text.strip().removeprefix("¥").strip()
    if not _YUAN.match(cleaned):
        return None
    try:
        return int(Decimal(cleaned) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        return None


def _member_path(member_id: str) -> str:
    return f"/ui/members/{quote(member_id, safe='')}"


async def _audit_tablet_read(request: Request[Any, Any, Any], hub: Hub, member_ids: list[str],
                             fields: tuple[str, ...] = privacy.PERSONAL_FIELDS, action: str = "read") -> None:
    """Unmasked phones on a page are audited before the page is sent (edge/members/privacy.py)."""
    await audit_read(request, hub, member_ids, fields, action, "tablet")


@get("/ui/members", opt=page("members.read"))
async def members_page(request: Request[Any, Any, Any], hub: Hub, q: str = "", tag: str = "", offset: str = "0",
                       audit_offset: str = "0") -> Response[str]:
    ui = UiView(request)
    _ = ui._
    show_phone = ui.may("members.phone")
    conn = hub.db.reader()
    query = q.strip()[:40]
    tag_query = tag.strip()[:64]
    start = page_offset(offset)
    if query:
        rows, total = directory.search(conn, query, show_phone=show_phone), 0
    elif tag_query:  # manual or automatic tag (docs/members.md "Tags")
        rows, total = directory.tagged(conn, tag_query, show_phone=show_phone, limit=PAGE_SIZE, offset=start)
    else:  # browsing the newest members asks for nobody: phones masked for every role
        rows, total = directory.newest(conn, show_phone=False, limit=PAGE_SIZE, offset=start)
    if show_phone and (query or tag_query):  # the reader asked for these members: full phones, audited
        await _audit_tablet_read(request, hub, [r.member_id for r in rows if r.phone], ("phone", "name", "card_no"))
    audit_start = page_offset(audit_offset)
    # The audit is shown beside the newest members, not beside search results.
    audit = privacy.audit_page(conn, limit=AUDIT_SIZE, offset=audit_start) \
        if ui.may("members.privacy") and not query and not tag_query else None
    return ui.render("members/index.html", title=_("Members"), query=query, tag=tag_query, rows=rows, total=total,
                     offset=start, limit=PAGE_SIZE, capped=len(rows) >= directory.SEARCH_LIMIT,
                     tier_zh=ui.lang == "zh_CN", tag_base=f"/ui/members?tag={quote(tag_query, safe='')}&",
                     audit=audit, audit_offset=audit_start, audit_size=AUDIT_SIZE,
                     audit_actions={k: _(v) for k, v in AUDIT_ACTIONS.items()},
                     audit_base=f"/ui/members?offset={start}&audit_")


@get("/ui/members/{member_id:str}", opt=page("members.read"))
async def member_page(request: Request[Any, Any, Any], hub: Hub, member_id: str, points_offset: str = "0",
                      value_offset: str = "0") -> Response[str]:
    ui = UiView(request)
    _ = ui._
    conn = hub.db.reader()
    member = find_member(conn, member_id=member_id, show_phone=ui.may("members.phone"))
    if member is None:
        return ui.render("error.html", status=404, title=_("Not found"),
                         message=_("There is no member %(member)s.") % {"member": member_id[:64]})
    if not member.phone_masked and member.phone:
        await _audit_tablet_read(request, hub, [member.member_id])
    inbox, source, _problem = await fetch_inbox(request.app.state, hub, member.member_id, HISTORY_SIZE)
    conn = hub.db.reader()
    p_start, v_start = page_offset(points_offset), page_offset(value_offset)
    points, points_total = directory.history(conn, "points", member.member_id, limit=HISTORY_SIZE, offset=p_start)
    value, value_total = directory.history(conn, "value", member.member_id, limit=HISTORY_SIZE, offset=v_start)
    path = _member_path(member.member_id)
    return ui.render(
        "members/profile.html", title=member.name or member.member_id, member=member, path=path,
        tier_name=member.tier_name if ui.lang == "zh_CN" else member.tier_name_en,
        home_store=directory.home_store(conn, member.member_id), store_id=hub.store_id,
        erased_at=directory.erased_at(conn, member.member_id),
        points=points, points_total=points_total, points_offset=p_start,
        points_base=f"{path}?value_offset={v_start}&points_", value=value, value_total=value_total,
        value_offset=v_start, value_base=f"{path}?points_offset={p_start}&value_", page_size=HISTORY_SIZE,
        expiring=directory.expiring(conn, member.member_id), sales=directory.recent_sales(conn, member.member_id),
        tier_changes=member_tiers.member_history(conn, member.member_id), tier_names=_tier_names(conn, ui.lang),
        tier_reasons={k: _(v) for k, v in TIER_REASONS.items()},
        kinds={k: _(v) for k, v in LEDGER_KINDS.items()}, methods={k: _(v) for k, v in TOPUP_METHODS.items()},
        topup_id=uuid.uuid4(), own_till=ui.claims.till_id if ui.claims else None,
        tills=sorted(t for t in hub.config.tills if t != "*"), referral=referrals.view(conn, member.member_id),
        statuses={k: _(v) for k, v in REFERRAL_STATES.items()}, inbox=inbox, inbox_stale=source == "cache",
        zh=ui.lang == "zh_CN")


@post("/ui/members/{member_id:str}/topups", opt=page("members.topup"))
async def member_topup(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = _member_path(member_id)
    amount = yuan_to_fen(form.get("amount", ""))
    if amount is None or amount <= 0:
        return ui.redirect(back, error=_("Enter the amount in yuan, more than 0 and with at most two decimals "
                                         "(for example 100 or 100.50)."))
    if amount > MAX_TOPUP:
        return ui.redirect(back, error=_("A top-up is at most %(max)s.") % {"max": ui.fmt.money(MAX_TOPUP)})
    till = form.get("till_id", "").strip() or None
    try:
        req = msgspec.convert({"topup_id": form.get("topup_id", ""), "amount": amount,
                               "method": form.get("method", ""), "till_id": till}, TopupRequest)
    except msgspec.ValidationError:
        return ui.redirect(back, error=_("Choose how the customer paid, and reload the page if this repeats."))
    try:
        actor = actor_of(request, req.till_id)
        digest = request_hash(req)
        at = hub.clock.stamp()
        result = await hub.db.write(lambda conn: commit_topup(conn, member_id, req, digest, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    done = msgspec.json.decode(result.body if isinstance(result, Replay) else result, type=TopupResult)
    return ui.redirect(back, notice=_("Topped up %(amount)s. Stored value is now %(balance)s.")
                       % {"amount": ui.fmt.money(done.amount), "balance": ui.fmt.money(done.balance)})


@post("/ui/members", opt=page("members.create"))
async def member_create(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    fields = {"phone": directory.normalise_query(form.get("phone", "")), "name": form.get("name", "").strip()}
    card = form.get("card_no", "").strip()
    if card:
        fields["card_no"] = card
    code = form.get("referral_code", "").strip()
    if code:
        fields["referral_code"] = code
    try:
        req = msgspec.convert(fields, CreateMemberRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "card_no" in text:
            message = _("A card number has 4 to 32 letters or digits.")
        elif "referral_code" in text:
            message = _("A referral code has at most 20 characters.")
        elif "name" in text:
            message = _("A name has at most 64 characters.")
        else:
            message = _("Enter a mobile number of 11 digits that starts with 1.")
        return ui.redirect("/ui/members", error=message)
    actor = actor_of(request)
    at = hub.clock.stamp()
    try:
        if find_member(hub.db.reader(), phone=req.phone, show_phone=False) is None:
            await chain_directory.refuse_known(request.app.state, hub, req.phone, req.card_no)
        member_id = await hub.db.write(lambda conn: create_member(conn, req, actor, at, hub.store_id))
    except ApiError as exc:
        return ui.redirect("/ui/members", error=ui.problem(exc))
    return ui.redirect(_member_path(member_id), notice=_("Member %(member)s signed up.") % {"member": member_id})


@get("/ui/members/{member_id:str}/export", opt=page("members.privacy"))
async def member_export(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Response[Any]:
    """The member's data as a JSON file (audited), for a request made at the counter."""
    ui = UiView(request)
    _ = ui._
    doc = privacy.export(hub.db.reader(), member_id[:64], hub.store_id, hub.clock.stamp())
    if doc is None:
        return ui.render("error.html", status=404, title=_("Not found"),
                         message=_("There is no member %(member)s.") % {"member": member_id[:64]})
    await _audit_tablet_read(request, hub, [doc.member_id], action="export")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", doc.member_id)
    return Response(msgspec.json.encode(doc), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="member-{safe}.json"'})


@post("/ui/members/{member_id:str}/erase", opt=page("members.privacy"))
async def member_erase(request: Request[Any, Any, Any], hub: Hub, member_id: str) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = _member_path(member_id)
    if form.get("confirm", "").strip() != member_id:
        return ui.redirect(back, error=_("Type the member ID to confirm the erasure."))
    actor = actor_of(request)
    at = hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: privacy.erase(conn, member_id, actor, at, "tablet"))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    await hub.db.run_checkpoint()
    return ui.redirect(back, notice=_("The personal data of member %(member)s was erased.") % {"member": member_id})


ROUTES: list[Any] = [members_page, member_page, member_topup, member_create, member_export, member_erase]
