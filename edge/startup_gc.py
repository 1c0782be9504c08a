"""Start-up without the cyclic garbage collector (docs/performance.md, cold start).

Importing the hub and building its Litestar app allocate about 100,000 objects that live as long as
the process (modules, classes, functions, route handlers, signature models). While they are made,
the collector ran some 160 times and found almost nothing: 10-15 % of a cold start's CPU. So the
command line runs with the collector off until the server is built; `frozen_after` then moves
everything made so far out of the collector's reach (`gc.freeze`), so that the served process never
scans those objects again, and turns it back on. A few thousand cyclic leftovers of start-up stay
allocated (well under a megabyte).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def pause() -> None:
    """No cyclic collections from here (reference counting still frees what it can)."""
    gc.disable()


def resume() -> None:
    gc.enable()


@contextmanager
def frozen_after() -> Iterator[None]:
    """Build the server inside the block, the collector off; what exists at its end is frozen."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
