"""The component states `/healthz` carries: the doctor's checks (edge/care/doctor.py) read from the running
hub's own state, so a poll costs a statvfs and a few attribute reads. Cached for a few seconds."""

from __future__ import annotations

import datetime
import time
from typing import Any

import msgspec

from edge.care.doctor import clock_check, devices_check, disk_check
from edge.hub import Hub

CACHE_S = 5.0


class Component(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


def _compute(state: Any, hub: Hub) -> dict[str, Component]:
    link = getattr(state, "devices", None)
    out: dict[str, Component] = {}
    if not hub.config.devices_enabled:
        out["broker"] = Component(True, "devices are off on this hub")
        out["devices"] = Component(True, "devices are off on this hub")
    elif link is None:
        out["broker"] = Component(False, "the hub has no broker connection (see its log)")
        out["devices"] = Component(False, "device status unknown: no broker connection")
    else:
        up = link.connected.is_set()
        out["broker"] = Component(up, "connected" if up else "the hub lost its broker connection")
        check = devices_check({d: link.board.status(d) for d in link.registered()})
        out["devices"] = Component(check.ok, check.detail)
    disk = disk_check(hub.config.data_dir, hub.config.disk_low_mb)
    out["disk"] = Component(disk.ok, disk.detail)
    failed = hub.db.storage_failed_at
    if failed is not None and time.time() - failed < 60:
        out["database"] = Component(False, "a write could not be made durable in the last minute (storage_full)")
    else:
        out["database"] = Component(True, "passed the quick check at start")
    probe = getattr(state, "writer_probe", None)
    waited = probe.stalled_for() if probe is not None else 0.0
    if probe is not None and waited >= probe.stall_s:
        out["database"] = Component(False, f"the writer has taken no write for {waited:.0f} s (the hub restarts "
                                           "under systemd; else restart it)")
    clock = clock_check(datetime.datetime.now(datetime.UTC))
    out["clock"] = Component(clock.ok, clock.detail)
    agent = getattr(state, "sync", None)
    if agent is None:
        out["hq"] = Component(True, "not syncing (standalone, or no HQ URL configured)")
    else:
        out["hq"] = Component(bool(agent.online), "HQ answers" if agent.online else "HQ cannot be reached")
    return out


def components(state: Any, hub: Hub) -> dict[str, Component]:
    cached: tuple[float, dict[str, Component]] | None = getattr(state, "care_health", None)
    now = time.monotonic()
    failed = hub.db.storage_failed_at
    fresh_failure = failed is not None and time.time() - failed < now - (cached[0] if cached else now)
    if cached is not None and now - cached[0] < CACHE_S and not fresh_failure:  # a refused write shows at once
        return cached[1]
    fresh = _compute(state, hub)
    state.care_health = (now, fresh)
    return fresh


def low_space(hub: Hub) -> str | None:
    """The tablet's banner: the free space in MB when below the warning level, else None."""
    check = disk_check(hub.config.data_dir, hub.config.disk_low_mb)
    return None if check.ok else check.detail
