"""HQ's storage: the database adapter (SQLite or PostgreSQL) and the schema."""
