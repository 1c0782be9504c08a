"""A task that runs beside the app for as long as a lifespan lasts (daily passes, schedules): one
owner for the start and the mirrored teardown, so a lifespan hook only says what runs. And
`settled`, which a task awaits to begin its work a moment after the hub answers requests: start-up
passes (points expiry, the member pass, mDNS) then do not compete with the hub's own start and its
first requests for the GIL (docs/performance.md, cold start).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
else:  # the sale-writer process, which has no event loop, does without it (8 MB resident)
    from edge.lazy_import import LazyModule

    asyncio = LazyModule("asyncio")

READY_POLL_S = 0.02
READY_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # after the port answers: the first requests (tills reconnecting, the tablet) go first


class _Probe:
    def __init__(self, task: asyncio.Task[bool]) -> None:
        self.task = task
        self.waiters = 0


_probes: dict[tuple[asyncio.AbstractEventLoop, str, int], _Probe] = {}


async def serving(host: str, port: int) -> bool:
    """True once `host:port` accepts a TCP connection (uvicorn binds after the lifespan has started); False
    if it has not after a minute. The start-up tasks that wait for it at the same time (readiness, the first
    passes, mDNS) share one probe of the port instead of polling it each; the probe ends with its last waiter."""
    key = (asyncio.get_running_loop(), host, port)
    probe = _probes.get(key)
    if probe is None:
        probe = _probes[key] = _Probe(asyncio.create_task(_probe(host, port), name=f"backroom-serving-{port}"))
        probe.task.add_done_callback(lambda _: _probes.pop(key, None))
    probe.waiters += 1
    try:
        return await asyncio.shield(probe.task)
    finally:
        probe.waiters -= 1
        if probe.waiters == 0 and not probe.task.done():  # every waiter was cancelled: stop polling
            probe.task.cancel()


async def _probe(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(target, port)
        except OSError:
            await asyncio.sleep(READY_POLL_S)
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


async def settled(host: str, port: int) -> None:
    """Return `SETTLE_S` after `host:port` first accepts a connection (or after a minute without)."""
    await serving(host, port)
    await asyncio.sleep(SETTLE_S)


@asynccontextmanager
async def background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `work` as a task while the block runs; cancel it and wait for it to end on the way out."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
