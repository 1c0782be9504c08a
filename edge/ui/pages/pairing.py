"""Pairing with HQ from the tablet (a manager): the HQ address and the one-time code HQ issued for this store,
handed to the same code as `backroom pair` (hq_sync.agent.pair_with_hq) in the hub's writer; on success the sync
agent starts at once, no restart (and after one: `hq_from_pairing` in the appliance's settings)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.response import Redirect

from edge.ui.session import page
from edge.ui.view import UiView
from hq_sync import hub_state
from hq_sync.agent import PairingError, pair_with_hq, start_agent

MAX_URL = 300
MAX_CODE = 64
PAIR_TIMEOUT_S = 10.0  # the writer waits for HQ's answer: keep a tablet's attempt short


def _paired(ui: UiView) -> dict[str, str] | None:
    state = hub_state.load_state(ui.hub.db.reader())
    return None if state is None else {"hq_url": state.hq_url, "store_id": state.store_id,
                                       "paired_at": state.paired_at}


@get("/ui/sync/pair", opt=page("sync.pair"), sync_to_thread=False)
def pair_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = UiView(request)
    return ui.render("sync/pair.html", title=ui._("Pair with HQ"), state=_paired(ui),
                     hq_url=ui.hub.config.hq_url or "", store_id=ui.hub.store_id)


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return len(url) <= MAX_URL and parts.scheme in ("http", "https") and bool(parts.hostname) and \
        not parts.username and not parts.password


@post("/ui/sync/pair", opt=page("sync.pair"))
async def pair_submit(request: Request[Any, Any, Any]) -> Redirect:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    url = form.get("hq_url", "").strip().rstrip("/")
    code = form.get("code", "").strip()
    if not _valid_url(url):
        return ui.redirect("/ui/sync/pair", error=_("Enter HQ's address, starting with https:// or http://."))
    if not code or len(code) > MAX_CODE:
        return ui.redirect("/ui/sync/pair", error=_("Enter the pairing code HQ issued for this store."))
    hub = ui.hub
    try:
        result = await hub.db.write(lambda conn: pair_with_hq(conn, url, code, False, hub.clock.stamp(),
                                                              timeout_s=PAIR_TIMEOUT_S))
    except PairingError as exc:
        return ui.redirect("/ui/sync/pair", error=_("Not paired: %(reason)s") % {"reason": str(exc)})
    if getattr(request.app.state, "sync", None) is None:
        await start_agent(request.app.state, hub, url)
    return ui.redirect("/ui/sync", notice=_("Paired with HQ as store %(store)s.") % {"store": result.store_id})


ROUTES: list[Any] = [pair_page, pair_submit]
