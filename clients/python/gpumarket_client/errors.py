"""What the API refused, in its one error shape."""

from typing import Any


class ApiError(Exception):
    """The API answered an error: ``{"error": {"code", "message", "fields"}}``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}

    def __str__(self) -> str:
        details = "; ".join(
            f"{field}: {' '.join(map(str, problems)) if isinstance(problems, list) else problems}"
            for field, problems in _flat(self.fields)
        )
        return f"{self.message} ({self.code}){': ' + details if details else ''}"

    @classmethod
    def from_response(cls, status: int, body: Any, text: str = "") -> "ApiError":
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status, "http_error", f"HTTP {status}: {text[:200]}".strip())
        return cls(status, str(error.get("code", "error")), str(error.get("message", "")), error.get("fields") or {})


class TransportError(Exception):
    """The marketplace could not be reached (after the retries)."""


def _flat(fields: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in fields.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            pairs += _flat(value, path)
        else:
            pairs.append((path, value))
    return pairs
