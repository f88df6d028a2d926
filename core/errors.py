"""Domain errors: the one small hierarchy that services raise.

The API's exception handler maps each class to an HTTP status and to the error shape
``{"error": {"code", "message", "fields"}}``: validation 400, payment required 402, not
allowed 403, missing 404, wrong state 409, a service outside not answering 503.
"""

from typing import Any


class DomainError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = fields or {}


class ValidationFailed(DomainError):
    status_code = 400
    default_code = "validation_error"


class PaymentRequired(DomainError):
    status_code = 402
    default_code = "insufficient_funds"


class NotAllowed(DomainError):
    status_code = 403
    default_code = "not_allowed"


class NotFound(DomainError):
    status_code = 404
    default_code = "not_found"


class Conflict(DomainError):
    """The object is in a state that does not allow the operation (an illegal transition)."""

    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(DomainError):
    status_code = 413
    default_code = "payload_too_large"


class ServiceUnavailable(DomainError):
    """Something the operation needs outside the marketplace does not answer now; retry later."""

    status_code = 503
    default_code = "service_unavailable"
