"""Stock: the append-only movement ledger, batches, FEFO and threshold alerts."""
