"""Schemathesis fuzzes the hub's OpenAPI document (`/schema/openapi.json`): a real demo hub (`backroom serve`,
devices on, so the device routes answer as on a store box) logged in as the store manager, the role that may
call the most. Every operation gets the coverage phase's cases (tests/fuzz_support.py); the test fails on any
5xx, on a traceback in the hub's log, and on a status code, content type or response body the document does
not describe. HQ's document: tests/test_api_fuzz_hq.py. By hand, with more: docs/api-fuzz.md.

Left out: `GET /api/v1/devices/{id}/stream`, a Server-Sent Events stream that stays open (a request to it
never completes). The operations that write (sales, users, prices, stock) change this module's demo data only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import fuzz, login, no_tracebacks, passed
from hubproc import seed_demo, serve_with_devices, stop_with_devices
from litestar._openapi.plugin import OpenAPIPlugin

from edge.app import create_app
from edge.config import HubConfig
from hq_sync.server.api.app import _litestar as hq_app


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


# Integers whose out-of-range values are refused some other way than by the document's bounds.
UNBOUNDED_ON_PURPOSE = {
    # an id no anomaly can have is an unknown one: 404 `unknown_anomaly` (edge/api/statement_routes.py)
    "POST /api/v1/statements/anomalies/{anomaly_id}/resolve path:anomaly_id",
    # `Parameter(ge=0, le=365)` on an optional int: Litestar writes no `minimum` when it is 0 (falsy); the server
    # refuses -1 all the same (400)
    "GET /api/v1/stock/replenishment query:cover_days",
    "GET /api/v1/stock/replenishment query:lead_time_days",
}


def unbounded_integers(document: dict[str, Any]) -> list[str]:
    """Every integer a client sends (parameter or JSON body field) that the document gives no minimum and
    maximum. The coverage phase only tries one past the bounds it is told of: an integer with none is never
    sent 30 digits long by the fuzz test, so this keeps each of them bounded."""
    components = document.get("components", {}).get("schemas", {})
    found: set[str] = set()

    def walk(schema: Any, where: str, bounds: dict[str, Any], refs: frozenset[str]) -> None:
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in refs:
                walk(components.get(name), f"{where}->{name}", {}, refs | {name})
            return
        # Litestar writes an optional parameter's bounds beside its oneOf: they hold for every branch
        bounds = {**bounds, **{k: schema[k] for k in ("minimum", "maximum") if k in schema}}
        kind = schema.get("type")
        if (kind == "integer" or isinstance(kind, list) and "integer" in kind) and len(bounds) < 2:
            found.add(where)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", {}, refs)
        for key in ("items", "additionalProperties"):
            walk(schema.get(key), f"{where}[]", {}, refs)
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in schema.get(key, []):
                walk(sub, where, bounds if key != "prefixItems" else {}, refs)

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                walk(parameter.get("schema"), f"{method.upper()} {path} {parameter['in']}:{parameter['name']}", {},
                     frozenset())
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            walk(body, f"{method.upper()} {path} body", {}, frozenset())
    return sorted(found - UNBOUNDED_ON_PURPOSE)


def test_every_integer_a_client_sends_is_bounded_in_both_documents(tmp_path: Path) -> None:
    @contextlib.asynccontextmanager
    async def no_lifespan(app: Any) -> AsyncIterator[None]:
        yield

    hub = create_app(HubConfig(data_dir=tmp_path)).plugins.get(OpenAPIPlugin).provide_openapi_schema()
    hq = hq_app(no_lifespan).plugins.get(OpenAPIPlugin).provide_openapi_schema()
    assert len(hub["paths"]) > 80 and len(hq["paths"]) > 70
    assert unbounded_integers(hub) == []
    assert unbounded_integers(hq) == []
