"""The one error type handlers raise: an HTTP status, a machine-readable code, a human message."""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


# SQLite's primary result codes for a write that could not be made durable (the extended I/O codes,
# SQLITE_IOERR_WRITE, _FSYNC..., share the primary code in their low byte).
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)


class StorageFull(ApiError):
    """507: the write could not be made durable (disk full, I/O error); nothing of it was committed."""

    def __init__(self, cause: str) -> None:
        super().__init__(507, "storage_full", "the hub could not write to its disk (full or failing); nothing of this "
                         "request was committed: free space on the hub and try again")
        self.cause = cause


def storage_failure(exc: BaseException) -> StorageFull | None:
    """The 507 for an exception that says the disk refused a write, else None."""
    if isinstance(exc, StorageFull):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
            return StorageFull(f"{getattr(exc, 'sqlite_errorname', 'SQLITE_ERROR')}: {exc}")
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return StorageFull(f"{errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc}")
    return None


def unexpected(exc: BaseException, where: str, log: logging.Logger) -> ApiError:
    """What to answer for an exception no handler expected, logged: the 507 when the disk refused a write
    (outside the hub's writer), else a 500 that says nothing was committed. The app's exception handler
    (edge/app.py) and the sale fast path (edge/api/sale_fast_path.py) both answer with it."""
    full = storage_failure(exc)
    if full is not None:
        log.error("storage full on %s: %s", where, full.cause)
        return full
    log.exception("unhandled error on %s", where, exc_info=exc)
    return ApiError(500, "internal", "internal error; the request was not committed")
