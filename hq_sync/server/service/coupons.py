"""Chain coupons at HQ (docs/sync.md "Coupons across stores"): issued here, counted here.

`hq_coupons` holds each coupon and, in `store_id`, the store whose escrow holds all its uses (a
store-specific coupon, or a member's coupon held by the member's home store); `hq_coupon_uses` one row
per (code, sale_id): `reserved` (a store's online reservation, before its sale arrives), `redeemed`
(the sale arrived) or `released` (the reservation lapsed). Uses in force = reserved + redeemed.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Annotated, Any

import msgspec

from edge.pricing.price_lists import utc_text
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.members import member_rows
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import CouponPut, CouponReserve, FeedBody, MembersPut


def hold_s() -> int:
    """How long a reservation waits for its sale before the store's outbox may pass it."""
    return int(os.environ.get("BACKROOM_HQ_COUPON_HOLD_S", "120"))


class CouponIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    rule_id: str
    member_id: str | None = None
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] = 1
    min_spend: Annotated[int, msgspec.Meta(ge=0, le=10**12)] = 0
    starts_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    store_id: str | None = None  # the store holding its uses (default: a member coupon's home store)


class CouponView(msgspec.Struct):
    """What the ingest planner needs of one chain coupon (updated in place as sales apply)."""

    max_uses: int
    store_id: str | None
    uses: dict[str, tuple[str, str]]  # sale_id -> (store, status)

    def in_force(self) -> int:
        return sum(1 for _, status in self.uses.values() if status != "released")


def _body(row: tuple[Any, ...]) -> CouponPut:
    return CouponPut(code=row[0], rule_id=row[1], member_id=row[2], max_uses=int(row[3]), min_spend=int(row[4]),
                     starts_at=row[5], expires_at=row[6], store=row[7])


_COLUMNS = "code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at, store_id"


def create(db: HqDb, principal: Principal, private_key: bytes, c: CouponIn, at: str) -> dict[str, Any]:
    require(principal, "coupons.write")
    if c.max_uses < 1 or c.min_spend < 0 or not c.code or len(c.code) > 64:
        raise HqError(422, "invalid_field", "a coupon needs a code (≤ 64), max_uses ≥ 1 and min_spend ≥ 0")
    with db.write() as tx:
        if tx.one("SELECT 1 FROM hq_promotions WHERE rule_id = ?", (c.rule_id,)) is None:
            raise HqError(422, "unknown_rule", f"no promotion {c.rule_id[:64]}")
        store = c.store_id
        if c.member_id is not None:
            row = tx.one("SELECT home_store FROM hq_members WHERE member_id = ?", (c.member_id,))
            if row is None:
                raise HqError(422, "unknown_member", f"no member {c.member_id[:64]}")
            store = store or row[0]
            append_feed(tx, private_key, "*", MembersPut(members=member_rows(tx, c.member_id)), at)
        if store is not None and tx.one("SELECT 1 FROM hq_stores WHERE store_id = ?", (store,)) is None:
            raise HqError(422, "unknown_store", f"no store {store[:64]}")
        if tx.one("SELECT 1 FROM hq_coupons WHERE code = ?", (c.code,)) is not None:
            raise HqError(409, "coupon_exists", f"coupon {c.code} already exists")
        values = (c.code, c.rule_id, c.member_id, c.max_uses, c.min_spend,
                  utc_text(c.starts_at) if c.starts_at else None, utc_text(c.expires_at) if c.expires_at else None,
                  store)
        tx.run(f"INSERT INTO hq_coupons ({_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, at))
        body: FeedBody = _body(values)
        seq = append_feed(tx, private_key, "*", body, at)
        audit(tx, principal, "coupon.create", f"coupon:{c.code}", None, msgspec.to_builtins(body), at=at)
    return {**msgspec.to_builtins(body), "feed_seq": seq}


def snapshot(tx: Tx, private_key: bytes, store_id: str, at: str) -> None:
    """Every chain coupon, for a newly paired store's opening feed."""
    for row in tx.all(f"SELECT {_COLUMNS} FROM hq_coupons ORDER BY code"):
        append_feed(tx, private_key, store_id, _body(row), at)


def release_stale(tx: Tx, store_id: str | None, now_ts: int) -> int:
    """Reservations older than the hold whose store has since acked everything up to the head it had
    when it reserved: their sale never committed (a sale commits right after its reservation, so it
    would be in that stream by now). A sale arriving later anyway is honoured only if uses remain."""
    sql = """UPDATE hq_coupon_uses SET status = 'released'
             WHERE status = 'reserved' AND reserved_ts < ? AND store_id IN (
                 SELECT s.store_id FROM hq_stores s WHERE s.acked_seq >= s.head_seq
                 AND s.acked_seq >= hq_coupon_uses.reserved_head)"""
    args: list[Any] = [now_ts - hold_s()]
    if store_id is not None:
        sql += " AND store_id = ?"
        args.append(store_id)
    return tx.run(sql, args)


def reserve(db: HqDb, store_id: str, req: CouponReserve, at: str) -> dict[str, Any]:
    """One use of a chain coupon for this store's sale, atomically; idempotent by (code, sale_id)."""
    now_ts = int(time.time())
    with db.write() as tx:
        tx.lock("hq_coupons", "code", [req.code])
        row = tx.one("SELECT max_uses, store_id FROM hq_coupons WHERE code = ?", (req.code,))
        if row is None:
            raise HqError(404, "unknown_coupon", f"HQ has no coupon {req.code[:64]}")
        max_uses, holder = int(row[0]), row[1]
        prior = tx.one("SELECT store_id, status FROM hq_coupon_uses WHERE code = ? AND sale_id = ?",
                       (req.code, req.sale_id))
        if prior is not None and prior[1] != "released":
            if prior[0] != store_id:
                raise HqError(409, "coupon_used", f"coupon {req.code[:64]} was redeemed at another store")
            return {"code": req.code, "sale_id": req.sale_id, "status": prior[1]}
        if holder is not None and holder != store_id:
            raise HqError(409, "coupon_used", f"coupon {req.code[:64]} is held by store {holder}")
        release_stale(tx, None, now_ts)
        used = tx.one("SELECT count(*) FROM hq_coupon_uses WHERE code = ? AND status <> 'released'", (req.code,))
        if used is not None and int(used[0]) >= max_uses:
            raise HqError(409, "coupon_used", f"coupon {req.code[:64]} was already redeemed", uses=int(used[0]))
        head = tx.one("SELECT head_seq FROM hq_stores WHERE store_id = ?", (store_id,))
        tx.run("""INSERT INTO hq_coupon_uses (code, sale_id, store_id, status, reserved_ts, reserved_head, at)
                  VALUES (?, ?, ?, 'reserved', ?, ?, ?)
                  ON CONFLICT (code, sale_id) DO UPDATE SET store_id = excluded.store_id, status = 'reserved',
                  reserved_ts = excluded.reserved_ts, reserved_head = excluded.reserved_head, at = excluded.at""",
               (req.code, req.sale_id, store_id, now_ts, int(head[0]) if head else 0, at))
    return {"code": req.code, "sale_id": req.sale_id, "status": "reserved"}


def view(db: HqDb, principal: Principal, code: str) -> dict[str, Any]:
    require(principal, "coupons.read")
    with db.read() as tx:
        row = tx.one(f"SELECT {_COLUMNS} FROM hq_coupons WHERE code = ?", (code,))
        if row is None:
            raise HqError(404, "unknown_coupon", f"no coupon {code[:64]}")
        uses = tx.all("SELECT sale_id, store_id, status, at FROM hq_coupon_uses WHERE code = ? ORDER BY at, sale_id",
                      (code,))
    in_force = [u for u in uses if u[2] != "released"]
    return {**msgspec.to_builtins(_body(row)), "uses": len(in_force),
            "redeemed": sum(1 for u in uses if u[2] == "redeemed"),
            "history": [{"sale_id": u[0], "store_id": u[1], "status": u[2], "at": u[3]} for u in uses]}


# -- ingest: sales that redeemed chain coupons ------------------------------------------------------------

def views(tx: Tx, codes: list[str]) -> dict[str, CouponView]:
    out: dict[str, CouponView] = {}
    for i in range(0, len(codes), 500):
        chunk = codes[i:i + 500]
        marks = ",".join("?" * len(chunk))
        tx.lock("hq_coupons", "code", chunk)
        for code, max_uses, holder in tx.all(
                f"SELECT code, max_uses, store_id FROM hq_coupons WHERE code IN ({marks})", chunk):
            out[code] = CouponView(int(max_uses), holder, {})
        for code, sale_id, store, status in tx.all(
                f"SELECT code, sale_id, store_id, status FROM hq_coupon_uses WHERE code IN ({marks})", chunk):
            out[code].uses[sale_id] = (store, status)
    return out


def plan_uses(store_id: str, sale_id: str, codes: list[str], coupons: dict[str, CouponView]) -> list[str]:
    """The chain coupons this sale redeems, or a reason (ValueError) it cannot be honoured. Pure."""
    out: list[str] = []
    for code in codes:
        c = coupons.get(code)
        if c is None:
            continue  # a store's own coupon: counted at the store
        use = c.uses.get(sale_id)
        if use is not None and use[1] != "released":
            if use[0] != store_id or use[1] != "reserved":
                raise ValueError(f"coupon {code}: sale {sale_id} already counted ({use[1]} at {use[0]})")
        elif c.store_id is not None and c.store_id != store_id:
            raise ValueError(f"coupon {code}: redeemed without HQ's reservation; its uses are held by {c.store_id}")
        elif c.in_force() >= c.max_uses:
            raise ValueError(f"coupon {code}: redeemed without HQ's reservation and all {c.max_uses} uses are gone")
        out.append(code)
    return out


def mark(store_id: str, sale_id: str, codes: list[str], coupons: dict[str, CouponView]) -> None:
    for code in codes:
        coupons[code].uses[sale_id] = (store_id, "redeemed")


def write_uses(tx: Tx, rows: list[tuple[str, str, str, str]]) -> None:
    """(code, sale_id, store_id, at) redeemed: a reservation becomes its redemption."""
    tx.many("""INSERT INTO hq_coupon_uses (code, sale_id, store_id, status, reserved_ts, reserved_head, at)
               VALUES (?, ?, ?, 'redeemed', 0, 0, ?)
               ON CONFLICT (code, sale_id) DO UPDATE SET status = 'redeemed', store_id = excluded.store_id""", rows)
