"""A server told to stop (SIGTERM, SIGINT): what is held open ends at once.

uvicorn's signal handlers start its graceful stop: it stops accepting, lets the requests in flight finish for
up to its grace period (5 s here), then cancels them, and logs each cancellation with its traceback. A
long-lived response (the tablet's and the console's live streams, HQ's feed long-polls) would hold every stop
for the whole grace period and end in such a traceback. `install` (once, from the app's lifespan) chains a step
of ours onto those handlers: `stopping()` turns true, `nap` returns at once, and the callbacks registered with
`when_stopping` run on the event loop, so that held responses end cleanly within a moment."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

NAP_SLICE_S = 0.25
_stopping = threading.Event()
_callbacks: list[Callable[[], None]] = []  # run on the installing event loop when told to stop


def stopping() -> bool:
    return _stopping.is_set()


async def nap(seconds: float) -> None:
    """`asyncio.sleep(seconds)`, cut short when the server is told to stop."""
    until = time.monotonic() + seconds
    while not _stopping.is_set():
        left = until - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, NAP_SLICE_S))


def when_stopping(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the event loop when the server is told to stop (e.g. wake what waits on a queue).
    Returns what takes it off again."""
    _callbacks.append(callback)

    def forget() -> None:
        with contextlib.suppress(ValueError):
            _callbacks.remove(callback)

    return forget


def install() -> Callable[[], None]:
    """From an app's lifespan (on its event loop): chain onto the server's SIGTERM and SIGINT handlers. Returns
    what puts them back. Only in the main thread, where signal handlers live; elsewhere (a test client running
    the app in a thread) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _stopping.clear()
    loop = asyncio.get_running_loop()
    before: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def told(sig: int, frame: FrameType | None) -> None:
        previous = before[sig]
        if callable(previous):
            previous(sig, frame)
        _stopping.set()
        for callback in list(_callbacks):
            loop.call_soon_threadsafe(callback)

    for sig in before:
        signal.signal(sig, told)

    def restore() -> None:
        for sig, previous in before.items():
            if signal.getsignal(sig) is told:
                signal.signal(sig, previous)

    return restore


@asynccontextmanager
async def stop_signals_lifespan(_app: Any) -> AsyncIterator[None]:
    """A Litestar lifespan: `install` for the app's run (the hub's live streams end when it is told to stop)."""
    restore = install()
    try:
        yield
    finally:
        restore()
