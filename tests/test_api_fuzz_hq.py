"""Schemathesis fuzzes HQ's OpenAPI document (`/schema/openapi.json`): a real demo HQ (`backroom hq serve
--demo`, SQLite) as the HQ admin. As tests/test_api_fuzz.py does for the hub: the coverage phase's cases for
every operation (tests/fuzz_support.py); any 5xx, a traceback in HQ's log, or an answer the document does not
describe fails it.

Left out, and why:
- `GET /hq/v1/price-imports/{id}/events`: a Server-Sent Events stream that stays open.
- `POST /hq/v1/auth/logout`: it ends the very token the fuzzer uses; every later call would be a 401.
The `/hq/v1/sync/...` endpoints take a store's signature: the admin's run calls them unsigned (a 401 each);
a second run signs every request as a paired store's (tests/fuzz_signing.py), the feed's long-poll left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from fuzz_support import fuzz, login, no_tracebacks, passed
from sync_support import HqServer, ProtocolStore

from hq_sync.protocol import TopupDelta


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


def test_hq_sync_api_fuzz_signed_as_a_paired_store(hq: tuple[HqServer, Path]) -> None:
    """The sync endpoints with every request signed as paired store demo-002's, so the fuzzer's input reaches
    the code that reads it. The feed is left out here: it is a long-poll (`wait` up to 60 s) that a fuzzer
    holds open; its bounds are checked below."""
    server, root = hq
    store = ProtocolStore("demo-002")
    store.pair(server)
    token = login(server.url, "/hq/v1/auth/login", {"username": "hq", "password": "hq-demo"})
    passed(fuzz(server.url, token, r"/sync/feed$", include=r"^/hq/v1/sync/", cwd=root, store=(store.store_id,
                                                                                                store.key)), 9)
    no_tracebacks(server.log_path)


def test_store_integers_past_64_bits_are_refused_not_overflowed(hq: tuple[HqServer, Path]) -> None:
    """What the fuzzer found at the sync endpoints: integers past a signed 64-bit one reached SQLite and were
    a 500; for a batch, the store would have sent it again for ever."""
    server, _ = hq
    store = ProtocolStore("demo-001")
    store.pair(server)
    target = f"/hq/v1/sync/feed?after={10**25}"
    r = httpx.get(server.url + target, headers=store.headers("GET", target), timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    body = msgspec.json.encode({"at": "2026-12-03T10:00:00+08:00", "levels": [["SKU00001", 10**30]]})
    r = httpx.post(server.url + "/hq/v1/sync/stock", content=body, headers=store.headers("POST", "/hq/v1/sync/stock",
                                                                                            body), timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
    topup = TopupDelta(topup_id=str(uuid.uuid4()), member_id="M000001", amount=2**64 - 1, method="cash",
                       user_id="U-cashier", at="2026-12-03T10:00:00+08:00", journal_seq=1, till_id="T1")
    r = store.send(server.url, store.batch([topup]))
    assert r.status_code == 200, r.text
    ack = r.json()
    assert (ack["acked"], ack["applied"]) == (1, 0)
    assert [seq for seq, _ in ack["quarantined"]] == [1] and "9223372036854775807" in ack["quarantined"][0][1]
    no_tracebacks(server.log_path)
