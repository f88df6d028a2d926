"""OpenAPI extensions: describe our bearer tokens to drf-spectacular."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
            for status, description in errors.items():
                operation["responses"].setdefault(status, {"description": description, "content": content})
    return result
