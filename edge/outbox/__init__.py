"""The outbox: every ledger event's delta for HQ, appended in the event's own transaction."""
