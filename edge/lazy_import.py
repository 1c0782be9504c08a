"""Modules the hub imports on first use, not at start (docs/performance.md, footprint).

`from edge.lazy_import import httpx` gives a stand-in whose first attribute access imports the real
module; `except httpx.HTTPError:` and `httpx.post(...)` work unchanged. httpx brings some 200
modules and 18 MB resident (click, rich and pygments through its command line) that a standalone
hub, which never calls HQ or a webhook, does not need. Type checkers see the real module:

    if TYPE_CHECKING:
        import httpx
    else:
        from edge.lazy_import import httpx

`LazyDecoder` is the same for a msgspec decoder made at module level: building one resolves every
annotation of its type (a tagged union of a dozen Structs takes milliseconds), which a process that
never decodes that type should not pay at start (docs/performance.md, cold start). This module
imports nothing of ours, so the wire leaves (`hq_sync/wire.py`, `hq_sync/protocol.py`) may use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


httpx = LazyModule("httpx")


class _Decoder(Protocol[T_co]):
    def decode(self, buf: Any, /) -> T_co: ...


class LazyDecoder(Generic[T]):
    """`make()` (a msgspec JSON or MessagePack decoder) built on the first `decode`."""

    __slots__ = ("_make", "_decoder")

    def __init__(self, make: Callable[[], _Decoder[T]]) -> None:
        self._make = make
        self._decoder: _Decoder[T] | None = None

    def decode(self, buf: Any) -> T:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._make()
        return decoder.decode(buf)
