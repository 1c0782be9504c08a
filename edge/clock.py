"""The store's wall clock: RFC 3339 times with the store's offset, and the store's date."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def read_day(text: str) -> datetime.date | None:
    """A store date written YYYY-MM-DD (not the other ISO forms Python also reads); None otherwise."""
    if len(text) != 10:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return None


class StoreClock:
    def __init__(self, timezone: str) -> None:
        try:
            self.tz: datetime.tzinfo = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.tz = datetime.timezone(datetime.timedelta(hours=8), "CST")

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(self.tz)

    def stamp(self) -> str:
        return self.now().isoformat(timespec="milliseconds")

    def today(self) -> str:
        return self.now().date().isoformat()

    def day_or_today(self, text: str) -> str:
        """The day a page was asked for; an empty or malformed one is today."""
        day = read_day(text)
        return day.isoformat() if day is not None else self.today()
