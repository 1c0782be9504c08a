"""Modules the hub imports on first use, not at start (docs/performance.md, footprint).

`from edge.lazy_import import httpx` gives a stand-in whose first attribute access imports the real
module; `except httpx.HTTPError:` and `httpx.post(...)` work unchanged. httpx brings some 200
modules and 18 MB resident (click, rich and pygments through its command line) that a standalone
hub, which never calls HQ or a webhook, does not need. Type checkers see the real module:

    if TYPE_CHECKING:
        import httpx
    else:
        from edge.lazy_import import httpx
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


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
