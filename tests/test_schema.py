from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

REQUIRED = {
    "/api/v1/gpu-models/": {"get"},
    "/api/v1/offers/": {"get"},
    "/api/v1/providers/me/": {"get", "post", "patch"},
    "/api/v1/providers/me/inventory/": {"put"},
    "/api/v1/orders/": {"get", "post"},
    "/api/v1/orders/{id}/": {"get"},
    "/api/v1/orders/{id}/cancel/": {"post"},
    "/api/v1/orders/{id}/bids/": {"get", "post"},
    "/api/v1/orders/{id}/accept/": {"post"},
    "/api/v1/bids/": {"get"},
    "/api/v1/bids/{id}/withdraw/": {"post"},
    "/api/v1/provider/orders/": {"get"},
    "/api/v1/leases/": {"get"},
    "/api/v1/leases/{id}/": {"get"},
    "/api/v1/leases/{id}/close/": {"post"},
    "/api/v1/leases/{id}/usage/": {"get", "post"},
    "/api/v1/account/": {"get"},
    "/api/v1/account/ledger/": {"get"},
    "/api/v1/account/top-ups/": {"get", "post"},
    "/api/v1/account/statements/{month}/": {"get"},
    "/api/v1/leases/{id}/statement/": {"get"},
    "/api/v1/payments/stripe/webhook/": {"post"},
    "/api/v1/notifications/": {"get"},
    "/api/v1/provider/earnings/": {"get"},
    "/api/v1/webhooks/": {"get", "post"},
    "/api/v1/webhooks/{id}/": {"get", "patch", "delete"},
    "/api/v1/webhooks/{id}/deliveries/": {"get"},
}


def test_openapi_schema_is_valid_without_warnings_and_covers_the_api(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    for path, methods in REQUIRED.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_schema_and_docs_are_served(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-any-return]


def test_every_operation_that_honours_an_idempotency_key_says_so() -> None:
    from rest_framework.views import APIView

    from config.urls import urlpatterns

    schema = _schema()
    declared = {
        (path, method)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation.get("parameters", []))
    }

    def views(patterns):  # type: ignore[no-untyped-def]
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from views(pattern.url_patterns)
            else:
                yield getattr(pattern.callback, "cls", None)

    # the handlers wrapped by ``idempotent``, found through the URLconf
    wrapped = [
        (view.__name__, method)
        for view in views(urlpatterns)
        if isinstance(view, type) and issubclass(view, APIView)
        for method in ("post", "put", "patch", "delete")
        if getattr(getattr(view, method, None), "idempotent", False)
    ]
    assert len(wrapped) == len(declared) >= 9, (sorted(wrapped), sorted(declared))
    assert {("/api/v1/orders/", "post"), ("/api/v1/account/top-ups/", "post")} <= declared


def test_descriptions_are_written_for_users_and_numbers_typed_as_the_api_reads_them() -> None:
    schema = _schema()
    components = schema["components"]["schemas"]
    base_docs = ("Refuses keys it does not know", "A model serializer whose text fields")
    for name, component in components.items():
        assert not str(component.get("description", "")).startswith(base_docs), name
    # the port shorthand: a number, or a port and its protocol
    port = components["PortRequest"]
    assert [option.get("type") for option in port["oneOf"]] == ["integer", "object"]
    # whole numbers in filters, bodies and answers are integers, not numbers
    offers = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/offers/"]["get"]["parameters"]}
    for name in ("gpu_count", "min_vram_gib", "min_reputation", "max_price_per_gpu_hour"):
        assert offers[name]["type"] == "integer", name
    resources = components["Order"]["properties"]["resources"]["properties"]
    assert resources["gpu_count"]["type"] == "integer" and resources["memory_gib"]["type"] == "integer"
    orders = {p["name"]: p["schema"]["type"] for p in schema["paths"]["/api/v1/orders/"]["post"]["parameters"]}
    assert orders["duration_hours"] == "integer" and orders["Idempotency-Key"] == "string"
