"""Text as a 1-bit image, for printers without a Chinese font (raster printing) and for receipt PNGs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# CJK fonts Debian and Raspberry Pi OS ship (fonts-noto-cjk, fonts-wqy-zenhei, fonts-arphic-uming),
# then a Latin fallback; without any, Pillow's built-in font (no CJK glyphs) is used.
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def font(size: int = 24) -> Font:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default()


def text_image(text: str, width_px: int, size: int = 24) -> Image.Image:
    """One line of text, black on white, `width_px` wide (the printer's dot width)."""
    image = Image.new("1", (width_px, size + 4), 1)
    ImageDraw.Draw(image).text((0, 2), text, font=font(size), fill=0)
    return image


def page_image(lines: list[str], width_px: int = 576, size: int = 20) -> Image.Image:
    """A rendered page (the simulator's PNG of a receipt)."""
    height = max(1, len(lines)) * (size + 4) + 8
    image = Image.new("1", (width_px, height), 1)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((4, 4 + row * (size + 4)), line, font=font(size), fill=0)
    return image
