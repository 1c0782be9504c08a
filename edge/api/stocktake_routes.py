"""Placeholder: filled by the stocktake work."""

from __future__ import annotations

from typing import Any

STOCKTAKE_ROUTES: list[Any] = []
