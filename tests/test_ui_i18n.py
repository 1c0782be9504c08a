"""The tablet speaks Simplified Chinese: every text the UI can show has a zh_CN translation.

Every msgid in edge/ui is extracted as `pybabel extract` would (Python with `_`, `N_`, `gettext`, `ngettext`;
templates with Jinja's own Babel extractor) and looked up in the merged catalogs the hub serves from
(edge.ui.i18n.translations). The catalogs are one .po file per page; they must parse, agree with each
other, and keep each message's placeholders.
"""

from __future__ import annotations

import gettext
import io
import re
from collections import defaultdict
from pathlib import Path

import httpx
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from edge.ui.i18n import catalog_files, translations
from tests.conftest import Hub

UI = Path(__file__).resolve().parent.parent / "edge" / "ui"
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")

Key = str | tuple[str, str]  # a msgid, or (singular, plural)


def extracted() -> dict[Key, list[str]]:
    """Each msgid used in edge/ui with the places (file:line) that use it."""
    found: dict[Key, list[str]] = defaultdict(list)
    for filename, lineno, message, _comments, _context in extract_from_dir(str(UI), METHODS, OPTIONS,
                                                                            keywords=KEYWORDS):
        key: Key = message if isinstance(message, str) else (message[0], message[1])
        found[key].append(f"edge/ui/{filename}:{lineno}")
    return found


def merged_catalog() -> dict[str | tuple[str, int], str]:
    """What translations('zh_CN') holds: every page catalog, the first in its fallback chain winning."""
    found: dict[str | tuple[str, int], str] = {}
    chain: gettext.NullTranslations | None = translations("zh_CN")
    while chain is not None:
        for key, value in getattr(chain, "_catalog", {}).items():
            found.setdefault(key, value)
        chain = getattr(chain, "_fallback", None)
    return found


def parsed(path: Path) -> Catalog:
    with path.open("rb") as fh:
        return read_po(io.BytesIO(fh.read()), locale="zh_CN", domain=path.stem, abort_invalid=True)


def test_the_extractor_finds_the_ui_texts() -> None:
    found = extracted()
    assert "Log in" in found and "edge/ui/templates/login.html:2" in found["Log in"]
    assert "Dashboard" in found and found["Dashboard"][0].startswith("edge/ui/nav.py:")
    assert "Not done: %(reason)s" in found
    assert len(found) > 100


def _place_order(place: str) -> tuple[str, int]:
    path, _, line = place.rpartition(":")
    return path, int(line)


def test_every_ui_text_has_a_chinese_translation() -> None:
    catalog = merged_catalog()
    missing = []
    for key, places in sorted(extracted().items(), key=lambda item: _place_order(item[1][0])):
        if isinstance(key, str):
            ok = bool(catalog.get(key))
        else:
            ok = bool(catalog.get((key[0], 0)))
        if not ok:
            more = f" (and {len(places) - 1} more places)" if len(places) > 1 else ""
            missing.append(f"{places[0]}: {key!r}{more}")
    assert missing == [], f"{len(missing)} UI texts have no zh_CN translation:\n" + "\n".join(missing)


def test_every_catalog_parses_as_utf8_zh_cn() -> None:
    files = catalog_files("zh_CN")
    assert [p.name for p in files if p.name == "base.po"] == ["base.po"]
    for path in files:
        catalog = parsed(path)
        headers = dict(catalog.mime_headers)
        assert headers.get("Language") == "zh_CN", path.name
        assert headers.get("Content-Type", "").replace(" ", "").lower() == "text/plain;charset=utf-8", path.name
        assert len(catalog) > 0, path.name


def test_no_text_is_translated_two_ways() -> None:
    seen: dict[object, dict[str, object]] = defaultdict(dict)
    for path in catalog_files("zh_CN"):
        for message in parsed(path):
            if message.id and message.string:
                seen[(message.context, message.id)][path.name] = message.string
    clashes = {key[1]: files for key, files in seen.items() if len(set(map(str, files.values()))) > 1}
    assert clashes == {}, f"translated differently in different .po files: {clashes}"


def test_translations_keep_their_placeholders() -> None:
    wrong = []
    for path in catalog_files("zh_CN"):
        for message in parsed(path):
            if not message.id or not message.string:
                continue
            ids = [message.id] if isinstance(message.id, str) else list(message.id)
            strings = [message.string] if isinstance(message.string, str) else list(message.string)
            want = set(PLACEHOLDER.findall(ids[-1]))
            for text in strings:
                if text and set(PLACEHOLDER.findall(text)) != want:
                    wrong.append(f"{path.name}:{message.lineno}: {ids[0]!r} -> {text!r}")
    assert wrong == [], "\n".join(wrong)


def test_the_placeholder_check_sees_a_dropped_name() -> None:
    assert set(PLACEHOLDER.findall("%(n)s items at %(till)s")) == {"n", "till"}
    assert set(PLACEHOLDER.findall("共 %(n)s 件")) != {"n", "till"}


def test_the_login_page_is_chinese_unless_the_cookie_says_english(hub: Hub) -> None:
    with httpx.Client(base_url=hub.base_url, timeout=30) as client:
        zh = client.get("/ui/login")
        assert zh.status_code == 200
        assert '<html lang="zh-CN">' in zh.text
        assert "<h1>登录</h1>" in zh.text
        assert ">用户名</label>" in zh.text
        client.cookies.set("backroom_lang", "en")
        en = client.get("/ui/login")
        assert '<html lang="en">' in en.text
        assert "<h1>Log in</h1>" in en.text
        assert ">User name</label>" in en.text
        client.cookies.set("backroom_lang", "xx")  # an unknown language falls back to the default
        assert '<html lang="zh-CN">' in client.get("/ui/login").text
