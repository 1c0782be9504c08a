"""One console page view: the reader's language, formats and principal, and the answers a page gives
(a rendered template, a redirect with a notice, a form read after its CSRF check). The templates are
the console's own, with the tablet's `macros.html` behind them; the texts are the console's catalogs
over the tablet's."""

from __future__ import annotations

import datetime
import gettext
import time
import zoneinfo
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import jinja2
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Redirect
from markupsafe import Markup

import edge.ui
from edge.ui import charts
from edge.ui.i18n import LANGUAGE_NAMES, LOCALE_DIR, Formats, language_of, merged_translations
from edge.ui.pagekit import read_form_lists
from edge.ui.session import Flash, csrf_token, decode_flash, encode_flash
from hq_sync.server.api.resources import Hq
from hq_sync.server.console.nav import ROLE_NAMES, pages_for
from hq_sync.server.console.session import COOKIE_PATH, FLASH_COOKIE, LANG_COOKIE, SESSION_COOKIE, csrf_key
from hq_sync.server.service.access import Principal
from hq_sync.server.service.auth import principal_for_token
from hq_sync.server.service.errors import HqError

HERE = Path(__file__).parent
TABLET_UI = Path(edge.ui.__file__).parent  # the tablet's templates (macros) and static files, shared
TABLET_TEMPLATES = TABLET_UI / "templates"
TEMPLATES = HERE / "templates"
CONSOLE_LOCALE = HERE / "locale"
LOCALES = (CONSOLE_LOCALE, LOCALE_DIR)
CHAIN_TZ = zoneinfo.ZoneInfo("Asia/Shanghai")  # how HQ writes times; each store's own day uses its timezone
HOME = "/hq/ui"


def translations(language: str) -> gettext.NullTranslations:
    return merged_translations(language, LOCALES)


@cache
def environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(TEMPLATES), jinja2.FileSystemLoader(TABLET_TEMPLATES)]),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["charts"] = charts
    return env


def safe_next(path: str | None, default: str = HOME) -> str:
    """Only the console's own pages: never redirect a login to another site or to a hub."""
    if path and path.startswith("/hq/ui") and not path.startswith("//") and "\\" not in path:
        return quote(path, safe="/?&=;:@+$,%#~-._")  # control characters and the like never reach a header
    return default


class ConsoleView:
    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request
        self.hq: Hq = request.app.state.hq
        self.lang = language_of(request.cookies.get(LANG_COOKIE))
        self.html_lang = "zh-CN" if self.lang == "zh_CN" else "en"
        self._ = translations(self.lang).gettext
        self.ngettext = translations(self.lang).ngettext
        self.fmt = Formats(self.lang, CHAIN_TZ)
        user = request.scope.get("user")
        self.principal: Principal | None = user if isinstance(user, Principal) else None
        self.flash: Flash | None = decode_flash(request.cookies.get(FLASH_COOKIE))
        self.path = request.url.path
        self.opened = time.time()

    @property
    def who(self) -> Principal:
        """The principal of a guarded page (the guard put him there)."""
        assert self.principal is not None, "a console page without its guard"
        return self.principal

    # -- who -----------------------------------------------------------------------------------------------
    def signed_in(self) -> bool:
        """The login this view was opened with still holds (live streams ask again and again)."""
        token = self.request.cookies.get(SESSION_COOKIE, "")
        now = principal_for_token(self.hq.db, token) if token else None
        return now is not None and now == self.principal

    def may(self, permission: str) -> bool:
        return self.principal is not None and self.principal.may(permission)

    @property
    def role_name(self) -> str:
        return self._(ROLE_NAMES.get(self.principal.role, self.principal.role)) if self.principal else ""

    @property
    def nav(self) -> list[dict[str, Any]]:
        if self.principal is None:
            return []
        return [{"key": item.key, "path": item.path, "label": self._(item.label),
                 "current": self.path == item.path or self.path.startswith(item.path + "/")}
                for item in pages_for(self.principal.role)]

    @property
    def languages(self) -> list[tuple[str, str, bool]]:
        here = quote(self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else ""))
        return [(f"/hq/ui/lang/{code}?next={here}", name, code == self.lang) for code, name in LANGUAGE_NAMES.items()]

    @property
    def csrf(self) -> str:
        token = self.request.cookies.get(SESSION_COOKIE, "")
        return csrf_token(csrf_key(self.hq), token) if token else ""

    @property
    def csrf_input(self) -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(self.csrf)

    def role_label(self, role: str) -> str:
        return self._(ROLE_NAMES.get(role, role))

    def age(self, stamp: str | None) -> str:
        """How long ago `stamp` was, in words ("3 min", "2 h", "5 d"); "—" without one."""
        if not stamp:
            return "—"
        try:
            then = datetime.datetime.fromisoformat(stamp)
        except ValueError:
            return "—"
        seconds = max(0, int(self.opened - then.timestamp()))
        if seconds < 60:
            return self._("%(n)s s") % {"n": seconds}
        if seconds < 3600:
            return self._("%(n)s min") % {"n": seconds // 60}
        if seconds < 86400:
            return self._("%(n)s h") % {"n": seconds // 3600}
        return self._("%(n)s d") % {"n": seconds // 86400}

    # -- answers ---------------------------------------------------------------------------------------------
    def fragment(self, template: str, **context: Any) -> str:
        return environment(self.lang).get_template(template).render(ui=self, **context)

    def render(self, template: str, status: int = 200, **context: Any) -> Response[str]:
        response: Response[str] = Response(self.fragment(template, **context), status_code=status,
                                           media_type=MediaType.HTML, headers={"Cache-Control": "no-store"})
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
        return response

    def redirect(self, path: str, *, notice: str | None = None, error: str | None = None) -> Redirect:
        cookies: list[Cookie] = []
        if notice is not None or error is not None:
            flash = Flash("error", error) if error is not None else Flash("notice", notice or "")
            cookies.append(Cookie(key=FLASH_COOKIE, value=encode_flash(flash), path=COOKIE_PATH, httponly=True,
                                  samesite="strict", max_age=60))
        return Redirect(path=safe_next(path), status_code=303, cookies=cookies)

    def problem(self, exc: HqError) -> str:
        """A refused action in the reader's words: the code's translation when the catalogs have one."""
        key = f"error:{exc.code}"
        text = self._(key)
        return text if text != key else self._("Not done: %(reason)s") % {"reason": exc.message}

    async def act(self, back: str, notice: str, fn: Callable[..., Any], *args: Any) -> Redirect:
        """Run a service write in a worker thread and go back to `back` with `notice`, or with the
        refusal in the reader's words. A refusal for role or scope (403: a forged form) is not a
        notice but the 403 page, raised on."""
        try:
            await anyio.to_thread.run_sync(fn, *args)
        except HqError as exc:
            if exc.status == 403:
                raise
            return self.redirect(back, error=self.problem(exc))
        return self.redirect(back, notice=notice)

    async def form_lists(self) -> dict[str, list[str]]:
        return await read_form_lists(self.request, self.csrf)

    async def form(self) -> dict[str, str]:
        """The posted form's fields (the last value of a repeated name), after the CSRF check."""
        return {key: values[-1] for key, values in (await self.form_lists()).items() if values}
