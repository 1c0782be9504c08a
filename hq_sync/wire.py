"""What travels between a hub and HQ besides the deltas: batches, acks, feed entries, signatures.

Up (hub → HQ): a `Batch` of outbox rows, msgpack, compressed (zstd, or zlib where zstandard is
missing), sent as one HTTP request signed with the store's Ed25519 key (`sign_request`). The rows'
payloads travel as the outbox stored them (`msgspec.Raw`), so HQ decodes each delta on its own and
one bad delta is quarantined instead of failing the batch.

Down (HQ → hub): `FeedEntry`s, each signed by HQ's key over its sequence number, the store it is
addressed to ("*" for every store) and its body, so an entry cannot be forged, moved to another
store or replayed at another position of the feed.

All structs add fields only with defaults (STYLE.md 3): an older hub reads a newer HQ.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from functools import cache, lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edge.lazy_import import LazyDecoder  # a leaf too: imports nothing of ours

Ledger = Literal["value", "points"]
# Every integer on the wire fits a signed 64-bit integer (CONTRACT.md): more is a 400, not an overflow in
# SQLite or PostgreSQL (BIGINT) when HQ stores it.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
MAX_BODY = 64 * 1024 * 1024  # a decompressed body larger than this is refused (compression bombs)
REQUEST_SKEW_S = 300  # a signed request older or newer than this is refused


# -- keys and signatures ---------------------------------------------------------------------------
# cryptography and zstandard are imported on first use: a hub that is not paired never needs them, and a
# paired one not before its first push (docs/performance.md, cold start).

def new_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as raw bytes (private 32, public 32)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


# Key objects made from raw bytes once, not per signature: HQ signs every feed entry with its one key and checks
# every store request against one of a few thousand keys (making the object cost 30-40 µs each time).
@lru_cache(maxsize=16)
def _private(private_key: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(private_key)


@lru_cache(maxsize=8192)
def _public(public_key: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(public_key)


def sign(private_key: bytes, message: bytes) -> bytes:
    return _private(private_key).sign(message)  # type: ignore[no-any-return]


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        _public(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def request_message(method: str, target: str, at: int, body: bytes) -> bytes:
    """What a store signs for every request to HQ: method, path with query, time, body digest."""
    return b"backroom-req\n%s\n%s\n%d\n%s" % (method.upper().encode(), target.encode(), at,
                                              hashlib.sha256(body).hexdigest().encode())


def sign_request(private_key: bytes, store_id: str, method: str, target: str, at: int,
                 body: bytes) -> dict[str, str]:
    """Headers that authenticate a store's request (HQ checks them with the key from pairing)."""
    return {"X-Backroom-Store": store_id, "X-Backroom-Time": str(at),
            "X-Backroom-Signature": b64(sign(private_key, request_message(method, target, at, body)))}


# -- compression -----------------------------------------------------------------------------------

@cache
def _zstandard() -> Any:
    """zstandard, or None: zstd is smaller and faster; zlib keeps a hub without the wheel working."""
    try:
        import zstandard
    except ImportError:  # pragma: no cover - exercised only where zstandard is missing
        return None
    return zstandard


def compress(data: bytes) -> tuple[bytes, str]:
    """(compressed bytes, Content-Encoding)."""
    if (zstd := _zstandard()) is not None:
        return zstd.ZstdCompressor(level=9).compress(data), "zstd"
    return zlib.compress(data, 9), "deflate"


def decompress(data: bytes, encoding: str | None) -> bytes:
    """Undo `compress`; refuses anything that would grow past MAX_BODY."""
    if encoding in (None, "", "identity"):
        return data
    if encoding == "zstd":
        if (zstd := _zstandard()) is None:
            raise ValueError("zstd body but zstandard is not installed")
        out = zstd.ZstdDecompressor().decompressobj().decompress(data)
        if len(out) > MAX_BODY:
            raise ValueError("body too large")
        return bytes(out)
    if encoding == "deflate":
        d = zlib.decompressobj()
        out = d.decompress(data, MAX_BODY)
        if d.unconsumed_tail:
            raise ValueError("body too large")
        return out
    raise ValueError(f"unknown content encoding {encoding}")


# -- up: batches of outbox rows ----------------------------------------------------------------------

class OutRow(msgspec.Struct, frozen=True, array_like=True):
    """One outbox row as sent: its sequence number, kind, reference, time and the delta's msgpack."""

    seq: Int64
    kind: str
    ref: str
    at: str
    payload: msgspec.Raw


class Batch(msgspec.Struct, frozen=True):
    store_id: str
    head: Int64  # the store's outbox head when the batch was cut: HQ shows lag = head - acked
    rows: list[OutRow]


class Ack(msgspec.Struct, frozen=True):
    """HQ's answer to a batch: the highest contiguous sequence it holds, and what it did."""

    acked: int
    applied: int = 0
    duplicates: int = 0
    quarantined: list[tuple[int, str]] = []


batch_encoder = msgspec.msgpack.Encoder()
batch_decoder = LazyDecoder(lambda: msgspec.msgpack.Decoder(Batch))  # built on first use


# -- down: the feed ----------------------------------------------------------------------------------

class PriceChange(msgspec.Struct, frozen=True, tag="prices"):
    """New catalog prices; `effective_at` (RFC 3339) in the future makes them wait until then."""

    prices: list[tuple[str, int]]
    effective_at: str | None = None


class PriceListPut(msgspec.Struct, frozen=True, tag="price_list"):
    """An HQ price list (docs/promotions.md §1): replaces the list's entries."""

    list_id: str
    effective_from: str
    prices: list[tuple[str, int]]
    name: str = ""
    store_id: str | None = None
    tier: str | None = None
    effective_until: str | None = None
    local_edit: bool = False


class PromotionPut(msgspec.Struct, frozen=True, tag="promotion"):
    """A promotion in the documented rule format (JSON text); `active=False` ends it."""

    rule_id: str
    rule: str
    active: bool = True


class ItemRow(msgspec.Struct, frozen=True, array_like=True):
    sku: str
    name_zh: str
    name_en: str
    category_id: str
    unit: str
    price: int
    tax_rate_bp: int
    plu: str | None
    brand: str
    tags: list[str]
    barcodes: list[tuple[str, str]]  # (code, symbology)
    active: bool = True


class CatalogPut(msgspec.Struct, frozen=True, tag="catalog"):
    """Categories and items, inserted or updated (a store's opening snapshot, or HQ's edits)."""

    categories: list[tuple[str, str | None, str, str]] = []  # (category_id, parent_id, name_zh, name_en)
    items: list[ItemRow] = []


class TierRow(msgspec.Struct, frozen=True, array_like=True):
    """A tier's benefits and its rule (docs/members.md "Tiers"): `threshold` of `metric` (spend, points,
    visits) over the rolling window; higher `rank` is better. An empty `metric` (an older HQ) means a
    points rule at `min_points`."""

    tier: str
    name_zh: str
    name_en: str
    discount_bp: int
    points_multiplier_pct: int
    min_points: int
    rank: int = 0
    metric: str = ""
    threshold: int = 0


class MemberRow(msgspec.Struct, frozen=True, array_like=True):
    member_id: str
    tier: str
    phone: str | None
    card_no: str | None
    name: str
    birthday: str | None
    tags: list[str]
    home_store: str | None
    created_at: str
    auto_tags: list[str] = []  # computed at HQ from purchase history (docs/members.md "Tags")


class MembersPut(msgspec.Struct, frozen=True, tag="members"):
    """Tiers and member profiles. Balances never travel this way: they move only as escrow."""

    tiers: list[TierRow] = []
    members: list[MemberRow] = []


class MemberErased(msgspec.Struct, frozen=True, tag="member_erased"):
    """The member's personal data was erased on request (docs/privacy.md): every store erases its copy."""

    member_id: str


class EscrowGrant(msgspec.Struct, frozen=True, tag="grant"):
    """HQ set aside `amount` of a member's balance (or points) for this store to spend without asking."""

    grant_id: str
    member_id: str
    ledger: Ledger
    amount: int


class EscrowReclaim(msgspec.Struct, frozen=True, tag="reclaim"):
    """HQ asks for up to `amount` of this store's escrow back; the store answers with a release delta."""

    request_id: str
    member_id: str
    ledger: Ledger
    amount: int


class TransferLine(msgspec.Struct, frozen=True, array_like=True):
    sku: str
    requested: int
    shipped: int | None = None
    received: int | None = None


class TransferState(msgspec.Struct, frozen=True, tag="transfer"):
    """A transfer as HQ holds it, sent to the store that must act or see it: to the sender when it is
    requested and when it was received, to the receiver when it was shipped. States only advance."""

    transfer_id: str
    from_store: str
    to_store: str
    state: str  # requested, in_transit, received
    requested_at: str
    lines: list[TransferLine]
    note: str = ""
    shipped_at: str | None = None
    received_at: str | None = None


class CouponPut(msgspec.Struct, frozen=True, tag="coupon"):
    """A chain coupon issued at HQ (docs/promotions.md §5): HQ counts its uses. `store` is the store
    whose escrow holds all its uses (it may redeem offline); every other store needs HQ's reservation."""

    code: str
    rule_id: str
    max_uses: int = 1
    min_spend: int = 0
    member_id: str | None = None
    starts_at: str | None = None
    expires_at: str | None = None
    store: str | None = None


class MemberMerged(msgspec.Struct, frozen=True, tag="member_merged"):
    """HQ merged two member records of one person (a phone or card signed up twice): `loser` lives on as
    an alias of `winner`; a store moves its own holdings of the loser into the winner (docs/sync.md)."""

    loser: str
    winner: str


class MemberBalances(msgspec.Struct, frozen=True, tag="member_balances"):
    """Chain-wide balances of members as HQ holds them at `as_of`. `store`'s own deltas up to `acked` are
    in them (other stores: their deltas HQ had acknowledged then); a store adds its own later deltas."""

    rows: list[tuple[str, int, int]]  # (member_id, balance, points)
    as_of: str
    store: str = ""
    acked: int = 0


class ReferralReward(msgspec.Struct, frozen=True, array_like=True):
    level: int
    beneficiary_id: str
    sale_id: str
    kind: str  # points, coupon
    points: int
    coupon_code: str | None
    status: str  # granted, reversed
    taken_back: int
    shortfall: int
    at: str


class ReferralPut(msgspec.Struct, frozen=True, tag="referral"):
    """A referral as HQ holds it (docs/members.md "Referrals"), to every store for its member history."""

    member_id: str
    referrer_id: str
    code: str
    status: str  # pending, rewarded, reversed, refused
    at: str
    store_id: str | None = None
    sale_id: str | None = None
    reason: str = ""
    rewards: list[ReferralReward] = []


FeedBody = (PriceChange | PriceListPut | PromotionPut | CatalogPut | MembersPut | EscrowGrant | EscrowReclaim
            | TransferState | CouponPut | MemberMerged | MemberBalances | ReferralPut
            | MemberErased)

feed_body_encoder = msgspec.msgpack.Encoder()
feed_body_decoder = LazyDecoder(lambda: msgspec.msgpack.Decoder(FeedBody))


class FeedEntry(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    store: str  # the store it is addressed to, or "*" for all
    at: str
    body: bytes  # msgpack of a FeedBody
    sig: bytes


class FeedPage(msgspec.Struct, frozen=True):
    entries: list[FeedEntry]
    head: int  # HQ's newest feed sequence for this store (the hub shows its own lag)


feed_page_encoder = msgspec.msgpack.Encoder()
feed_page_decoder = LazyDecoder(lambda: msgspec.msgpack.Decoder(FeedPage))


def feed_message(seq: int, store: str, body: bytes) -> bytes:
    return b"backroom-feed\n%d\n%s\n" % (seq, store.encode()) + body


def sign_entry(private_key: bytes, seq: int, store: str, at: str, body: bytes) -> FeedEntry:
    return FeedEntry(seq, store, at, body, sign(private_key, feed_message(seq, store, body)))


def entry_problem(entry: FeedEntry, hq_key: bytes, store_id: str, cursor: int) -> str | None:
    """Why a feed entry must be refused, or None. Pure: the agent raises an alert on any reason."""
    if not verify(hq_key, entry.sig, feed_message(entry.seq, entry.store, entry.body)):
        return "bad_signature"
    if entry.store not in ("*", store_id):
        return "other_store"
    if entry.seq <= cursor:
        return "replayed"
    return None


# -- member spends, pairing, digests -------------------------------------------------------------------

class AuthorizeRequest(msgspec.Struct, frozen=True):
    request_id: str
    member_id: str
    ledger: Ledger
    amount: Int64
    # How long the store will wait for the answer, so HQ's wait for other stores' releases ends first
    # (None: HQ's own bound, `BACKROOM_HQ_ESCROW_AUTHORIZE_WAIT_S`).
    wait_ms: Annotated[int, Meta(ge=0, le=60_000)] | None = None


class MemberFound(msgspec.Struct, frozen=True):
    """HQ's answer to a store's member lookup (`GET /hq/v1/sync/members/lookup`): the profile, the
    chain-wide balance and points at `as_of` (the asking store's deltas through `acked` included), and
    the ids merged into this member (aliases)."""

    member: MemberRow
    balance: int
    points: int
    as_of: str
    acked: int = 0
    aliases: list[str] = []


class CouponReserve(msgspec.Struct, frozen=True):
    """A store asks HQ for one use of a chain coupon for this sale (idempotent by code and sale id)."""

    code: str
    sale_id: str


class PairRequest(msgspec.Struct, frozen=True):
    store_id: str
    public_key: str  # urlsafe base64
    outbox_head: Int64
    code: str | None = None
    demo: bool = False
    holdings: list[tuple[str, Int64, Int64]] = []  # (member_id, balance, points) the store holds locally
    members: list[MemberRow] = []  # profiles of those members, so HQ can adopt ones it does not know


class PairResult(msgspec.Struct, frozen=True):
    store_id: str
    hq_public_key: str
    base_seq: int
    kept: list[str] = []  # members whose local holdings HQ adopted as this store's escrow
    lookup_key: str = ""  # urlsafe base64: the chain's key for phone and card hashes (docs/privacy.md)


class StockReport(msgspec.Struct, frozen=True):
    """A store's on-hand levels as of `at` (the SKUs that moved since its last report; all at first):
    HQ keeps the newest per (store, sku) for the cross-store stock lookup."""

    at: str
    levels: list[tuple[str, Int64]]


class DigestRow(msgspec.Struct, frozen=True, array_like=True):
    """Counts and sums of one day's deltas of one kind, and the sequence range they span."""

    day: str
    kind: str
    count: Int64
    total: Int64
    first_seq: Int64
    last_seq: Int64


class DigestReport(msgspec.Struct, frozen=True):
    rows: list[DigestRow]
    upto: Int64  # the store's acked sequence the rows were computed over


class DigestVerdict(msgspec.Struct, frozen=True):
    mismatched: list[str] = []  # days
    resend: list[tuple[int, int]] = []  # inclusive sequence ranges HQ wants again
