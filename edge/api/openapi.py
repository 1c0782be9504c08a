"""The hub's OpenAPI document: built on its first request, with the strictly decoded request bodies.

Handlers read the raw body and decode it with msgspec in strict mode (Litestar's own `data`
parsing coerces "5" to 5). So the OpenAPI document still shows each body, the body's JSON Schema
comes from msgspec and is attached to the operation through a tiny Operation subclass.

The document is generated when it is first asked for (`/schema`), not at start: generating it
(every route's parameters and responses, the bodies' JSON Schemas) was about a tenth of the hub's
cold start (docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, Operation, Reference, RequestBody

_PREFIX = "Body"
_BODY_TYPES: list[type[Any]] = []


def body_operation(type_: type[Any]) -> type[Operation]:
    """An Operation class whose request body is `type_` (use as `operation_class=`)."""
    _BODY_TYPES.append(type_)

    class WithBody(Operation):  # Operation's dataclass fields and __init__; no dataclass of its own to build
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Named when the document is built, once every route registered its body: two body types
            # of one name (stock-take's and the devices' ApproveRequest) get msgspec's qualified names.
            ref = f"#/components/schemas/{_PREFIX}{component_name(type_)}"
            self.request_body = RequestBody(
                required=True,
                content={"application/json": OpenAPIMediaType(schema=Reference(ref=ref))},
            )

    return WithBody


def component_name(type_: type[Any]) -> str:
    """The name msgspec gives `type_` among the registered bodies: its own, or `module.qualname` when
    another registered type has the same name."""
    clash = any(t is not type_ and t.__name__ == type_.__name__ for t in _BODY_TYPES)
    return f"{type_.__module__}.{type_.__qualname__}" if clash else type_.__name__


def body_components() -> dict[str, Any]:
    """The JSON Schemas of every registered body type (call after the routes are imported)."""
    _, components = msgspec.json.schema_components(
        _BODY_TYPES, ref_template=f"#/components/schemas/{_PREFIX}{{name}}"
    )
    return {f"{_PREFIX}{name}": schema for name, schema in components.items()}


class _WithBodies(OpenAPIPlugin):
    """Litestar's OpenAPI plugin (which builds the document on first use) adding the bodies' schemas."""

    __slots__ = ()

    def _build_openapi(self) -> OpenAPI:
        document = super()._build_openapi()
        if document.components.schemas is None:
            document.components.schemas = {}
        document.components.schemas.update(body_components())
        return document


def build_on_first_use(app: Litestar) -> None:
    """Let `app` generate its OpenAPI document when it is first asked for, bodies included (the routes
    must be registered first: call it on the built app)."""
    plugin = app.plugins.get(OpenAPIPlugin)
    if type(plugin) is OpenAPIPlugin:
        plugin.__class__ = _WithBodies
