"""Who is asking at HQ and what he may reach: the roles, the permission table (data in
`hq_sync/server/permissions.toml`), the `Principal` every service function is given, and the region
scope of a region manager.

Scope lives here, in the service layer, so the API and the console cannot differ: a region manager
reaches only the stores whose `region` is one of his (`hq_user_regions`); any other store is refused
with 403 `out_of_scope` before anything is written, and lists leave it out.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import Tx

HqRole = Literal["hq_admin", "hq_operator", "region_manager", "finance", "auditor"]
HQ_ROLES: tuple[str, ...] = get_args(HqRole)
PERMISSIONS_FILE = Path(__file__).resolve().parent.parent / "permissions.toml"


class PermissionTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    permissions: dict[str, list[HqRole]]


@cache
def permission_table() -> dict[str, frozenset[str]]:
    table = msgspec.convert(tomllib.loads(PERMISSIONS_FILE.read_text("utf-8")), PermissionTable)
    return {name: frozenset(roles) for name, roles in table.permissions.items()}


def allowed(role: str, permission: str) -> bool:
    roles = permission_table().get(permission)
    if roles is None:
        raise KeyError(f"unknown HQ permission {permission!r}")
    return role in roles


class Principal(msgspec.Struct, frozen=True):
    """The user a request acts for: his name, role and (for a region manager) regions."""

    username: str
    role: str
    regions: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        """True when he reaches only the stores of his regions."""
        return self.role == "region_manager"

    def may(self, permission: str) -> bool:
        return allowed(self.role, permission)


def system_principal(name: str = "system") -> Principal:
    """The command line and the demo seed act as HQ admins under their own name in the audit log."""
    return Principal(name, "hq_admin")


def require(principal: Principal, permission: str) -> None:
    if not principal.may(permission):
        raise HqError(403, "forbidden", f"role {principal.role} may not {permission}")


def out_of_scope(what: str) -> HqError:
    return HqError(403, "out_of_scope", f"{what[:80]} is outside your regions")


# -- stores in scope -------------------------------------------------------------------------------------------

def scope_sql(principal: Principal, column: str = "store_id") -> tuple[str, list[Any]]:
    """An SQL condition (to AND into a WHERE) keeping rows whose `column` is a store in scope, and its
    arguments. Unscoped roles get `1 = 1`."""
    if not principal.scoped:
        return "1 = 1", []
    if not principal.regions:
        return "1 = 0", []
    marks = ", ".join("?" * len(principal.regions))
    return f"{column} IN (SELECT store_id FROM hq_stores WHERE region IN ({marks}))", list(principal.regions)


def stores_in_scope(tx: Tx, principal: Principal) -> list[str]:
    where, args = scope_sql(principal)
    return [str(r[0]) for r in tx.all(f"SELECT store_id FROM hq_stores WHERE {where} ORDER BY store_id", args)]


def in_scope(tx: Tx, principal: Principal, store_id: str) -> bool:
    if not principal.scoped:
        return True
    row = tx.one("SELECT region FROM hq_stores WHERE store_id = ?", (store_id,))
    return row is not None and str(row[0]) in principal.regions


def require_store(tx: Tx, principal: Principal, store_id: str) -> None:
    """Refuse (403 `out_of_scope`) a store outside the principal's regions; an unknown store is outside
    them too, so a region manager learns nothing about stores he cannot see."""
    if not in_scope(tx, principal, store_id):
        raise out_of_scope(f"store {store_id}")


def require_stores(tx: Tx, principal: Principal, store_ids: Iterable[str]) -> None:
    for store_id in store_ids:
        require_store(tx, principal, store_id)


def require_region(principal: Principal, region: str) -> None:
    if principal.scoped and region not in principal.regions:
        raise out_of_scope(f"region {region}")


def stores_of_regions(tx: Tx, regions: Sequence[str]) -> list[str]:
    if not regions:
        return []
    marks = ", ".join("?" * len(regions))
    return [str(r[0]) for r in tx.all(f"SELECT store_id FROM hq_stores WHERE region IN ({marks}) ORDER BY store_id",
                                      list(regions))]


def target_stores(tx: Tx, principal: Principal, stores: Sequence[str] | None,
                  regions: Sequence[str] | None = None) -> list[str] | None:
    """The stores a price, promotion or other write goes to. Named stores and the stores of named
    regions must all be in scope (else 403, nothing written). Nothing named means the whole chain
    (None) — for a region manager, the stores of his regions."""
    named: list[str] = list(stores or [])
    for region in regions or []:
        require_region(principal, region)
        named += stores_of_regions(tx, [region])
    if named:
        require_stores(tx, principal, named)
        return sorted(set(named))
    if regions:
        raise HqError(422, "no_stores", "the named regions have no stores")
    if principal.scoped:
        mine = stores_in_scope(tx, principal)
        if not mine:
            raise out_of_scope("the chain")
        return mine
    return None
