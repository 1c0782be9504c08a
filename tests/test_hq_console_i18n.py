"""The HQ console speaks Simplified Chinese: every text it can show has a zh_CN translation.

Every msgid in hq_sync/server/console is extracted as `pybabel extract` would (Python with `_`, `N_`,
`gettext`, `ngettext`; templates with Jinja's Babel extractor) and looked up in the catalogs the console
serves from: its own (hq_sync/server/console/locale) over the tablet's (edge/ui/locale), so a text
both show is translated once. The console's catalogs must parse, say the same as the tablet's where
they overlap, and keep each message's placeholders.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from edge.ui.i18n import LOCALE_DIR, catalog_files
from hq_sync.server.console.view import CONSOLE_LOCALE, translations

CONSOLE = Path(__file__).resolve().parent.parent / "hq_sync" / "server" / "console"
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def extracted() -> dict[str | tuple[str, str], list[str]]:
    found: dict[str | tuple[str, str], list[str]] = defaultdict(list)
    for filename, lineno, message, _comments, _context in extract_from_dir(str(CONSOLE), METHODS, OPTIONS,
                                                                            keywords=KEYWORDS):
        key = message if isinstance(message, str) else (message[0], message[1])
        found[key].append(f"console/{filename}:{lineno}")
    return found


def parsed(path: Path) -> Catalog:
    with path.open("rb") as fh:
        return read_po(io.BytesIO(fh.read()), locale="zh_CN", domain=path.stem, abort_invalid=True)


def test_the_extractor_finds_the_console_texts() -> None:
    found = extracted()
    assert "Chain dashboard" in found and found["Chain dashboard"][0].startswith("console/nav.py:")
    assert "console/templates/login.html:3" in found["Log in"]
    assert len(found) > 100


def test_every_console_text_has_a_chinese_translation() -> None:
    zh = translations("zh_CN")
    missing = []
    for key, places in extracted().items():
        text = key if isinstance(key, str) else key[0]
        got = zh.gettext(text) if isinstance(key, str) else zh.ngettext(key[0], key[1], 1)
        if got == text:
            missing.append(f"{places[0]}: {key!r}")
    assert missing == [], f"{len(missing)} console texts have no zh_CN translation:\n" + "\n".join(sorted(missing))


def test_the_console_catalogs_parse_and_agree_with_the_tablets() -> None:
    files = catalog_files("zh_CN", CONSOLE_LOCALE)
    assert "console.po" in [p.name for p in files]
    seen: dict[str, dict[str, object]] = defaultdict(dict)
    for path in [*files, *catalog_files("zh_CN", LOCALE_DIR)]:
        catalog = parsed(path)
        headers = dict(catalog.mime_headers)
        assert headers.get("Language") == "zh_CN", path.name
        for message in catalog:
            if message.id and message.string:
                seen[str(message.id)][f"{path.parent.parent.parent.name}/{path.name}"] = message.string
    clashes = {key: files for key, files in seen.items() if len(set(map(str, files.values()))) > 1}
    assert clashes == {}, f"translated differently: {clashes}"


def test_translations_keep_their_placeholders() -> None:
    wrong = []
    for path in catalog_files("zh_CN", CONSOLE_LOCALE):
        for message in parsed(path):
            if message.id and message.string:
                if set(PLACEHOLDER.findall(str(message.id))) != set(PLACEHOLDER.findall(str(message.string))):
                    wrong.append(f"{path.name}:{message.lineno}: {message.id!r} -> {message.string!r}")
    assert wrong == [], "\n".join(wrong)


def test_english_is_the_msgid_and_an_unknown_language_gets_english() -> None:
    assert translations("en").gettext("Chain dashboard") == "Chain dashboard"
    assert translations("xx").gettext("Chain dashboard") == "Chain dashboard"
    assert translations("zh_CN").gettext("Chain dashboard") == "连锁总览"
