"""Which stores a price or a promotion reaches, and whether the caller may reach them.

A target is a list of stores and regions; a region expands to its stores (as they are now). The
caller's scope is the set of stores he may act on (`None`: the whole chain — HQ admins and operators;
a region manager's scope is his regions' stores). Checked here, in the service layer, so the JSON API
and the console refuse the same things: an unknown store or region is a 422, a store outside the
caller's scope a 403, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable

from hq_sync.server.service.access import Principal, stores_in_scope
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import Tx

Scope = frozenset[str] | None  # the stores a caller may see and act on; None = every store


def scope_of(tx: Tx, principal: Principal) -> Scope:
    """The stores the principal reaches (None: the whole chain)."""
    return frozenset(stores_in_scope(tx, principal)) if principal.scoped else None


def all_stores(tx: Tx) -> list[str]:
    return [str(r[0]) for r in tx.all("SELECT store_id FROM hq_stores ORDER BY store_id")]


def regions(tx: Tx, scope: Scope = None) -> list[str]:
    rows = [(str(r[0]), str(r[1])) for r in tx.all("SELECT store_id, region FROM hq_stores ORDER BY region")]
    return sorted({region for store, region in rows if region and (scope is None or store in scope)})


def resolve(tx: Tx, stores: Iterable[str], regions_: Iterable[str], scope: Scope) -> list[str] | None:
    """The stores named and those of the regions named, checked against the chain and the caller's scope.
    No stores and no regions means the whole chain (None) — for a region manager, all of his stores (as
    access.target_stores has it)."""
    stores, regions_ = list(stores), list(regions_)
    if not stores and not regions_:
        if scope is not None:
            if not scope:
                raise HqError(403, "out_of_scope", "you have no stores")
            return sorted(scope)
        return None
    known = {str(r[0]): str(r[1]) for r in tx.all("SELECT store_id, region FROM hq_stores")}
    out: set[str] = set()
    for store in stores:
        if store not in known:
            raise HqError(422, "unknown_store", f"no store {store[:64]}", store=store[:64])
        out.add(store)
    for region in regions_:
        members = {s for s, r in known.items() if r == region}
        if not members:
            raise HqError(422, "unknown_region", f"no region {region[:64]}", region=region[:64])
        out |= members
    check(out, scope)
    return sorted(out)


def check(stores: Iterable[str], scope: Scope) -> None:
    """403 when any of these stores is outside the caller's scope."""
    if scope is None:
        return
    outside = sorted(set(stores) - scope)
    if outside:
        raise HqError(403, "out_of_scope", f"store {outside[0][:64]} is outside your regions", store=outside[0][:64])


def visible(stores: Iterable[str], scope: Scope) -> list[str]:
    return sorted(s for s in stores if scope is None or s in scope)
