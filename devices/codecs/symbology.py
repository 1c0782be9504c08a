"""Barcode symbology names, from an AIM identifier (ISO/IEC 15424) or guessed from the code itself."""

from __future__ import annotations

from edge.catalog.barcodes import gs1_valid

_AIM: dict[str, str] = {
    "A": "code39", "C": "code128", "d": "datamatrix", "e": "gs1-databar", "E": "ean-upc", "F": "codabar",
    "G": "code93", "I": "itf", "L": "pdf417", "Q": "qr", "X": "unknown",
}


def from_aim(identifier: str, code: str) -> str:
    """`]E0` + 13 digits -> ean13; `]C1` -> gs1-128; `]d2` -> gs1-datamatrix."""
    family = _AIM.get(identifier[:1], "unknown")
    modifier = identifier[1:2]
    if family == "ean-upc":
        if modifier == "4":
            return "ean8"
        return guess(code) if guess(code) != "unknown" else "ean13"
    if family == "code128" and modifier == "1":
        return "gs1-128"
    if family == "datamatrix" and modifier == "2":
        return "gs1-datamatrix"
    if family == "qr" and modifier in ("3", "4", "5", "6"):
        return "qr"
    return family


def guess(code: str) -> str:
    """What a plain code looks like: EAN-13/EAN-8/UPC-A when its digits and check digit say so."""
    if code.isascii() and code.isdigit() and gs1_valid(code):
        return {13: "ean13", 8: "ean8", 12: "upca"}.get(len(code), "unknown")
    return "unknown"
