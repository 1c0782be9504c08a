"""Readable byte strings for profiles and docs: `<STX>001.234<CR>`, `<x1B>`, or `hex: 1b 40`.

Protocol manuals write frames with control-character mnemonics; test vectors in
`firmware_profiles/*.toml` do the same so a reader can check them against the manual.
"""

from __future__ import annotations

import re

MNEMONICS: dict[str, int] = {
    "NUL": 0x00, "SOH": 0x01, "STX": 0x02, "ETX": 0x03, "EOT": 0x04, "ENQ": 0x05, "ACK": 0x06, "BEL": 0x07,
    "BS": 0x08, "HT": 0x09, "LF": 0x0A, "VT": 0x0B, "FF": 0x0C, "CR": 0x0D, "SO": 0x0E, "SI": 0x0F,
    "DLE": 0x10, "DC1": 0x11, "DC2": 0x12, "DC3": 0x13, "DC4": 0x14, "NAK": 0x15, "SYN": 0x16, "ETB": 0x17,
    "CAN": 0x18, "EM": 0x19, "SUB": 0x1A, "ESC": 0x1B, "FS": 0x1C, "GS": 0x1D, "RS": 0x1E, "US": 0x1F,
    "SP": 0x20, "LT": 0x3C, "DEL": 0x7F,
}
_NAMES = {value: name for name, value in MNEMONICS.items() if name not in ("SP",)}
_TOKEN = re.compile(r"<(x[0-9A-Fa-f]{2}|[A-Za-z][A-Za-z0-9]{1,2})>")


class ByteSpecError(ValueError):
    pass


def parse(spec: str) -> bytes:
    """`<STX>001.234<CR>` -> b'\\x02001.234\\r'. A literal `<` is written `<LT>`."""
    stripped = spec.strip()
    if stripped.lower().startswith("hex:"):
        try:
            return bytes.fromhex("".join(stripped[4:].split()))
        except ValueError as exc:
            raise ByteSpecError(f"bad hex byte string: {exc}") from None
    out = bytearray()
    pos = 0
    for match in _TOKEN.finditer(spec):
        out += _literal(spec[pos:match.start()])
        token = match.group(1)
        if token[0] == "x" and len(token) == 3 and token.upper() not in MNEMONICS:
            out.append(int(token[1:], 16))
        elif token.upper() in MNEMONICS:
            out.append(MNEMONICS[token.upper()])
        else:
            raise ByteSpecError(f"unknown mnemonic <{token}>")
        pos = match.end()
    out += _literal(spec[pos:])
    return bytes(out)


def _literal(text: str) -> bytes:
    if "<" in text:
        raise ByteSpecError(f"stray '<' in {text!r}: write <LT> for a literal '<'")
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ByteSpecError(f"non-ASCII text {text!r}: write bytes as <xHH>") from None


def format_bytes(data: bytes) -> str:
    """The inverse of `parse` (printable ASCII stays literal, the rest becomes mnemonics)."""
    out: list[str] = []
    for byte in data:
        if byte == 0x3C:
            out.append("<LT>")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        elif byte in _NAMES:
            out.append(f"<{_NAMES[byte]}>")
        else:
            out.append(f"<x{byte:02X}>")
    return "".join(out)
