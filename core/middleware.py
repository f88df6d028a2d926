import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


class RequestBodyLimitMiddleware:
    """Refuse bodies over ``MAX_REQUEST_BODY_BYTES`` with 413 before anything reads them.

    Bodies without a Content-Length (chunked) are bounded again by the API's parsers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return JsonResponse(error_body("malformed_request", "Invalid Content-Length header."), status=400)
        if size > settings.MAX_REQUEST_BODY_BYTES:
            from core.api.errors import error_response  # the API's errors build on ours

            limit = settings.MAX_REQUEST_BODY_BYTES
            # a page's form (the order form's workload file) is told in words it can act on; the
            # body was never read, so the browser's Back keeps what was typed
            return error_response(
                request,
                413,
                "payload_too_large",
                f"Request bodies are limited to {limit} bytes.",
                page_message=f"The form sent {size / 1024 / 1024:.1f} MB; the most the marketplace reads is "
                f"{limit / 1024 / 1024:.1f} MB. Go back: what you typed is still in the form. Shorten it "
                "(a workload file that long usually carries data that belongs in the image).",
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view (a page; the API has its own handler) whose database connection went away answers
    503 with ``Retry-After``, not 500: its transaction was rolled back, and a retry gets a fresh
    connection."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from core.api.errors import DATABASE_ERRORS, database_unavailable  # the API's errors build on ours

        if not isinstance(exception, DATABASE_ERRORS):
            return None
        logger.warning("database unavailable: %s", exception)
        return database_unavailable(request)
