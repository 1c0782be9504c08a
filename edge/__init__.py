"""Backroom edge: the store hub service (till API, domain, storage, journal, outbox)."""

__version__ = "0.1.0"
