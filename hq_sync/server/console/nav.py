"""The console's pages in menu order, each behind the permission that opens it, and the role names."""

from __future__ import annotations

import msgspec

from hq_sync.server.service.access import allowed


def N_(text: str) -> str:
    """Mark a msgid for extraction; it is translated where it is shown."""
    return text


class NavItem(msgspec.Struct, frozen=True):
    key: str
    path: str
    label: str  # msgid
    permission: str


NAV: list[NavItem] = [
    NavItem("dashboard", "/hq/ui/dashboard", N_("Chain dashboard"), "dashboard.read"),
    NavItem("stores", "/hq/ui/stores", N_("Stores"), "stores.read"),
    NavItem("catalog", "/hq/ui/catalog", N_("Catalog and prices"), "catalog.read"),
    NavItem("promotions", "/hq/ui/promotions", N_("Promotions"), "promotions.read"),
    NavItem("members", "/hq/ui/members", N_("Members"), "members.read"),
    NavItem("transfers", "/hq/ui/transfers", N_("Transfers"), "transfers.read"),
    NavItem("reports", "/hq/ui/reports", N_("Reports"), "reports.read"),
    NavItem("statements", "/hq/ui/statements", N_("Statements"), "statements.read"),
    NavItem("audit", "/hq/ui/audit", N_("Audit log"), "audit.read"),
    NavItem("users", "/hq/ui/users", N_("HQ users"), "users.read"),
]

ROLE_NAMES = {
    "hq_admin": N_("HQ admin"),
    "hq_operator": N_("HQ operator"),
    "region_manager": N_("Region manager"),
    "finance": N_("Finance"),
    "auditor": N_("Auditor"),
}


def pages_for(role: str) -> list[NavItem]:
    return [item for item in NAV if allowed(role, item.permission)]
