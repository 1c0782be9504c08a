"""Stores: sync health of every store in scope (lag, last batch, last heard, open quarantined deltas,
digest mismatches), and per store its profile (name, region, timezone, address), its quarantined
deltas with retry and resolve, its digest checks and pairing codes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from hq_sync.server.api.support import in_thread
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service import digests, ingest, stores, users
from hq_sync.server.service.errors import HqError, now_text

Seq = Annotated[int, Parameter(ge=1, le=2**62)]
MAX_TEXT = 200


@get("/hq/ui/stores", opt=page("stores.read"), sync_to_thread=True)
def store_list(request: Request[Any, Any, Any], region: Annotated[str, Parameter(max_length=64)] = "") -> Response[str]:
    ui = ConsoleView(request)
    found = stores.list_stores(ui.hq.db, ui.who)
    regions = sorted({s["region"] for s in found})
    shown = [s for s in found if not region or s["region"] == region]
    return ui.render("stores/index.html", title=ui._("Stores"), stores=shown, regions=regions, region=region)


def _detail(ui: ConsoleView, store_id: str, status: int = 200, **extra: Any) -> Response[str]:
    store = stores.store_view(ui.hq.db, ui.who, store_id)
    quarantined = stores.quarantine(ui.hq.db, ui.who, store_id)
    checks = [c for c in digests.digest_checks(ui.hq.db, ui.who, store_id) if c["status"] == "mismatch"]
    regions = users.list_regions(ui.hq.db)
    if ui.who.scoped:
        regions = [r for r in regions if r in ui.who.regions]
    return ui.render("stores/detail.html", status=status, title=store["name"], store=store, quarantined=quarantined,
                     mismatches=checks, regions=regions, **extra)


@get("/hq/ui/stores/{store_id:str}", opt=page("stores.read"), sync_to_thread=True)
def store_detail(request: Request[Any, Any, Any], store_id: str) -> Response[str]:
    return _detail(ConsoleView(request), store_id)


@post("/hq/ui/stores/{store_id:str}/profile", opt=page("stores.manage"))
async def profile_submit(request: Request[Any, Any, Any], store_id: str) -> Response[Any]:
    ui = ConsoleView(request)
    form = await ui.form()
    fields = {key: form.get(key, "")[:MAX_TEXT].strip() for key in ("name", "region", "timezone", "address")}
    back = f"/hq/ui/stores/{store_id}"
    try:
        profile = _checked(stores.StoreProfile(**{k: v for k, v in fields.items() if v or k == "address"}))
    except HqError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return await ui.act(back, ui._("The store's profile is saved."), stores.update_profile, ui.hq.db, ui.who,
                        store_id, profile, now_text())


def _checked(profile: stores.StoreProfile) -> stores.StoreProfile:
    """The form's values through the same bounds as the API's JSON."""
    try:
        return msgspec.convert(msgspec.structs.asdict(profile), stores.StoreProfile)
    except msgspec.ValidationError as exc:
        raise HqError(422, "invalid_field", str(exc)) from None


@post("/hq/ui/stores/{store_id:str}/quarantine/{seq:int}/resolve", opt=page("stores.manage"))
async def resolve_submit(request: Request[Any, Any, Any], store_id: str, seq: Seq) -> Redirect:
    ui = ConsoleView(request)
    form = await ui.form()
    return await ui.act(f"/hq/ui/stores/{store_id}", ui._("Delta %(seq)s is marked resolved.") % {"seq": seq},
                        stores.resolve_quarantined, ui.hq.db, ui.who, store_id, seq,
                        form.get("note", "")[:500].strip(), now_text())


@post("/hq/ui/stores/{store_id:str}/quarantine/{seq:int}/retry", opt=page("stores.manage"))
async def retry_submit(request: Request[Any, Any, Any], store_id: str, seq: Seq) -> Redirect:
    ui = ConsoleView(request)
    await ui.form()
    try:
        applied = await in_thread(ingest.retry_quarantined, ui.hq.db, ui.who, store_id, seq, now_text())
    except HqError as exc:
        if exc.status == 403:
            raise
        return ui.redirect(f"/hq/ui/stores/{store_id}", error=ui.problem(exc))
    if applied:
        ui.hq.signal.notify()
        return ui.redirect(f"/hq/ui/stores/{store_id}", notice=ui._("Delta %(seq)s applied.") % {"seq": seq})
    return ui.redirect(f"/hq/ui/stores/{store_id}",
                       error=ui._("Delta %(seq)s still cannot be applied; it stays quarantined.") % {"seq": seq})


@post("/hq/ui/stores/{store_id:str}/pair-code", opt=page("stores.pair"))
async def pair_code_submit(request: Request[Any, Any, Any], store_id: str) -> Response[Any]:
    ui = ConsoleView(request)
    await ui.form()
    code = await in_thread(stores.make_pair_code, ui.hq.db, ui.who, store_id)
    shown: Response[str] = await in_thread(lambda: _detail(ui, store_id, pair_code=code))
    return shown


@post("/hq/ui/stores", opt=page("stores.pair"))
async def new_store_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    """A pairing code for a store HQ does not know yet (an admin; the store joins with it)."""
    ui = ConsoleView(request)
    form = await ui.form()
    store_id = form.get("store_id", "")[:MAX_TEXT].strip()
    try:
        code = await in_thread(stores.make_pair_code, ui.hq.db, ui.who, store_id)
    except HqError as exc:
        if exc.status == 403:
            raise
        return ui.redirect("/hq/ui/stores", error=ui.problem(exc))
    shown: Response[str] = await in_thread(lambda: _detail(ui, store_id, pair_code=code))
    return shown


ROUTES = [store_list, store_detail, profile_submit, resolve_submit, retry_submit, pair_code_submit, new_store_submit]
