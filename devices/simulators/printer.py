"""A simulated ESC/POS receipt printer: renders what it receives to text pages (and PNG), answers status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from devices.codecs import escpos
from devices.codecs.base import Rendered
from devices.simulators.base import DeviceState


class Printer:
    def __init__(self, params: escpos.Params, on_page: Callable[[str], None] | None = None,
                 out_dir: Path | None = None) -> None:
        self.params = params
        self.online = True
        self.on_page = on_page
        self.out_dir = out_dir
        self.pages: list[str] = []
        self.renderer = escpos.Renderer(escpos.code_pages(params.escpos_profile),
                                        chinese_default=False, on_status=self._status)

    def _status(self, n: int) -> bytes:
        return bytes([escpos.STATUS_ONLINE if self.online else escpos.STATUS_OFFLINE])

    def receive(self, data: bytes) -> bytes:
        for page in self.renderer.feed(data):
            self._page(page)
        if self.renderer.only_drawer_kicks_pending():
            kicks = self.renderer.flush()
            if kicks is not None:
                self._page(kicks)
        replies = bytes(self.renderer.replies)
        self.renderer.replies.clear()
        return replies

    def _page(self, page: Rendered) -> None:
        self.pages.append(page.text)
        if self.out_dir is not None:
            from devices.raster import page_image

            self.out_dir.mkdir(parents=True, exist_ok=True)
            stem = self.out_dir / f"page-{len(self.pages):04d}"
            stem.with_suffix(".txt").write_text(page.text + "\n", "utf-8")
            page_image(page.text.splitlines()).save(stem.with_suffix(".png"))
        if self.on_page is not None:
            self.on_page(page.text)

    def emit(self) -> bytes:
        return b""

    def set_state(self, state: DeviceState) -> None:
        self.online = state.online

    def control(self, words: list[str]) -> str:
        match words:
            case ["offline"]:
                self.online = False
                return "offline (cover open)"
            case ["online"]:
                self.online = True
                return "online"
        return "commands: offline | online"

    def rendered(self) -> str | None:
        rest = self.renderer.flush()
        if rest is not None:
            self._page(rest)
        return "\n".join(self.pages)
