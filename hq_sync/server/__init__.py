"""The reference HQ server: storage (SQLite or PostgreSQL), ingest, feed, escrow, admin API."""
