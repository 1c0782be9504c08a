"""What the end-of-day page shows of shifts (eod/_shifts.html): the day's shifts with their drawers, and which
of them the reader may work in. A leaf: the eod page imports it, the shift actions (pages/shifts.py) import
the eod page's helpers."""

from __future__ import annotations

import uuid
from typing import Any

from edge.eod import shifts
from edge.hub import Hub
from edge.ui.view import UiView

MAX_SHIFTS = 50


def context(ui: UiView, hub: Hub, day: str, own_till: str | None) -> dict[str, Any]:
    """What eod/_shifts.html needs: the day's shifts (a cashier: his till's), a fresh form id per form."""
    at = hub.clock.stamp()
    listed = shifts.listing(hub.db.reader(), at, day=day, till_id=own_till, status=None, limit=MAX_SHIFTS, offset=0)
    open_now = shifts.listing(hub.db.reader(), at, day=None, till_id=own_till, status="open", limit=MAX_SHIFTS,
                              offset=0)
    seen = {s.shift_id for s in listed.shifts}
    rows = [*[s for s in open_now.shifts if s.shift_id not in seen], *listed.shifts]  # an open shift of an earlier day
    users = {s.user_id for s in rows} | {s.closed_by for s in rows if s.closed_by}
    names: dict[str, str] = {}
    if users:
        marks = ", ".join("?" * len(users))
        names = {r[0]: r[1] for r in hub.db.reader().execute(
            f"SELECT user_id, coalesce(nullif(display_name, ''), username) FROM users WHERE user_id IN ({marks})",
            sorted(users))}
    mine = ui.claims.user_id if ui.claims else ""
    workable = [s for s in rows if s.status == "open" and (ui.may("eod.close") or s.user_id == mine)]
    return {"shift_rows": rows, "shift_names": names, "shift_workable": workable, "shift_form_id": uuid.uuid4(),
            "shift_total": listed.total}
