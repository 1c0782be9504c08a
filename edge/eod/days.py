"""The business day: the store date, and the created_at range that selects it on an index."""

from __future__ import annotations

import datetime

from edge.clock import read_day
from edge.errors import ApiError


def parse_day(text: str) -> datetime.date:
    day = read_day(text)
    if day is None:
        raise ApiError(400, "invalid_day", f"day must be a date YYYY-MM-DD, not {text[:32]!r}")
    return day


def bounds(day: str) -> tuple[str, str]:
    """`created_at >= lo AND created_at < hi` selects the day: times are store-local RFC 3339 text."""
    return day, (parse_day(day) + datetime.timedelta(days=1)).isoformat()


def check_not_future(day: str, today: str) -> None:
    if day > today:
        raise ApiError(422, "future_day", f"{day} has not begun; today is {today}")
