"""End of day for the store: X reports (the day so far), cash counts, Z reports (closing the business
day, frozen and journaled) and payment reconciliation anomalies. The business day is the store date."""
