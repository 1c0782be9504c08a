"""Placeholder: the devices page is being built."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
