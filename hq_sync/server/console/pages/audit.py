"""The audit log: every write at HQ (API and console), newest first, filtered by actor, action and
target, paged."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get
from litestar.params import Parameter

from edge.ui.pagekit import page_offset
from hq_sync.server.console.session import page
from hq_sync.server.console.view import ConsoleView
from hq_sync.server.service.audit import audit_actions, audit_page

PAGE_SIZE = 50
Filter = Annotated[str, Parameter(max_length=120)]


@get("/hq/ui/audit", opt=page("audit.read"), sync_to_thread=True)
def audit_list(request: Request[Any, Any, Any], actor: Filter = "", action: Filter = "", target: Filter = "",
               offset: Filter = "") -> Response[str]:
    ui = ConsoleView(request)
    found = audit_page(ui.hq.db, ui.who, actor=actor.strip(), action=action.strip(), target=target.strip(),
                       limit=PAGE_SIZE, offset=page_offset(offset))
    query = urlencode([(k, v) for k, v in (("actor", actor), ("action", action), ("target", target)) if v])
    pretty = msgspec.json.Encoder(order="sorted")
    return ui.render("audit/index.html", title=ui._("Audit log"), page=found, actions=audit_actions(ui.hq.db),
                     actor=actor, action=action, target=target, base=f"/hq/ui/audit?{query}&" if query else
                     "/hq/ui/audit?", show=lambda value: "—" if value is None else pretty.encode(value).decode())


ROUTES = [audit_list]
