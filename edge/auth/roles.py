"""Roles and the permission table (data in permissions.toml, loaded strictly once)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal, get_args

import msgspec

Role = Literal["hq_admin", "region_manager", "store_manager", "cashier", "sales_guide"]
ROLES: tuple[str, ...] = get_args(Role)


class PermissionTable(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    permissions: dict[str, list[Role]]


@cache
def permission_table() -> dict[str, frozenset[str]]:
    raw = tomllib.loads((Path(__file__).with_name("permissions.toml")).read_text("utf-8"))
    table = msgspec.convert(raw, PermissionTable)
    return {name: frozenset(roles) for name, roles in table.permissions.items()}


def allowed(role: str, permission: str) -> bool:
    roles = permission_table().get(permission)
    if roles is None:
        raise KeyError(f"unknown permission {permission!r}")
    return role in roles
