"""One page view: the reader's language, formats and session, and the responses a page gives
(a rendered template, a redirect with a notice, a form read after its CSRF check)."""

from __future__ import annotations

import secrets
import shutil
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Redirect

from edge.auth.roles import allowed
from edge.auth.tokens import Claims
from edge.errors import ApiError
from edge.hub import Hub
from edge.ui import charts
from edge.ui.i18n import LANGUAGE_NAMES, Formats, language_of, translations
from edge.ui.nav import ROLE_NAMES, pages_for
from edge.ui.pagekit import MAX_OFFSET, FormError, page_offset, read_form_lists
from edge.ui.session import FLASH_COOKIE, LANG_COOKIE, SESSION_COOKIE, Flash, csrf_token, decode_flash, encode_flash

if TYPE_CHECKING:
    import jinja2
    import markupsafe
else:  # imported by the first page rendered, not at the hub's start (docs/performance.md, cold start)
    from edge.lazy_import import LazyModule

    jinja2 = LazyModule("jinja2")
    markupsafe = LazyModule("markupsafe")

TEMPLATES = Path(__file__).with_name("templates")
NONCE_MAX_AGE_S = 1800  # how long a login or setup page may stay open before its form expires
# page modules take the shared readers from here with the view
__all__ = ["MAX_OFFSET", "FormError", "UiView", "environment", "page_offset", "safe_next"]


@cache
def environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["charts"] = charts
    return env


def safe_next(path: str | None, default: str = "/ui/") -> str:
    """Only our own pages: never redirect a login to another site."""
    if path and path.startswith("/ui") and not path.startswith("//") and "\\" not in path:
        return path
    return default


class UiView:
    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request
        self.hub: Hub = request.app.state.hub
        self.lang = language_of(request.cookies.get(LANG_COOKIE))
        self.html_lang = "zh-CN" if self.lang == "zh_CN" else "en"
        self._ = translations(self.lang).gettext
        self.ngettext = translations(self.lang).ngettext
        self.fmt = Formats(self.lang, self.hub.clock.tz)
        user = request.scope.get("user")
        self.claims: Claims | None = user if isinstance(user, Claims) else None
        self.flash: Flash | None = decode_flash(request.cookies.get(FLASH_COOKIE))
        self.path = request.url.path
        self.store_name = self.hub.config.store_name or self.hub.store_id

    # -- who -----------------------------------------------------------------------------------------
    def signed_in(self) -> bool:
        """The login this view was opened with still holds (long-lived streams ask again and again)."""
        claims = self.claims
        return claims is not None and claims.expires_at > time.time() and not self.hub.token_revoked(claims)

    def may(self, permission: str) -> bool:
        return self.claims is not None and allowed(self.claims.role, permission)

    @property
    def low_space_mb(self) -> int | None:
        """Free MB on the data file system when below the warning level (`disk_low_mb`), else None."""
        try:
            free = shutil.disk_usage(self.hub.config.data_dir).free // (1024 * 1024)
        except OSError:
            return None
        return free if free < self.hub.config.disk_low_mb else None

    @property
    def role_name(self) -> str:
        return self._(ROLE_NAMES.get(self.claims.role, self.claims.role)) if self.claims else ""

    @property
    def nav(self) -> list[dict[str, Any]]:
        if self.claims is None:
            return []
        return [{"key": item.key, "path": item.path, "label": self._(item.label),
                 "current": self.path == item.path or self.path.startswith(item.path + "/")}
                for item in pages_for(self.claims.role)]

    @property
    def languages(self) -> list[tuple[str, str, bool]]:
        here = quote(self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else ""))
        return [(f"/ui/lang/{code}?next={here}", name, code == self.lang) for code, name in LANGUAGE_NAMES.items()]

    @property
    def csrf(self) -> str:
        token = self.request.cookies.get(SESSION_COOKIE, "")
        return csrf_token(self.hub.key, token) if token else ""

    @property
    def csrf_input(self) -> markupsafe.Markup:
        return markupsafe.Markup('<input type="hidden" name="csrf" value="{}">').format(self.csrf)

    # -- responses -------------------------------------------------------------------------------------
    def fragment(self, template: str, **context: Any) -> str:
        return environment(self.lang).get_template(template).render(ui=self, **context)

    def render(self, template: str, status: int = 200, **context: Any) -> Response[str]:
        response: Response[str] = Response(self.fragment(template, **context), status_code=status,
                                           media_type=MediaType.HTML, headers={"Cache-Control": "no-store"})
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/ui")
        return response

    def redirect(self, path: str, *, notice: str | None = None, error: str | None = None) -> Redirect:
        cookies: list[Cookie] = []
        if notice is not None or error is not None:
            flash = Flash("error", error) if error is not None else Flash("notice", notice or "")
            cookies.append(Cookie(key=FLASH_COOKIE, value=encode_flash(flash), path="/ui", httponly=True,
                                  samesite="strict", max_age=60))
        return Redirect(path=safe_next(path), status_code=303, cookies=cookies)

    def problem(self, exc: ApiError) -> str:
        """A refused action in the reader's words: the code's translation when the catalog has one."""
        key = f"error:{exc.code}"
        text = self._(key)
        return text if text != key else self._("Not done: %(reason)s") % {"reason": exc.message}

    async def form_lists(self) -> dict[str, list[str]]:
        """Every text value of every field (tables of inputs sharing a name), after the CSRF check."""
        return await read_form_lists(self.request, self.csrf)

    # -- forms before a session (login, first setup): a one-time nonce cookie instead of the CSRF token --

    def render_public_form(self, template: str, nonce_cookie: str, status: int = 200, **context: Any) -> Response[str]:
        """Render a sessionless form with a fresh nonce (in the page and in a cookie for the form's own path)."""
        nonce = secrets.token_urlsafe(16)
        response = self.render(template, status=status, nonce=nonce, **context)
        response.set_cookie(nonce_cookie, nonce, path=self.request.url.path, httponly=True, samesite="strict",
                            max_age=NONCE_MAX_AGE_S)
        return response

    async def public_form(self, nonce_cookie: str) -> tuple[dict[str, str], bool]:
        """A sessionless form's text fields, and whether it carries the nonce its page was given."""
        form = await self.request.form()
        fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
        nonce = self.request.cookies.get(nonce_cookie)
        return fields, bool(nonce) and fields.get("nonce") == nonce

    def logged_in(self, path: str, token: str, nonce_cookie: str) -> Redirect:
        """On to `path` with the new login's session cookie; the form's nonce is spent."""
        response = Redirect(path=path, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="strict",
                            max_age=self.hub.config.token_ttl_s)
        response.delete_cookie(nonce_cookie, path=self.request.url.path)
        return response

    async def form(self) -> dict[str, str]:
        """The posted form's fields (the last value of a repeated name), after the CSRF check."""
        return {key: values[-1] for key, values in (await self.form_lists()).items() if values}
