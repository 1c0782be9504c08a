"""The tablet's pages in menu order, each behind the permission that opens it, and role names."""

from __future__ import annotations

import msgspec

from edge.auth.roles import allowed


def N_(text: str) -> str:
    """Mark a msgid for extraction; it is translated where it is shown."""
    return text


class NavItem(msgspec.Struct, frozen=True):
    key: str
    path: str
    label: str  # msgid
    permission: str


NAV: tuple[NavItem, ...] = (
    NavItem("dashboard", "/ui/dashboard", N_("Dashboard"), "reports.read"),
    NavItem("stock", "/ui/stock", N_("Stock"), "stock.read"),
    NavItem("members", "/ui/members", N_("Members"), "members.read"),
    NavItem("promotions", "/ui/promotions", N_("Promotions"), "items.read"),
    NavItem("devices", "/ui/devices", N_("Devices"), "devices.read"),
    NavItem("sync", "/ui/sync", N_("Sync"), "sync.read"),
    NavItem("eod", "/ui/eod", N_("End of day"), "eod.read"),
    NavItem("users", "/ui/users", N_("Users"), "users.manage"),
)

ROLE_NAMES = {
    "hq_admin": N_("HQ admin"),
    "region_manager": N_("Region manager"),
    "store_manager": N_("Store manager"),
    "cashier": N_("Cashier"),
    "sales_guide": N_("Sales guide"),
}


def pages_for(role: str) -> list[NavItem]:
    return [item for item in NAV if allowed(role, item.permission)]
