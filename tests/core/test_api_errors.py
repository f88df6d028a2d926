"""Bad requests get a clear 4xx in one shape, never a 500."""

import json

import pytest
from rest_framework.test import APIClient

from marketplace.models import Order
from tests import factories as f

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def client_api() -> APIClient:
    return f.api(f.client_user(), f.CLIENT)


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"name": }', b"[1, 2", b'{"a": NaN}', b"\xff\xfe", b'"just a string"', b"null", b"[]"],
)
def test_malformed_or_wrong_shaped_json(client_api: APIClient, body: bytes) -> None:
    response = client_api.generic("POST", "/api/v1/orders/", body, content_type="application/json")
    assert response.status_code == 400
    assert_error(response, 400)
    assert Order.objects.count() == 0


def test_body_over_one_mebibyte_is_413(client_api: APIClient) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = client_api.generic("POST", "/api/v1/orders/", big, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert Order.objects.count() == 0


def test_unsupported_media_type(client_api: APIClient) -> None:
    response = client_api.generic("POST", "/api/v1/orders/", b"<xml/>", content_type="application/xml")
    assert_error(response, 415, "unsupported_media_type")


def test_method_not_allowed(client_api: APIClient) -> None:
    assert_error(client_api.delete("/api/v1/orders/"), 405, "method_not_allowed")


def test_unknown_api_path_is_a_json_404(client_api: APIClient) -> None:
    assert_error(client_api.get("/api/v1/nothing-here/"), 404, "not_found")


def test_deeply_nested_json_is_refused_not_crashed(client_api: APIClient) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = client_api.generic("POST", "/api/v1/orders/", body, content_type="application/json")
    assert response.status_code == 400


def test_health_and_readiness() -> None:
    c = APIClient()
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["database"] == "ok"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('{"a": [1, {"b": "[[[[{{{{"}]}', 3),
        ('["\\"[[[", [[]]]', 3),
        ("[" * 1000 + "]" * 1000, 1000),
    ],
)
def test_json_depth_ignores_brackets_in_strings(text: str, depth: int) -> None:
    from core.api.parsers import json_depth

    assert json_depth(text) == depth


def test_nesting_is_bounded_before_parsing(client_api: APIClient) -> None:
    body = b'{"workload": ' + b"[" * 65 + b"]" * 65 + b"}"
    response = client_api.generic("POST", "/api/v1/orders/", body, content_type="application/json")
    error = assert_error(response, 400, "malformed_request")
    assert "nests deeper" in error["message"]


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "offset=-1", "offset=1&offset=2", "limit=1.5"])
def test_paging_that_cannot_be_read_is_a_400(client_api: APIClient, query: str) -> None:
    field = query.split("=", 1)[0]
    error = assert_error(client_api.get(f"/api/v1/orders/?{query}"), 400, "validation_error")
    assert field in error["fields"]


def test_filters_that_cannot_be_read_are_400s(client_api: APIClient) -> None:
    assert_error(client_api.get("/api/v1/offers/?verified=maybe"), 400, "validation_error")
    assert client_api.get("/api/v1/offers/?verified=true").status_code == 200


@pytest.mark.parametrize("name", [0, 1.5, True, ["a"], {"a": "b"}])
def test_a_value_that_is_not_text_where_text_is_asked_is_a_400(name: object) -> None:
    api = f.api(f.client_user(), f.CLIENT)
    error = assert_error(api.post("/api/v1/tokens/", {"name": name, "scope": "client"}, format="json"), 400)
    assert "name" in error["fields"]


def test_a_page_or_call_that_loses_its_database_answers_503_not_500(rf) -> None:  # type: ignore[no-untyped-def]
    from django.db import InterfaceError, OperationalError

    from core.middleware import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]
    page = middleware.process_exception(rf.get("/dashboard/"), OperationalError("server closed the connection"))
    assert page is not None and page.status_code == 503 and page["Retry-After"]
    assert b"did not answer" in page.content and page["Content-Type"].startswith("text/html")
    call = middleware.process_exception(rf.get("/api/v1/orders/"), InterfaceError("connection already closed"))
    assert call is not None and call.status_code == 503
    assert json.loads(call.content)["error"]["code"] == "database_unavailable"
    assert middleware.process_exception(rf.get("/dashboard/"), ValueError("a bug")) is None  # still a 500
