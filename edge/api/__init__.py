"""The hub's HTTP API for tills and tablets (Litestar)."""
