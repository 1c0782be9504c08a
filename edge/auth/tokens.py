"""Bearer tokens: an HMAC-SHA256 signed msgpack claim set (user, role, till, expiry).

Stateless, so checking one costs no database read on the checkout path. The key lives in the data
directory (`secret.key`, mode 0600) and never leaves the box; rotating it logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from pathlib import Path

import msgspec


class Claims(msgspec.Struct, frozen=True, array_like=True):
    user_id: str
    username: str
    role: str
    till_id: str | None
    expires_at: int  # unix seconds


_decoder = msgspec.msgpack.Decoder(Claims)


def load_key(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    return path.read_bytes()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, claims: Claims) -> str:
    body = msgspec.msgpack.encode(claims)
    sig = hmac.new(key, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(sig)}"


class TokenError(Exception):
    pass


# Tokens whose signature was checked, with their claims: a till sends the same token with every request,
# and the HMAC, two base64 decodes and the msgpack decode cost more than a dict lookup (docs/performance.md,
# "Third round"). Only good signatures are remembered, keyed by the key too (a rotated key checks afresh);
# the expiry is checked at every use and revocation is the caller's, as before. Emptied when full.
_VERIFIED_MAX = 4096
_verified: dict[tuple[bytes, str], Claims] = {}


def verify(key: bytes, token: str, now: float | None = None) -> Claims:
    claims = _verified.get((key, token))
    if claims is None:
        claims = _verify_signature(key, token)
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[key, token] = claims
    if claims.expires_at <= (time.time() if now is None else now):
        raise TokenError("token expired")
    return claims


def _verify_signature(key: bytes, token: str) -> Claims:
    try:
        body_b64, sig_b64 = token.split(".")
        body, sig = _unb64(body_b64), _unb64(sig_b64)
    except (ValueError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), sig):
        raise TokenError("bad token signature")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise TokenError("malformed token") from exc
