"""``Idempotency-Key`` support for DRF handlers: decorate a view's ``post``."""

import functools
from collections.abc import Callable
from typing import Any

from rest_framework.response import Response
from rest_framework.views import APIView

from core import idempotency
from core.api.requests import AuthenticatedRequest
from core.models import ApiToken

HEADER = "Idempotency-Key"


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    @functools.wraps(handler)
    def wrapped(view: APIView, request: AuthenticatedRequest, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        caller = request.auth.scope if isinstance(request.auth, ApiToken) else "session"
        fp = idempotency.fingerprint(
            method=request.method or "", path=request.get_full_path(), payload=request.data, caller=caller
        )
        record, replay = idempotency.idempotency_begin(user=request.user, key=key, fingerprint=fp)
        if replay is not None:
            response = Response(replay.body, status=replay.status)
            response["Idempotent-Replayed"] = "true"
            return response
        assert record is not None
        try:
            try:
                response = handler(view, request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - turned into the API's error response
                response = view.handle_exception(exc)
        except BaseException:
            idempotency.idempotency_abandon(record=record)
            raise
        idempotency.idempotency_finish(record=record, status=response.status_code, body=response.data)
        return response

    wrapped.idempotent = True  # type: ignore[attr-defined]  # read by the schema (core.api.schema)
    return wrapped
