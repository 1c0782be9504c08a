"""Sales: quotes, committed sales with tenders, returns, receipts."""
