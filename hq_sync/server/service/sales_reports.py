"""Chain sales reports for the console and the admin API: by store, region, category, day and hour over a
range of store days, scoped to the caller's stores, with a CSV form; and the reconciliation of HQ's figures
with each store's Z report for its closed days.

Days are store-local (`hq_sales.day` is the date of the sale's own RFC 3339 time, which carries the store's
offset), as a Z report's day is. The figures come from the rollups ingest keeps in each batch's transaction
(`hq_store_hours`, `hq_sku_days`), so a report costs the days and stores it covers, not the chain's history.
The reconciliation compares, per store and closed day, HQ's count and sum of sales and its sum of refunds
with the Z report's `tickets`, `net` and `refunded`: equal when HQ holds everything the store sold that day
and nothing was sold after the Z (a sale recorded after its day's Z is in no Z report, and shows as a
difference).
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.prices import CHAIN_TZ
from hq_sync.server.service.targets import Scope, scope_of
from hq_sync.server.storage.db import HqDb

DIMENSIONS = ("store", "region", "category", "day", "hour")
MAX_DAYS = 400

COLUMNS = {
    "store": ["store_id", "name", "region", "tickets", "gross", "discount", "net", "avg_basket", "refunded"],
    "region": ["region", "stores", "tickets", "gross", "discount", "net", "avg_basket", "refunded"],
    "category": ["category", "name_zh", "name_en", "lines", "qty", "discount", "net"],
    "day": ["day", "tickets", "gross", "discount", "net", "avg_basket", "refunded"],
    "hour": ["hour", "tickets", "gross", "discount", "net", "avg_basket"],
}


def day_range(day_from: str, day_to: str) -> tuple[str, str]:
    """A checked range of store days (YYYY-MM-DD, both inclusive); empty ends are the last 7 days."""
    today = datetime.datetime.now(CHAIN_TZ).date()

    def parse(text: str, default: datetime.date, field: str) -> datetime.date:
        if not text:
            return default
        try:
            if len(text) != 10:
                raise ValueError(text)
            return datetime.date.fromisoformat(text)
        except ValueError:
            raise HqError(400, "bad_day", f"{field} is a day written YYYY-MM-DD") from None

    hi = parse(day_to, today, "to")
    lo = parse(day_from, hi - datetime.timedelta(days=6), "from")
    if lo > hi:
        raise HqError(400, "bad_range", "from is after to")
    if (hi - lo).days >= MAX_DAYS:
        raise HqError(400, "bad_range", f"a report covers at most {MAX_DAYS} days")
    return lo.isoformat(), hi.isoformat()


def _all_stores(db: HqDb, scope: Scope) -> frozenset[str]:
    """The stores to report on, named even for a chain-wide reader: a store list lets every query range over
    the (store_id, day) index instead of scanning the chain's history."""
    if scope is not None:
        return scope
    with db.read() as tx:
        return frozenset(str(r[0]) for r in tx.all("SELECT store_id FROM hq_stores"))


def _stores_filter(scope: Scope, column: str) -> tuple[str, list[Any]]:
    if scope is None:
        return "", []
    if not scope:
        return " AND 1 = 0", []
    ordered = sorted(scope)
    return f" AND {column} IN ({','.join('?' * len(ordered))})", ordered


def _avg(net: int, tickets: int) -> int:
    return net // tickets if tickets else 0


def sales(db: HqDb, principal: Principal, by: str, day_from: str, day_to: str, region: str = "") -> dict[str, Any]:
    """Sales of the caller's stores by one dimension over store days `day_from`..`day_to`."""
    require(principal, "reports.read")
    with db.read() as tx:
        scope = scope_of(tx, principal)
    if by not in DIMENSIONS:
        raise HqError(404, "unknown_report", f"sales by {by[:32]}? by store, region, category, day or hour")
    lo, hi = day_range(day_from, day_to)
    where, args = _stores_filter(_all_stores(db, scope), "x.store_id")
    if region:
        where += " AND x.store_id IN (SELECT store_id FROM hq_stores WHERE region = ?)"
        args = [*args, region]
    rng: list[Any] = [lo, hi, *args]
    rows: list[dict[str, Any]] = []
    with db.read() as tx:
        if by == "category":
            for r in tx.all(f"""SELECT coalesce(i.category_id, '-'), coalesce(c.name_zh, ''), coalesce(c.name_en, ''),
                                       sum(x.lines), coalesce(sum(x.qty), 0), coalesce(sum(x.discount), 0),
                                       coalesce(sum(x.net), 0)
                                FROM (SELECT x.sku, sum(x.lines) AS lines, sum(x.qty) AS qty,
                                             sum(x.discount) AS discount, sum(x.net) AS net
                                      FROM hq_sku_days x WHERE x.day BETWEEN ? AND ?{where} GROUP BY x.sku) x
                                LEFT JOIN hq_items i ON i.sku = x.sku
                                LEFT JOIN hq_categories c ON c.category_id = i.category_id
                                GROUP BY coalesce(i.category_id, '-'), coalesce(c.name_zh, ''), coalesce(c.name_en, '')
                                ORDER BY 7 DESC, 1""", rng):
                rows.append({"category": r[0], "name_zh": r[1], "name_en": r[2], "lines": int(r[3]), "qty": int(r[4]),
                             "discount": int(r[5]), "net": int(r[6])})
        else:
            key = {"store": "x.store_id", "region": "s.region", "day": "x.day", "hour": "x.hour"}[by]
            refunds: dict[str, int] = {}
            if by in ("store", "region", "day"):
                rkey = key.replace("x.", "t.")
                rwhere = where.replace("x.store_id", "t.store_id")
                refunds = {str(r[0]): int(r[1]) for r in tx.all(
                    f"""SELECT {rkey}, coalesce(sum(t.refund_total), 0) FROM hq_returns t
                        JOIN hq_stores s ON s.store_id = t.store_id
                        WHERE t.day BETWEEN ? AND ?{rwhere} GROUP BY {rkey}""", rng)}
            found = {str(r[0]): r for r in tx.all(
                f"""SELECT {key}, sum(x.tickets), coalesce(sum(x.gross), 0), coalesce(sum(x.discount), 0),
                           coalesce(sum(x.net), 0), count(DISTINCT x.store_id)
                    FROM {"hq_store_hours" if by == "hour" else "hq_store_days"} x
                    JOIN hq_stores s ON s.store_id = x.store_id
                    WHERE x.day BETWEEN ? AND ?{where} GROUP BY {key} ORDER BY 1""", rng)}
            if by == "store":
                swhere, sargs = _stores_filter(scope, "store_id")
                if region:
                    swhere += " AND region = ?"
                    sargs = [*sargs, region]
                for store_id, name, reg in tx.all(f"SELECT store_id, name, region FROM hq_stores WHERE 1 = 1{swhere} "
                                                  "ORDER BY store_id", sargs):
                    f = found.get(str(store_id))
                    t, g, d, n = (int(f[1]), int(f[2]), int(f[3]), int(f[4])) if f else (0, 0, 0, 0)
                    rows.append({"store_id": store_id, "name": name, "region": reg, "tickets": t, "gross": g,
                                 "discount": d, "net": n, "avg_basket": _avg(n, t),
                                 "refunded": refunds.get(str(store_id), 0)})
                rows.sort(key=lambda r: (-r["net"], r["store_id"]))
            else:
                for k, f in found.items():
                    t, g, d, n = int(f[1]), int(f[2]), int(f[3]), int(f[4])
                    row: dict[str, Any] = {by: k}
                    if by == "region":
                        row["stores"] = int(f[5])
                    row.update({"tickets": t, "gross": g, "discount": d, "net": n, "avg_basket": _avg(n, t)})
                    if by != "hour":
                        row["refunded"] = refunds.get(k, 0)
                    rows.append(row)
                if by == "region":
                    rows.sort(key=lambda r: (-r["net"], r["region"]))
    totals = {c: sum(r[c] for r in rows) for c in ("tickets", "lines", "gross", "discount", "net", "refunded", "qty")
              if rows and c in rows[0]}
    return {"by": by, "from": lo, "to": hi, "region": region or None, "columns": COLUMNS[by], "rows": rows,
            "totals": totals}


def as_csv(report: dict[str, Any]) -> str:
    """The report's rows as CSV (UTF-8 with a BOM, so a spreadsheet opens the Chinese names right); money
    in fen, as everywhere."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    columns = report["columns"]
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow([_cell(row.get(c, "")) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not text.lstrip("-").isdigit() else text


def reconciliation(db: HqDb, principal: Principal, day_from: str, day_to: str) -> dict[str, Any]:
    """Each Z report of a store the caller sees in the range, beside HQ's own figures for that store day."""
    require(principal, "reports.read")
    lo, hi = day_range(day_from, day_to)
    with db.read() as tx:
        scope = scope_of(tx, principal)
    where, args = _stores_filter(_all_stores(db, scope), "z.store_id")
    with db.read() as tx:
        zs = tx.all(f"""SELECT z.store_id, z.day, z.z_no, z.tickets, z.net, z.refunded, z.at FROM hq_z_reports z
                        WHERE z.day BETWEEN ? AND ?{where} ORDER BY z.day, z.store_id""", [lo, hi, *args])
        # HQ's side only for the store days that have a Z report, from the per-store-day rollup (ingest keeps
        # it with the sales): a year of 50 stores summed from hq_sales took 1.3 s, with no Z report at all.
        days = sorted({str(z[1]) for z in zs})
        z_where, z_args = _stores_filter(frozenset(str(z[0]) for z in zs), "x.store_id")
        hq_sales = {(str(r[0]), str(r[1])): (int(r[2]), int(r[3])) for r in tx.all(
            f"""SELECT x.store_id, x.day, x.tickets, x.net FROM hq_store_days x
                WHERE x.day BETWEEN ? AND ?{z_where}""",
            [days[0], days[-1], *z_args])} if zs else {}
        hq_refunds = {(str(r[0]), str(r[1])): int(r[2]) for r in tx.all(
            f"""SELECT x.store_id, x.day, coalesce(sum(x.refund_total), 0) FROM hq_returns x
                WHERE x.day BETWEEN ? AND ?{z_where} GROUP BY x.store_id, x.day""",
            [days[0], days[-1], *z_args])} if zs else {}
    rows = []
    for store_id, day, z_no, tickets, net, refunded, at in zs:
        key = (str(store_id), str(day))
        hq_tickets, hq_net = hq_sales.get(key, (0, 0))
        hq_ref = hq_refunds.get(key, 0)
        rows.append({"store_id": store_id, "day": day, "z_no": int(z_no), "closed_at": at,
                     "z_tickets": int(tickets), "z_net": int(net), "z_refunded": int(refunded),
                     "hq_tickets": hq_tickets, "hq_net": hq_net, "hq_refunded": hq_ref,
                     "matches": (hq_tickets, hq_net, hq_ref) == (int(tickets), int(net), int(refunded))})
    return {"from": lo, "to": hi, "rows": rows, "mismatches": sum(1 for r in rows if not r["matches"])}
