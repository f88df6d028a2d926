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
