"""OpenAPI: our bearer tokens, the ``Idempotency-Key`` header, descriptions for users, and the
error shape, described to drf-spectacular."""

import inspect
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Optional, 1 to 200 printable characters: a retry with the same key and the same request is "
    "answered with the first response (`Idempotent-Replayed: true`) instead of being done twice; the same key "
    "with another request is a 422, and while the first is still being answered a 409. Keys are remembered "
    "for a day.",
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, with the ``Idempotency-Key`` header on every operation that honours it
    (handlers wrapped by ``core.api.idempotency.idempotent``), and a serializer's description
    taken from its own docstring only: the base classes' describe our code, not the API."""

    def get_override_parameters(self) -> list:
        parameters = list(super().get_override_parameters())
        handler = getattr(self.view, (self.method or "").lower(), None)
        if getattr(handler, "idempotent", False):
            parameters.append(IDEMPOTENCY_KEY)
        return parameters

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict:
        result: dict = super()._map_basic_serializer(serializer, direction)
        own = serializer.__class__.__dict__.get("__doc__")
        if own:
            result["description"] = inspect.cleandoc(own)
        else:
            result.pop("description", None)
        return result


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (gpm_…), scoped client, provider or read_only.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error the API answers has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable: branch on this."},
                "message": {"type": "string", "description": "For people."},
                "fields": {"type": "object", "description": "Per-field problems, or other details."},
            },
        }
    },
}
# Errors any operation may answer, and those only a request with a body may.
ERRORS = {
    "400": "Invalid input: `fields` says which.",
    "401": "No or an invalid API token.",
    "403": "The token's scope or the caller's role does not allow it, or the object is not theirs to change.",
    "404": "No such object, or not one the caller may see.",
    "405": "The path does not take this method.",
    "406": "The API answers JSON (and CSV where a download offers it), nothing else.",
    "409": "The object's state does not allow it (an illegal transition), or it conflicts with another.",
    "429": "Too many requests: wait for `Retry-After` seconds.",
    "503": "A service the operation needs (the chain, the database) does not answer now; retry later.",
}
BODY_ERRORS = {
    "402": "The balance cannot cover it.",
    "413": "The body is too large.",
    "415": "The API reads JSON bodies (and YAML workload files as orders), nothing else.",
}

IDEMPOTENCY_ERRORS = {"422": "This Idempotency-Key was already used with a different request."}


def error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: the error shape as a component, and the errors each
    operation may answer, so clients (and the schema fuzz tests) know every status they can get."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            # a download (``?format=csv``) answers its errors in its own format, as two CSV lines
            for response in operation["responses"].values():
                for media_type in response.get("content", {}):
                    if media_type == "text/csv":
                        content[media_type] = {"schema": {"type": "string"}}
            errors = ERRORS | (BODY_ERRORS if method in ("post", "put", "patch") else {})
            if any(p.get("name") == IDEMPOTENCY_KEY.name for p in operation.get("parameters", [])):
                errors = errors | IDEMPOTENCY_ERRORS
            for status, description in errors.items():
                operation["responses"].setdefault(status, {"description": description, "content": content})
    return result
