"""Every tablet URL and form, fed garbage: the answer is a page or a notice, never a 5xx, never a
half-written record, and user text comes back escaped."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edge.ui.pages.auth import AUTH_ROUTES
from edge.ui.router import PAGES
from tests.conftest import Hub
from tests.ui_support import csrf_of, ui_login

HANDLERS: list[Any] = [*AUTH_ROUTES, *(route for module in PAGES for route in module.ROUTES)]
# what a tablet form can write
WRITTEN_TABLES = ("journal", "outbox", "sales", "users", "members", "topups", "value_ledger", "stock_movements",
                  "stocktakes", "stocktake_lines", "cash_counts", "till_floats", "z_reports", "transfers", "audit",
                  "batches")
PARAM = re.compile(r"\{(\w+):(\w+)\}")
ODD_VALUES = ["", "²", "-1", "1e9", "99999999999999999999", "2026-13-45", "<script>alert(1)</script>", "' OR 1=1 --",
              "\u202e", "a" * 3000]


def _concrete(path: str) -> str:
    samples = {"uuid": "00000000-0000-4000-8000-000000000000", "int": "999", "str": "nope"}
    return PARAM.sub(lambda m: samples.get(m.group(2), "x"), path)


def _routes(method: str) -> list[str]:
    found = []
    for handler in HANDLERS:
        if method in handler.http_methods:
            found += [_concrete(p) for p in sorted(handler.paths) if not p.endswith("/events")]
    return sorted(set(found))


GET_PATHS = _routes("GET")
# every query parameter a page handler takes (read from the handlers, so a new one is fed garbage too)
QUERY_NAMES = sorted({name for handler in HANDLERS if "GET" in handler.http_methods
                      for name, param in handler.parsed_fn_signature.parameters.items()
                      if param.annotation is str and not any(f"{{{name}:" in path for path in handler.paths)})
POST_PATHS = [p for p in _routes("POST") if p not in ("/ui/login", "/ui/logout", "/ui/setup")]  # public, own nonce


def test_every_page_survives_odd_query_values(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    names = sorted({*QUERY_NAMES, "q", "offset", "day", "alert", "alerts", "within_days", "lead_time_days",
                    "cover_days", "state", "next", "page", "limit"})
    assert {"z_offset", "points_offset", "value_offset", "lead", "cover", "days"} <= set(QUERY_NAMES)
    for path in GET_PATHS:
        for value in ODD_VALUES:
            resp = tablet.get(path, params={name: value for name in names})
            assert resp.status_code < 500, f"{path} with {value!r}: {resp.status_code} {resp.text[:300]}"
            assert "<script>alert(1)</script>" not in resp.text, f"{path} echoes markup unescaped"


@pytest.mark.parametrize("path", POST_PATHS)
def test_every_form_refuses_garbage_without_writing(fresh_hub: Hub, path: str) -> None:
    tablet = ui_login(fresh_hub, "manager")
    token = csrf_of(tablet.get("/ui/dashboard").text)
    before = fresh_hub.counts(WRITTEN_TABLES)
    fields = ["amount", "method", "qty", "sku", "barcode", "counted", "till_id", "phone", "name", "username", "role",
              "pin", "password", "day", "lot", "expiry", "topup_id", "count_id", "receipt_id", "stocktake_id",
              "category", "csv", "zero_uncounted", "display_name", "user_id", "transfer_id", "to_store"]
    for value in ODD_VALUES[1:]:  # an empty field can be a valid choice (e.g. "close today"); these are not
        resp = tablet.post(path, data={"csrf": token, **{name: value for name in fields}})
        assert resp.status_code < 500, f"{path} with {value!r}: {resp.status_code} {resp.text[:300]}"
        assert "<script>alert(1)</script>" not in resp.text
    assert tablet.post(path, content=b"\xff\xfe garbage", headers={"content-type": "application/x-www-form-urlencoded"}
                       ).status_code < 500
    assert fresh_hub.counts(WRITTEN_TABLES) == before, f"{path} wrote something from garbage"


def test_forms_without_a_session_or_token_write_nothing(hub: Hub) -> None:
    anonymous = ui_login(hub, "manager")
    anonymous.cookies.clear()
    before = hub.counts(WRITTEN_TABLES)
    for path in POST_PATHS:
        assert anonymous.post(path, data={"amount": "100"}).status_code in (303, 401), path
    tablet = ui_login(hub, "manager")
    for path in POST_PATHS:
        assert tablet.post(path, data={"amount": "100"}).status_code == 400, path  # no CSRF token
    assert hub.counts(WRITTEN_TABLES) == before
