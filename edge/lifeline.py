"""A child process that must not outlive its parent: the hub's sale writer (edge/sales/writer_proc.py) and
HQ's batch lane processes (hq_sync/server/api/scheduling.py)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Call first thing in the child: the kernel kills it (SIGKILL) when its parent thread ends
    (PR_SET_PDEATHSIG, Linux); if the parent `parent` is already gone, it exits now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's closed pipe still ends the child
        pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)
