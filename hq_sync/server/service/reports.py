"""Chain reports: store ranking, sales by category and by region.

They read the rollups ingest keeps in each batch's transaction (`hq_store_days`: tickets and the sum of
totals per store and day; `hq_sku_days`: lines and net per store, day and item), never the sales: at chain
scale (docs/hq-scale.md) a scan of every sale and line is hundreds of millions of rows. The answers are the
same (tests/test_hq_schema_distribution.py compares them with the sums over the sales)."""

from __future__ import annotations

from typing import Any

from hq_sync.server.service.access import Principal, require, scope_sql
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb

# -- reports ----------------------------------------------------------------------------------------------------------

def report(db: HqDb, principal: Principal, by: str) -> list[dict[str, Any]]:
    """Chain reports: store ranking, sales by category, sales by region — over the stores in scope."""
    require(principal, "reports.read")
    in_scope, args = scope_sql(principal, "s.store_id")
    with db.read() as tx:
        if by == "stores":
            rows = tx.all(f"""SELECT s.store_id, s.region, coalesce(sum(d.tickets), 0), coalesce(sum(d.net), 0)
                              FROM hq_stores s LEFT JOIN hq_store_days d ON d.store_id = s.store_id WHERE {in_scope}
                              GROUP BY s.store_id, s.region ORDER BY 4 DESC, s.store_id""", args)
            return [{"rank": n, "store_id": r[0], "region": r[1], "sales": int(r[2]), "total": int(r[3])}
                    for n, r in enumerate(rows, start=1)]
        if by == "categories":
            lines_in_scope, line_args = scope_sql(principal, "k.store_id")
            rows = tx.all(f"""SELECT coalesce(i.category_id, '-'), sum(k.lines), coalesce(sum(k.net), 0)
                              FROM hq_sku_days k LEFT JOIN hq_items i ON i.sku = k.sku WHERE {lines_in_scope}
                              GROUP BY coalesce(i.category_id, '-') ORDER BY 3 DESC, 1""", line_args)
            return [{"category": r[0], "lines": int(r[1]), "net": int(r[2])} for r in rows]
        if by == "regions":
            rows = tx.all(f"""SELECT s.region, sum(d.tickets), coalesce(sum(d.net), 0)
                              FROM hq_store_days d JOIN hq_stores s ON s.store_id = d.store_id WHERE {in_scope}
                              GROUP BY s.region ORDER BY 3 DESC, 1""", args)
            return [{"region": r[0], "sales": int(r[1]), "total": int(r[2])} for r in rows]
    raise HqError(404, "unknown_report", f"no report {by[:32]}; stores, categories or regions")
