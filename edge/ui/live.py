"""Live sections of a page: a server-sent event stream that looks at a cheap signature of the data
every few seconds and, when it changed, sends the page's fragments re-rendered (app.js swaps them in
by element id). Quiet streams get a comment now and then, so proxies and the browser keep them open."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from edge.stopping import nap, stopping

S = TypeVar("S")
T = TypeVar("T")
KEEPALIVE_S = 15.0


class Viewer(Protocol):
    """A page view whose login a stream keeps checking (the tablet's UiView, the console's view)."""

    def signed_in(self) -> bool: ...


def live_fragments(
    ui: Viewer,
    signature: Callable[[], S],
    render: Callable[[S | None, S], dict[str, str]],
    *,
    poll_s: float,
    send_first: bool = True,
    running: Callable[[], bool] = lambda: True,
    keepalive_s: float = KEEPALIVE_S,
    in_thread: bool = False,
) -> ServerSentEvent:
    """`render(previous, now)` gives {element id: outerHTML}; `previous` is None on the first send.
    With `send_first` off, the stream starts from the current state and sends only changes. The stream
    ends when its login does (expired, or ended by a change to the account). With `in_thread`, the
    login check, the signature and the rendering run in a worker thread (HQ's reads may go over the
    network to PostgreSQL; the event loop must not wait on them). It also ends when the server is told to
    stop (edge/stopping.py)."""

    async def call(fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args) if in_thread else fn(*args)

    async def updates() -> AsyncIterator[ServerSentEventMessage]:
        last: S | None = None if send_first else await call(signature)
        sent_any = not send_first
        if not send_first:  # the state it starts from is taken: from here on, every change is sent
            yield ServerSentEventMessage(comment="live")
        quiet_since = time.monotonic()
        while running() and not stopping() and await call(ui.signed_in):
            now = await call(signature)
            if not sent_any or now != last:
                fragments = await call(render, last if sent_any else None, now)
                last, sent_any, quiet_since = now, True, time.monotonic()
                if fragments:
                    yield ServerSentEventMessage(data=msgspec.json.encode(fragments).decode(), event="fragments")
            elif time.monotonic() - quiet_since > keepalive_s:
                quiet_since = time.monotonic()
                yield ServerSentEventMessage(comment="keep-alive")
            await nap(poll_s)  # cut short when the server is told to stop: the stream ends, not cancelled

    return ServerSentEvent(updates(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
