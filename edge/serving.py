"""How the hub is served: uvicorn on uvloop + httptools, with one socket write per response.

uvicorn writes a response's status line and headers as soon as the app starts the response, and
the body in a second write: two `send` syscalls (and two TCP segments to the till, whose socket
has Nagle off) for every answer. The profile of `bench checkout` (docs/performance.md) put a fifth
of the hub's CPU in those syscalls. `CorkedHttpToolsProtocol` hands uvicorn a transport that
gathers what is written in one turn of the event loop and writes it at the end of that turn: the
head and body of an answer leave in one `send`. Nothing waits longer than the current loop turn,
closing flushes first, and more than `FLUSH_AT` bytes are written at once (streams, big pages).

`NoEventListeners` is Litestar's event emitter for an app that has no event listeners (the hub's and
HQ's): the default one starts an anyio task group at every start, importing anyio's asyncio backend
(some 17 modules, tens of milliseconds of a cold start) for events nobody listens to.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.events import BaseEventEmitterBackend
from litestar.exceptions import ImproperlyConfiguredException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024


class CorkedTransport:
    """An asyncio transport that coalesces the writes made within one loop turn into one."""

    __slots__ = ("_inner", "_loop", "_buf", "_scheduled")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self._buf: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._buf.append(bytes(data))
        if sum(map(len, self._buf)) >= FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf.clear()
        if not self._inner.is_closing():
            self._inner.write(data)

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def abort(self) -> None:
        self._buf.clear()
        self._inner.abort()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(map(len, self._buf))

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, set_protocol...
        return getattr(self._inner, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]


class NoEventListeners(BaseEventEmitterBackend):
    """An event emitter with nothing to run: `app.emit` fails as Litestar's does for an event without
    listeners."""

    __slots__ = ()

    async def __aenter__(self) -> NoEventListeners:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, event_id: str, *args: Any, **kwargs: Any) -> None:
        raise ImproperlyConfiguredException(f"no event listener for {event_id!r}")
