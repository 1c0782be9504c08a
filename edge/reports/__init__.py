"""Store reports for the manager's tablet: read-only queries over the rollups kept by migration m090
(`sales_daily_sku`, `sales_hourly`, `promotion_daily`), plus the year-of-a-busy-store generator that
the `backroom bench ui` harness measures them on."""
