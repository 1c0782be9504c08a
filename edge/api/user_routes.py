"""Placeholder: filled by the user work."""

from __future__ import annotations

from typing import Any

USER_ROUTES: list[Any] = []
