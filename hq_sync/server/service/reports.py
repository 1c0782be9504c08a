"""Chain reports: store ranking, sales by category and by region."""

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
            rows = tx.all(f"""SELECT s.store_id, s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                              FROM hq_stores s LEFT JOIN hq_sales x ON x.store_id = s.store_id WHERE {in_scope}
                              GROUP BY s.store_id, s.region ORDER BY 4 DESC, s.store_id""", args)
            return [{"rank": n, "store_id": r[0], "region": r[1], "sales": int(r[2]), "total": int(r[3])}
                    for n, r in enumerate(rows, start=1)]
        if by == "categories":
            lines_in_scope, line_args = scope_sql(principal, "l.store_id")
            rows = tx.all(f"""SELECT coalesce(i.category_id, '-'), count(*), coalesce(sum(l.net), 0)
                              FROM hq_sale_lines l LEFT JOIN hq_items i ON i.sku = l.sku WHERE {lines_in_scope}
                              GROUP BY coalesce(i.category_id, '-') ORDER BY 3 DESC, 1""", line_args)
            return [{"category": r[0], "lines": int(r[1]), "net": int(r[2])} for r in rows]
        if by == "regions":
            rows = tx.all(f"""SELECT s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                              FROM hq_sales x JOIN hq_stores s ON s.store_id = x.store_id WHERE {in_scope}
                              GROUP BY s.region ORDER BY 3 DESC, 1""", args)
            return [{"region": r[0], "sales": int(r[1]), "total": int(r[2])} for r in rows]
    raise HqError(404, "unknown_report", f"no report {by[:32]}; stores, categories or regions")
