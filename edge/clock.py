"""The store's wall clock: RFC 3339 times with the store's offset, and the store's date."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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
