"""Schemathesis fuzzes HQ's OpenAPI document (`/schema/openapi.json`): a real demo HQ (`backroom hq serve
--demo`, SQLite) as the HQ admin. As tests/test_api_fuzz.py does for the hub: the coverage phase's cases for
every operation (tests/fuzz_support.py); any 5xx, a traceback in HQ's log, or an answer the document does not
describe fails it.

Left out, and why:
- `GET /hq/v1/price-imports/{id}/events`: a Server-Sent Events stream that stays open.
- `POST /hq/v1/auth/logout`: it ends the very token the fuzzer uses; every later call would be a 401.
The `/hq/v1/sync/...` endpoints take a store's signature: they are called, and refuse the unsigned requests
(401) before reading them; tests/test_bad_input.py and the sync tests send them signed bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import fuzz, login, no_tracebacks, passed
from sync_support import HqServer


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HqServer, Path]]:
    root = tmp_path_factory.mktemp("fuzz-hq")
    server = HqServer(str(root / "hq.sqlite3"), root).start(timeout=60)
    try:
        yield server, root
    finally:
        server.stop()


def test_hq_api_fuzz_as_hq_admin(hq: tuple[HqServer, Path]) -> None:
    server, root = hq
    token = login(server.url, "/hq/v1/auth/login", {"username": "hq", "password": "hq-demo"})
    passed(fuzz(server.url, token, r"/events$", r"^/hq/v1/auth/logout$", cwd=root), 85)
    no_tracebacks(server.log_path)
