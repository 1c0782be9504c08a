"""HQ's refusals (`HqError`, turned into 4xx {"code", "message"} by the API) and its clock text."""

from __future__ import annotations

import datetime
from typing import Any


class HqError(Exception):
    """A refusal the HTTP layer turns into a 4xx {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="milliseconds")


def clock_text(at: float) -> str:
    """`now_text` of an earlier `time.time()`."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).astimezone().isoformat(timespec="milliseconds")
