"""Placeholder: filled by the report work."""

from __future__ import annotations

from typing import Any

REPORT_ROUTES: list[Any] = []
