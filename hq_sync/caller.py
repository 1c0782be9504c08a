"""What hub code needs of the sync agent to ask HQ something online: one signed request.

A leaf (it imports nothing of ours), so that hub modules that call HQ (coupons, members) depend on
this small interface and not on the agent, which itself depends on them through `hub_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)


class HqCaller(Protocol):
    online: bool

    async def call_hq(self, method: str, path: str, *, body: bytes = b"", timeout: float | None = None,
                      params: dict[str, str] | None = None) -> httpx.Response | None:
        """HQ's answer to a signed request, or None when this hub is not paired. Transport errors raise
        `httpx.HTTPError`; `timeout` defaults to the agent's authorisation timeout."""
        ...
