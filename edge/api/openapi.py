"""OpenAPI request bodies for handlers that decode their body strictly themselves.

Handlers read the raw body and decode it with msgspec in strict mode (Litestar's own `data`
parsing coerces "5" to 5). So the OpenAPI document still shows each body, the body's JSON Schema
comes from msgspec and is attached to the operation through a tiny Operation subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Reference, RequestBody

_PREFIX = "Body"
_BODY_TYPES: list[type[Any]] = []


def body_operation(type_: type[Any]) -> type[Operation]:
    """An Operation class whose request body is `type_` (use as `operation_class=`)."""
    _BODY_TYPES.append(type_)

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
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
