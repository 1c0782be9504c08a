"""The tablet's languages: gettext catalogs (one .po file per page under locale/<lang>/LC_MESSAGES/),
compiled in memory on first use with Babel, plus Babel's number, money and date formats.

Babel is imported on first use (`edge.lazy_import`): a hub serves its first request without it
(docs/performance.md, cold start).

English text is the msgid, so English needs no catalog; Simplified Chinese is the default.
"""

from __future__ import annotations

import datetime
import gettext
import io
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import babel
    from babel import dates as dates  # re-exported: pages take Babel's date names and spans from here
    from babel import numbers
    from babel.messages import mofile, pofile
else:
    from edge.lazy_import import LazyModule

    babel = LazyModule("babel")
    dates = LazyModule("babel.dates")
    numbers = LazyModule("babel.numbers")
    mofile = LazyModule("babel.messages.mofile")
    pofile = LazyModule("babel.messages.pofile")

LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"
LANGUAGE_NAMES = {"zh_CN": "简体中文", "en": "English"}


def catalog_files(language: str, locale_dir: Path = LOCALE_DIR) -> list[Path]:
    return sorted((locale_dir / language / "LC_MESSAGES").glob("*.po"))


def translations(language: str) -> gettext.NullTranslations:
    """All of a language's page catalogs merged into one (an unknown language gets English)."""
    return merged_translations(language, (LOCALE_DIR,))


@cache
def merged_translations(language: str, locale_dirs: tuple[Path, ...]) -> gettext.NullTranslations:
    """The catalogs of several UIs merged (the HQ console's over the tablet's): a text either
    translates is found, the first directory winning."""
    merged: gettext.NullTranslations = gettext.NullTranslations()
    paths = [path for d in reversed(locale_dirs) for path in catalog_files(language, d)]
    for path in paths if language in LANGUAGES else []:
        with path.open("rb") as fh:
            catalog = pofile.read_po(fh, locale=language, domain=path.stem)
        buf = io.BytesIO()
        mofile.write_mo(buf, catalog)
        buf.seek(0)
        page = gettext.GNUTranslations(buf)
        page.add_fallback(merged)
        merged = page
    return merged


def language_of(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


class Formats:
    """Numbers, money and times as the reader's language writes them."""

    def __init__(self, language: str, tz: datetime.tzinfo) -> None:
        self.locale = babel.Locale.parse(language)
        self.tz = tz

    def money(self, fen: int | None) -> str:
        if fen is None:
            return "—"
        return numbers.format_currency(Decimal(fen) / 100, "CNY", locale=self.locale)

    def number(self, value: int | float | Decimal | None) -> str:
        return "—" if value is None else numbers.format_decimal(value, locale=self.locale)

    def percent_bp(self, basis_points: int | None) -> str:
        """A share given in basis points (1/10,000)."""
        return "—" if basis_points is None else numbers.format_percent(Decimal(basis_points) / 10000, "#,##0.0%",
                                                                locale=self.locale)

    def grams(self, grams: int | None) -> str:
        if grams is None:
            return "—"
        return f"{numbers.format_decimal(Decimal(grams) / 1000, '#,##0.000', locale=self.locale)} kg"

    def when(self, stamp: str | datetime.datetime | None, style: str = "short") -> str:
        if not stamp:
            return "—"
        moment = datetime.datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
        return dates.format_datetime(moment, style, tzinfo=self.tz, locale=self.locale)

    def day(self, value: str | datetime.date | None, style: str = "medium") -> str:
        if not value:
            return "—"
        return dates.format_date(datetime.date.fromisoformat(value) if isinstance(value, str) else value, style,
                           locale=self.locale)

    def clock(self, stamp: str | None) -> str:
        if not stamp:
            return "—"
        return dates.format_time(datetime.datetime.fromisoformat(stamp), "short", tzinfo=self.tz, locale=self.locale)
