"""Members' personal data at rest: sealed with AES-GCM, found through keyed hashes.

A member's phone, name, birthday and card number are one sealed blob (`members.pii`): AES-256-GCM
with the installation's data key, a random 96-bit nonce and the member id as associated data (a blob
copied onto another member does not open). Lookup by phone or card goes through HMAC-SHA256 of the
normalised value under the chain's lookup key (`phone_hash`, `card_hash`, unique), so every hub and
HQ compute the same hash; the last four digits of the phone stay in clear (`phone_last4`) for the
tablet's search: four digits alone identify nobody.

The keys live in `pii.key` beside the database (mode 0600), never in it: a copy of the database
without the key file is unreadable. A standalone hub makes its own lookup key; pairing takes HQ's
(`PairResult.lookup_key`) and re-hashes the member cache (`rehash`).

Every module that reads or writes a member's phone, name, birthday or card goes through this one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from edge.storage.durable import write_atomic

if TYPE_CHECKING:
    from cryptography import exceptions as crypto_errors
    from cryptography.hazmat.primitives.ciphers import aead
else:  # imported when the first key is opened, not at the hub's start (docs/performance.md, cold start)
    from edge.lazy_import import LazyModule

    crypto_errors = LazyModule("cryptography.exceptions")
    aead = LazyModule("cryptography.hazmat.primitives.ciphers.aead")

KEY_FILE = "pii.key"
_VERSION = b"\x01"
_NONCE = 12


class WrongKeyFile(RuntimeError):
    """The key file beside the database is not the one its members were sealed with."""


class Personal(msgspec.Struct, frozen=True, omit_defaults=True):
    """The personal part of a member: what is sealed, exported, and erased."""

    phone: str | None = None
    name: str = ""
    birthday: str | None = None
    card_no: str | None = None


class _KeyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data_key: str  # urlsafe base64 of 32 bytes
    lookup_key: str
    lookup_from: str = "local"  # "local" (made here) or "hq" (given at pairing)


_personal_encoder = msgspec.msgpack.Encoder()
_personal_decoder = msgspec.msgpack.Decoder(Personal)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text)


def normalise_phone(text: str) -> str:
    """Digits only, without a +86 / 0086 country prefix: 138 0013 8000, +86-13800138000 → 13800138000."""
    digits = re.sub(r"[^0-9]", "", text)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("0086"):
        digits = digits[4:]
    return digits


def normalise_card(text: str) -> str:
    return re.sub(r"[\s\-]", "", text)


def last4(phone: str | None) -> str | None:
    return normalise_phone(phone)[-4:] if phone else None


class Keys:
    """The data key (sealing) and the lookup key (hashing) of one installation."""

    def __init__(self, data_key: bytes, lookup_key: bytes, lookup_from: str = "local") -> None:
        if len(data_key) != 32 or len(lookup_key) != 32:
            raise ValueError("keys are 32 bytes")
        self._aead = aead.AESGCM(data_key)
        self.data_key = data_key
        self.lookup_key = lookup_key
        self.lookup_from = lookup_from

    @classmethod
    def generate(cls) -> Keys:
        return cls(os.urandom(32), os.urandom(32))

    # -- sealing ---------------------------------------------------------------------------------------
    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Raises cryptography's InvalidTag when the blob was not sealed by this key for this `aad`."""
        if blob[:1] != _VERSION:
            raise ValueError("unknown sealed-blob version")
        return self._aead.decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], aad)

    def seal_personal(self, member_id: str, personal: Personal) -> bytes:
        return self.seal(_personal_encoder.encode(personal), b"member:" + member_id.encode())

    def open_personal(self, member_id: str, blob: bytes | None) -> Personal:
        """The member's personal data; an erased member (no blob) has none."""
        if not blob:
            return Personal()
        return _personal_decoder.decode(self.open(bytes(blob), b"member:" + member_id.encode()))

    # -- lookup hashes ---------------------------------------------------------------------------------
    def _hash(self, kind: bytes, value: str) -> str:
        return hmac.new(self.lookup_key, kind + b"\x00" + value.encode(), hashlib.sha256).hexdigest()

    def phone_hash(self, phone: str | None) -> str | None:
        digits = normalise_phone(phone) if phone else ""
        return self._hash(b"phone", digits) if digits else None

    def card_hash(self, card: str | None) -> str | None:
        card = normalise_card(card) if card else ""
        return self._hash(b"card", card) if card else None

    def fingerprint(self) -> str:
        """Names the lookup key (settings `pii_lookup_fp`) without revealing it."""
        return self._hash(b"fingerprint", "")[:16]

    def columns(self, member_id: str, personal: Personal) -> tuple[str | None, str | None, str | None, bytes]:
        """(phone_hash, card_hash, phone_last4, pii) of a members row."""
        return (self.phone_hash(personal.phone), self.card_hash(personal.card_no), last4(personal.phone),
                self.seal_personal(member_id, personal))


# -- the key file --------------------------------------------------------------------------------------------

_cache: dict[str, Keys] = {}
_cache_lock = threading.Lock()


def _write(path: Path, keys: Keys) -> None:
    write_atomic(path, msgspec.json.encode(_KeyFile(_b64(keys.data_key), _b64(keys.lookup_key), keys.lookup_from)))


def load(path: Path, *, create: bool = True) -> Keys:
    """The keys in the file `path`; made (mode 0600) when it does not exist and `create`."""
    key = str(path.resolve())
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"no key file {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, Keys.generate())
        kf = msgspec.json.decode(path.read_bytes(), type=_KeyFile)
        keys = Keys(_unb64(kf.data_key), _unb64(kf.lookup_key), kf.lookup_from)
        _cache[key] = keys
        return keys


def set_lookup_key(path: Path, lookup_key: bytes, source: str = "hq") -> Keys:
    """Replace the lookup key (keeping the data key); the caller re-hashes what it stores."""
    current = load(path)
    keys = Keys(current.data_key, lookup_key, source)
    with _cache_lock:
        _write(path, keys)
        _cache[str(path.resolve())] = keys
    return keys


def forget_cached() -> None:
    """Drop the cached keys (a restore may have brought another key file)."""
    with _cache_lock:
        _cache.clear()


def key_path(db_path: Path) -> Path:
    return db_path.parent / KEY_FILE


def db_path_of(conn: sqlite3.Connection) -> Path | None:
    """The file of the connection's main database; None for an in-memory one."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file) if file else None
    raise RuntimeError("no main database")


def keys(conn: sqlite3.Connection) -> Keys:
    """The keys of the hub database `conn` is open on (the key file beside it; made on first use). An
    in-memory database (tests, scratch work) dies with the process and uses keys that do too."""
    path = db_path_of(conn)
    if path is None:
        with _cache_lock:
            return _cache.setdefault(":memory:", Keys.generate())
    return load(key_path(path))


# -- the hub's members table -----------------------------------------------------------------------------------

def personal_of(conn: sqlite3.Connection, member_id: str) -> Personal | None:
    """A member's personal data (None: no such member). Callers that show it unmasked audit it
    (edge/members/privacy.py)."""
    row = conn.execute("SELECT pii FROM members WHERE member_id = ?", (member_id,)).fetchone()
    if row is None:
        return None
    return keys(conn).open_personal(member_id, row[0])


def write_personal(conn: sqlite3.Connection, member_id: str, personal: Personal) -> None:
    """Store a member's personal data (the row exists)."""
    phone_hash, card_hash, tail, blob = keys(conn).columns(member_id, personal)
    conn.execute("UPDATE members SET phone_hash = ?, card_hash = ?, phone_last4 = ?, pii = ? WHERE member_id = ?",
                 (phone_hash, card_hash, tail, blob, member_id))


def insert_member(conn: sqlite3.Connection, member_id: str, personal: Personal, *, tier: str, tags: str,
                  home_store: str | None, created_at: str) -> None:
    """A new members row, its personal data sealed (`tags`: the JSON list)."""
    phone_hash, card_hash, tail, blob = keys(conn).columns(member_id, personal)
    conn.execute(
        """INSERT INTO members (member_id, phone_hash, card_hash, phone_last4, pii, tier, tags, home_store, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (member_id, phone_hash, card_hash, tail, blob, tier, tags, home_store, created_at))


def member_by_phone(conn: sqlite3.Connection, phone: str) -> str | None:
    row = conn.execute("SELECT member_id FROM members WHERE phone_hash = ?",
                       (keys(conn).phone_hash(phone),)).fetchone()
    return str(row[0]) if row else None


def member_by_card(conn: sqlite3.Connection, card: str) -> str | None:
    row = conn.execute("SELECT member_id FROM members WHERE card_hash = ?",
                       (keys(conn).card_hash(card),)).fetchone()
    return str(row[0]) if row else None


def rehash(conn: sqlite3.Connection, k: Keys) -> int:
    """Recompute every member's lookup hashes under `k` (after the lookup key changed); returns how many."""
    rows = conn.execute("SELECT member_id, pii FROM members WHERE pii IS NOT NULL").fetchall()
    conn.execute("UPDATE members SET phone_hash = NULL, card_hash = NULL")  # unique: clear before refilling
    for member_id, blob in rows:
        try:
            personal = k.open_personal(member_id, blob)
        except crypto_errors.InvalidTag:
            raise WrongKeyFile(f"{KEY_FILE} does not open member {member_id}: the database was sealed with "
                               "another key file (restored or copied without its own? docs/privacy.md)") from None
        conn.execute("UPDATE members SET phone_hash = ?, card_hash = ? WHERE member_id = ?",
                     (k.phone_hash(personal.phone), k.card_hash(personal.card_no), member_id))
    conn.execute("INSERT INTO settings (key, value) VALUES ('pii_lookup_fp', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (k.fingerprint(),))
    return len(rows)


def ensure_hashed(conn: sqlite3.Connection) -> int:
    """Re-hash when the stored hashes were made under another lookup key (a pairing whose commit did
    not land, a restored key file). Run at start-up, in the writer."""
    k = keys(conn)
    row = conn.execute("SELECT value FROM settings WHERE key = 'pii_lookup_fp'").fetchone()
    if row is not None and row[0] == k.fingerprint():
        return 0
    return rehash(conn, k)


# -- logs ----------------------------------------------------------------------------------------------------------

_QUERY_PII = re.compile(r"(?i)([?&](?:phone|card|q)=)[^&\s]*")


def redact_url(text: str) -> str:
    """A request line without the phone, card or search text of its query string."""
    return _QUERY_PII.sub(r"\1***", text)


class RedactQuery(logging.Filter):
    """On uvicorn's access log: `GET /api/v1/members/lookup?phone=***` (phones are never logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def redact_access_log() -> None:
    """Put the filter on uvicorn's access logger (once; `--access-log` turns that log on)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())


# -- sealed outbox payloads ----------------------------------------------------------------------------------------

SEALED_KINDS = frozenset({"member"})  # outbox kinds whose payload holds a phone, name, birthday or card


def seal_payload(conn: sqlite3.Connection, kind: str, payload: bytes) -> bytes:
    """An outbox payload as stored: sealed when its kind carries personal data."""
    return keys(conn).seal(payload, b"outbox:" + kind.encode()) if kind in SEALED_KINDS else payload


def open_payload(conn: sqlite3.Connection, kind: str, stored: bytes) -> bytes:
    return keys(conn).open(stored, b"outbox:" + kind.encode()) if kind in SEALED_KINDS else stored
