"""Placeholder: filled by the eod work."""

from __future__ import annotations

from typing import Any

EOD_ROUTES: list[Any] = []
