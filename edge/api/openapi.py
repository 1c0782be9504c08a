"""The OpenAPI documents of the hub and of HQ: built on their first request, with the strictly decoded
request bodies, the error shape the servers really answer with, and who may call what.

Handlers read the raw body and decode it with msgspec in strict mode (Litestar's own `data`
parsing coerces "5" to 5). So the OpenAPI document still shows each body, the body's JSON Schema
comes from msgspec and is attached to the operation through a tiny Operation subclass.

Litestar documents what it can see, and some of that is not what the servers do: its 400 is
`{"status_code", "detail"}` where both servers answer `{"code", "message"}`; a handler that returns
JSON it encoded itself (`Response[bytes]`) shows as a JSON *string*; and the bearer token is not
mentioned. `_WithBodies` corrects those once the document is built (`corrected`), so that a client
generator or a fuzzer (schemathesis, docs/api-fuzz.md) reads what the servers really do.

The document is generated when it is first asked for (`/schema`), not at start: generating it
(every route's parameters and responses, the bodies' JSON Schemas) was about a tenth of the hub's
cold start (docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

_PREFIX = "Body"
_METHODS = ("get", "put", "post", "delete", "patch")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "machine-readable, e.g. `invalid_field`"},
                   "message": {"type": "string", "description": "for a person"}},
    "description": "Every error answer: a machine-readable `code` and a human `message` (some carry more fields)",
}


class BodyRegistry:
    """The request bodies of one server's routes (the hub's, HQ's): `operation(T)` is an Operation class
    whose request body is `T`, and `components()` their JSON Schemas for the document."""

    def __init__(self) -> None:
        self.types: list[type[Any]] = []
        self.elsewhere: dict[tuple[str, str], type[Any]] = {}  # (path, method) -> body, for `corrected`
        self.media: dict[tuple[str, str], str] = {}  # (path, method) -> the media type of its answers

    def document(self, path: str, method: str, type_: type[Any]) -> None:
        """Name `type_` as the body of the operation at `path` (as the document writes it) without touching
        its route (whose module belongs to others: HQ's sync endpoints)."""
        self.types.append(type_)
        self.elsewhere[(path, method)] = type_

    def answers(self, path: str, method: str, media_type: str) -> None:
        """The operation's 2xx answers are `media_type` (binary), not JSON (HQ's msgpack feed)."""
        self.media[(path, method)] = media_type

    def operation(self, type_: type[Any]) -> type[Operation]:
        """An Operation class whose request body is `type_` (use as `operation_class=`)."""
        self.types.append(type_)
        registry = self

        class WithBody(Operation):  # Operation's dataclass fields and __init__; no dataclass of its own to build
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                # Named when the document is built, once every route registered its body: two body types
                # of one name (stock-take's and the devices' ApproveRequest) get msgspec's qualified names.
                ref = f"#/components/schemas/{_PREFIX}{registry.component_name(type_)}"
                self.request_body = RequestBody(
                    required=True,
                    content={"application/json": OpenAPIMediaType(schema=Reference(ref=ref))},
                )

        return WithBody

    def component_name(self, type_: type[Any]) -> str:
        """The name msgspec gives `type_` among the registered bodies: its own, or `module.qualname` when
        another registered type has the same name."""
        clash = any(t is not type_ and t.__name__ == type_.__name__ for t in self.types)
        return f"{type_.__module__}.{type_.__qualname__}" if clash else type_.__name__

    def components(self) -> dict[str, Any]:
        """The JSON Schemas of every registered body type (call after the routes are imported)."""
        _, components = msgspec.json.schema_components(
            self.types, ref_template=f"#/components/schemas/{_PREFIX}{{name}}"
        )
        return {f"{_PREFIX}{name}": schema for name, schema in components.items()}


HUB_BODIES = BodyRegistry()
body_operation = HUB_BODIES.operation  # the hub's routes: `operation_class=body_operation(SaleRequest)`


def body_components() -> dict[str, Any]:
    """The JSON Schemas of the hub's registered body types."""
    return HUB_BODIES.components()


# (path, method) -> the security requirements of that operation (None: public)
Security = Callable[[str, str], list[dict[str, list[str]]] | None]


class _WithBodies(OpenAPIPlugin):
    """Litestar's OpenAPI plugin (which builds the document on first use) adding the bodies' schemas and
    correcting what Litestar cannot see (module docstring). The registry and the security schemes are
    class attributes of a subclass made per app (`build_on_first_use`)."""

    __slots__ = ()
    registry: BodyRegistry = HUB_BODIES
    schemes: dict[str, Any] = {}
    security: Security | None = None

    def _build_openapi(self) -> OpenAPI:
        document = super()._build_openapi()
        if document.components.schemas is None:
            document.components.schemas = {}
        document.components.schemas.update(self.registry.components())
        return document

    def provide_openapi_schema(self) -> dict[str, Any]:
        if not self._openapi_schema:
            document = super().provide_openapi_schema()
            # Also here, through the public method: should a Litestar release rename the private
            # `_build_openapi` above, the served document still carries every body's schema.
            document.setdefault("components", {}).setdefault("schemas", {}).update(self.registry.components())
            for (path, method), type_ in self.registry.elsewhere.items():
                operation = document.get("paths", {}).get(path, {}).get(method)
                if operation is not None:
                    ref = f"#/components/schemas/{_PREFIX}{self.registry.component_name(type_)}"
                    operation["requestBody"] = {"required": True,
                                                "content": {"application/json": {"schema": {"$ref": ref}}}}
            for (path, method), media_type in self.registry.media.items():
                operation = document.get("paths", {}).get(path, {}).get(method)
                for status, response in (operation or {}).get("responses", {}).items():
                    if status.startswith("2"):
                        response["content"] = {media_type: {"schema": {"type": "string", "format": "binary"}}}
            self._openapi_schema = corrected(document, self.schemes, type(self).security)
        return self._openapi_schema


def _json_error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def corrected(document: dict[str, Any], schemes: dict[str, Any], security: Security | None) -> dict[str, Any]:
    """`document` with the servers' real error shape, JSON (not string) answers, and its security schemes."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    if schemes:
        components["securitySchemes"] = schemes
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                media = response.get("content", {}).get("application/json")
                if status.startswith("2") and media is not None and media.get("schema") == {"type": "string"}:
                    # a handler answering with JSON it encoded itself: an object, not a JSON string
                    media["schema"] = {"type": "object"}
            responses["400"] = _json_error("Bad input: malformed JSON, a wrong type, a value out of its range")
            requirement = security(path, method) if security is not None else None
            if requirement:
                operation["security"] = requirement
                responses.setdefault("401", _json_error("No valid credentials"))
                responses.setdefault("403", _json_error("The caller's role may not do this"))
            responses.setdefault("4XX", _json_error("Refused: unknown id (404), wrong state (409), ..."))
    return document


def build_on_first_use(app: Litestar, registry: BodyRegistry = HUB_BODIES, schemes: dict[str, Any] | None = None,
                       security: Security | None = None) -> None:
    """Let `app` generate its OpenAPI document when it is first asked for, bodies included (the routes
    must be registered first: call it on the built app)."""
    plugin = app.plugins.get(OpenAPIPlugin)
    if type(plugin) is OpenAPIPlugin:
        plugin.__class__ = type("WithBodies", (_WithBodies,),
                                {"__slots__": (), "registry": registry, "schemes": schemes or {},
                                 "security": staticmethod(security) if security is not None else None})


BEARER = {"bearer": {"type": "http", "scheme": "bearer",
                     "description": "the `token` of `POST /api/v1/auth/login` (the hub) or `/hq/v1/auth/login` (HQ)"}}


def bearer_where_permission(handlers: list[Any]) -> Security:
    """The hub's rule (edge/api/support.py `permission_guard`): a route that names a permission in its
    `opt` takes a bearer token; the others (login, health) are public."""
    guarded: set[tuple[str, str]] = set()
    for handler in handlers:
        if not getattr(handler, "opt", {}).get("permission"):
            continue
        for path in getattr(handler, "paths", ()):
            for method in getattr(handler, "http_methods", ()):
                guarded.add((re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path), method.lower()))

    def security(path: str, method: str) -> list[dict[str, list[str]]] | None:
        return [{"bearer": []}] if (path, method) in guarded else None

    return security


_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def raw_body_operation(media_type: str, description: str) -> type[Operation]:
    """An Operation class whose request body is a file read as bytes (a CSV, a bill, a TOML mapping)."""

    class WithRawBody(Operation):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.request_body = RequestBody(
                required=True, description=description,
                content={media_type: OpenAPIMediaType(schema=_BINARY)},
            )

    return WithRawBody
