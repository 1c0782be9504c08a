"""Chain coupons at a paired hub (docs/promotions.md §5, docs/sync.md "Coupons across stores").

HQ issues chain coupons and counts their uses; they arrive as `coupon` feed entries and are stored as
ordinary coupons plus a `chain_coupons` row. Before a sale that redeems one commits, the sale route
calls `reserve_coupons`:

- uses HQ allocated to this store (`allocated` > 0: a store-specific coupon, or a member's coupon
  held by the member's home store) are this store's to spend, online or offline; the local
  `coupon_redemptions` count enforces them in the sale's transaction, as for a store's own coupons;
- any other chain coupon needs HQ's reservation for this sale (`POST /hq/v1/sync/coupons/reserve`,
  short timeout, idempotent by code and sale id): HQ refusing is 409 (`coupon_used`, ...), HQ out of
  reach is 503 `coupon_needs_hq`.

A store's own coupons (no `chain_coupons` row) never ask HQ.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from edge.errors import ApiError
from hq_sync.caller import HqCaller
from hq_sync.wire import CouponPut, CouponReserve

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)


def put_coupon(conn: sqlite3.Connection, body: CouponPut, seq: int, store_id: str, now: str) -> str | None:
    """Apply a `coupon` feed entry; returns why it was skipped (the caller alerts), or None."""
    if conn.execute("SELECT 1 FROM promotions WHERE rule_id = ?", (body.rule_id,)).fetchone() is None:
        return f"coupon {body.code}: unknown promotion {body.rule_id}"
    if body.member_id is not None and conn.execute(
            "SELECT 1 FROM members WHERE member_id = ?", (body.member_id,)).fetchone() is None:
        return f"coupon {body.code}: unknown member {body.member_id}"
    conn.execute(
        """INSERT INTO coupons (code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (code) DO UPDATE SET rule_id = excluded.rule_id, member_id = excluded.member_id,
               max_uses = excluded.max_uses, min_spend = excluded.min_spend, starts_at = excluded.starts_at,
               expires_at = excluded.expires_at""",
        (body.code, body.rule_id, body.member_id, body.max_uses, body.min_spend, body.starts_at, body.expires_at,
         now))
    allocated = body.max_uses if body.store == store_id else 0
    conn.execute("""INSERT INTO chain_coupons (code, allocated, feed_seq) VALUES (?, ?, ?)
                    ON CONFLICT (code) DO UPDATE SET allocated = excluded.allocated, feed_seq = excluded.feed_seq""",
                 (body.code, allocated, seq))
    return None


def _needs_hq(code: str, why: str) -> ApiError:
    return ApiError(503, "coupon_needs_hq", f"coupon {code[:64]} is a chain coupon and needs HQ ({why}); "
                    "try again when the store is online, or sell without it", coupon=code[:64])


async def reserve(agent: HqCaller | None, code: str, sale_id: str) -> None:
    """HQ's reservation of one use of `code` for this sale, or an ApiError the till shows."""
    if agent is None:
        raise _needs_hq(code, "this hub is not syncing")
    body = msgspec.json.encode(CouponReserve(code=code, sale_id=sale_id))
    try:
        resp = await agent.call_hq("POST", "/hq/v1/sync/coupons/reserve", body=body)
    except httpx.HTTPError as exc:
        raise _needs_hq(code, f"HQ unreachable: {type(exc).__name__}") from None
    if resp is None:
        raise _needs_hq(code, "this hub is not syncing")
    if resp.status_code == 200:
        return
    try:
        err = resp.json()
    except ValueError:
        err = {}
    if resp.status_code == 409 and isinstance(err, dict) and "code" in err:
        raise ApiError(409, str(err["code"]), str(err.get("message", "")), coupon=code[:64])
    raise _needs_hq(code, f"HQ answered {resp.status_code}")


async def reserve_coupons(app_state: Any, reader: sqlite3.Connection, codes: Sequence[str], sale_id: str) -> None:
    """Called by the sale route before it commits; a no-op for sales without chain coupons."""
    if not codes:
        return
    marks = ",".join("?" * len(codes))
    chain = dict(reader.execute(f"SELECT code, allocated FROM chain_coupons WHERE code IN ({marks})", list(codes)))
    for code in codes:
        if code in chain and chain[code] == 0:
            await reserve(getattr(app_state, "sync", None), code, sale_id)
