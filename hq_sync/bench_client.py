"""The chain bench's HTTP client: one keep-alive HTTP/1.1 connection over asyncio streams, nothing more.

`bench chain` simulates a thousand stores in one event loop. With httpx, each request cost the simulator
about a millisecond of Python (its pool scans every connection it holds, twice, per request), and a
200-store sample showed the simulator's event loop always busy and 0.3 to 2.3 s late: that lateness was
counted in the authorisation latencies and the fan-out. A store here holds its own connections (one for
its long-poll, one for its uploads), so there is no pool to scan. It speaks only what HQ answers: a
status line, headers and a `Content-Length` body (or chunked, for completeness).
"""

from __future__ import annotations

import asyncio
import time

# uvicorn closes a connection idle for 5 s (its keep-alive timeout); a request sent on it as it closes
# fails in transit. A connection idle longer than this is replaced before it is used.
IDLE_S = 3.0


class HttpError(Exception):
    """The request did not get an answer (connection refused, closed or broken)."""


class Answer:
    __slots__ = ("status", "headers", "content")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class Conn:
    """One HTTP/1.1 connection to `host:port`, opened on first use and again after a failure. One request at
    a time (the caller's: a store's poll loop, its upload loop)."""

    def __init__(self, host: str, port: int, timeout_s: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = 0.0

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        try:
            return await asyncio.wait_for(self._request(method, target, headers, body), self.timeout_s)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    async def _request(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        if self._writer is not None and time.monotonic() - self._used > IDLE_S:
            self.close()
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        answer_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        if "content-length" in answer_headers:
            content = await reader.readexactly(int(answer_headers["content-length"]))
        elif answer_headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            content = b"".join(p[:-2] for p in parts)
        else:
            content = b""
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        self._used = time.monotonic()
        return Answer(status, answer_headers, content)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
