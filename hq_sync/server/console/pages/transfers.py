"""Transfers: the chain's view (a region manager's: those from or to his stores) with their approval, the
approve and reject forms where the chain holds transfers for approval, and the setting itself."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from hq_sync.server.api.support import in_thread
from hq_sync.server.console.nav import N_
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import transfer_approvals
from hq_sync.server.service.errors import HqError, now_text

STATE_LABELS = {"requested": N_("Requested"), "in_transit": N_("In transit"), "received": N_("Received")}
APPROVAL_LABELS = {"pending": N_("Awaiting approval"), "approved": N_("Approved"), "rejected": N_("Rejected")}


@get("/hq/ui/transfers", opt=page("transfers.read"), sync_to_thread=True)
def transfers_page(request: Request[Any, Any, Any],
                   in_state: Annotated[str, Parameter(query="state", max_length=16)] = "",
                   approval: Annotated[str, Parameter(max_length=16)] = "") -> Response[str]:
    ui = ConsoleView(request)
    state = in_state if in_state in STATE_LABELS else ""
    approval = approval if approval in APPROVAL_LABELS else ""
    rows = transfer_approvals.listing(ui.hq.db, ui.who, state, approval)[:200]
    return ui.render("transfers/index.html", title=ui._("Transfers"), rows=rows, state=state, approval=approval,
                     settings=transfer_approvals.settings(ui.hq.db, ui.who),
                     states={k: ui._(v) for k, v in STATE_LABELS.items()},
                     approvals={k: ui._(v) for k, v in APPROVAL_LABELS.items()})


async def _decide(request: Request[Any, Any, Any], transfer_id: str, approve: bool) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form()
    try:
        await in_thread(transfer_approvals.decide, ui.hq.db, ui.who, ui.hq.private_key, transfer_id[:64], approve,
                        fields.get("reason", "")[:200], now_text())
    except HqError as exc:
        if exc.status in (403, 404):
            raise
        return ui.redirect("/hq/ui/transfers?approval=pending", error=ui.problem(exc))
    ui.hq.signal.notify()
    return ui.redirect("/hq/ui/transfers?approval=pending", notice=(
        ui._("Transfer approved; the sending store has it.") if approve else ui._("Transfer rejected.")))


@post("/hq/ui/transfers/{transfer_id:str}/approve", opt=page("transfers.approve"))
async def transfer_approve(request: Request[Any, Any, Any], transfer_id: str) -> Redirect:
    return await _decide(request, transfer_id, True)


@post("/hq/ui/transfers/{transfer_id:str}/reject", opt=page("transfers.approve"))
async def transfer_reject(request: Request[Any, Any, Any], transfer_id: str) -> Redirect:
    return await _decide(request, transfer_id, False)


@post("/hq/ui/transfers/settings", opt=page("settings.write"))
async def transfer_settings(request: Request[Any, Any, Any]) -> Redirect:
    ui = ConsoleView(request)
    fields = await ui.form()
    on = fields.get("transfers_need_approval", "") == "1"
    await in_thread(transfer_approvals.set_need_approval, ui.hq.db, ui.who, on, now_text())
    return ui.redirect("/hq/ui/transfers", notice=ui._("Transfers now need approval.") if on else
                       ui._("Transfers go to the sender at once."))


ROUTES = [transfers_page, transfer_approve, transfer_reject, transfer_settings]
