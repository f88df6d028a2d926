"""One error shape for the whole API: ``{"error": {"code", "message", "fields"}}``."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError, ValidationFailed
from core.middleware import error_body

logger = logging.getLogger(__name__)
DATABASE_ERRORS = (DatabaseOperationalError, DatabaseInterfaceError)
DATABASE_DOWN = ("database_unavailable", "The database did not answer; nothing was changed. Try again.")
RETRY_AFTER_SECONDS = "5"

_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def _flatten(detail: Any) -> Any:
    """DRF's ErrorDetail tree as plain lists and dicts of strings."""
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def _validation_message(fields: Any) -> str:
    if isinstance(fields, dict) and fields:
        first = next(iter(fields))
        return f"Invalid input: check the field '{first}'." if first != "non_field_errors" else "Invalid input."
    return "Invalid input."


def validation_failed(detail: Any) -> ValidationFailed:
    """A serializer's errors (DRF's detail) as the domain's validation error: the fields as plain
    strings, the message naming the first."""
    fields = _flatten(detail if isinstance(detail, dict) else {"non_field_errors": detail})
    return ValidationFailed(_validation_message(fields), fields=fields)


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, DATABASE_ERRORS):
        # the database dropped the connection or does not answer: the request's transaction was
        # rolled back, and the next request opens a fresh connection
        logger.warning("database unavailable: %s", exc)
        return database_unavailable(context["request"])
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        failed = validation_failed(exc.detail)
        response.data = error_body(failed.code, failed.message, failed.fields)
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), None)
    if code is None:
        code = getattr(exc, "default_code", "error")
    message = str(exc.detail) if isinstance(exc, exceptions.APIException) else str(exc)
    response.data = error_body(code, message)
    return response


def error_response(
    request: HttpRequest, status: int, code: str, message: str, *, page_message: str = ""
) -> HttpResponse:
    """The API's JSON error shape under /api/ (and for clients that ask for or send JSON); a page
    elsewhere, saying ``page_message`` where a person needs more than the API's words."""
    wants_json = (
        request.path.startswith("/api/")
        or "application/json" in request.headers.get("Accept", "")
        or request.content_type == "application/json"
    )
    if wants_json:
        return JsonResponse(error_body(code, message), status=status)
    try:
        body: str = render_to_string("error.html", {"status": status, "message": page_message or message})
    except Exception:  # noqa: BLE001 - a page must never fail to say that something failed
        body = f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{message}</p>"
    return HttpResponse(body, status=status)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 404, "not_found", "Not found.")


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """A page or API call whose database connection went away: 503, try again (not a 500)."""
    response = error_response(request, 503, *DATABASE_DOWN)
    response["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def json_server_error(request: HttpRequest) -> HttpResponse:
    return error_response(request, 500, "server_error", "Something went wrong on our side. It has been logged.")


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 400, "bad_request", "Bad request.")


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403, "permission_denied", "Permission denied.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form or a page's script posted without this session's CSRF token (``CSRF_FAILURE_VIEW``)."""
    return error_response(
        request, 403, "csrf_failed", "This form has expired or came from another site. Reload the page and try again."
    )
