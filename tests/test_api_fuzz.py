"""Schemathesis fuzzes the hub's OpenAPI document (`/schema/openapi.json`): a real demo hub (`backroom serve`,
devices on, so the device routes answer as on a store box) logged in as the store manager, the role that may
call the most. Every operation gets the coverage phase's cases (tests/fuzz_support.py); the test fails on any
5xx, on a traceback in the hub's log, and on a status code, content type or response body the document does
not describe. HQ's document: tests/test_api_fuzz_hq.py. By hand, with more: docs/api-fuzz.md.

Left out: `GET /api/v1/devices/{id}/stream`, a Server-Sent Events stream that stays open (a request to it
never completes). The operations that write (sales, users, prices, stock) change this module's demo data only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import fuzz, login, no_tracebacks, passed
from hubproc import seed_demo, serve_with_devices, stop_with_devices


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("fuzz-hub")
    data = root / "data"
    seed_demo(data)
    proc, url, _ = serve_with_devices(data, root / "serve.log")
    try:
        yield url, root
    finally:
        stop_with_devices(proc, data)


def test_hub_api_fuzz_as_store_manager(hub: tuple[str, Path]) -> None:
    url, root = hub
    token = login(url, "/api/v1/auth/login", {"username": "manager", "password": "manager-demo"})
    passed(fuzz(url, token, r"/stream$", cwd=root), 90)
    no_tracebacks(root / "serve.log")
