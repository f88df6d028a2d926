"""The OpenAPI schema as integrators use it: a Python client generated from it by a standard
generator (openapi-python-client), its calls run against the live server. What the schema says of
types, the port shorthand and the ``Idempotency-Key`` header must hold in the generated code."""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from core import services as accounts
from core.models import TokenScope
from marketplace.models import Order
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db(transaction=True)
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "gpumarket_api_client"


@pytest.fixture
def generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The client package generated from the schema the server serves, importable."""
    if not GENERATOR.exists():
        pytest.skip("needs openapi-python-client (requirements/dev.in)")
    schema = SchemaGenerator().get_schema(request=None, public=True)
    (tmp_path / "schema.json").write_text(json.dumps(schema, default=str))
    (tmp_path / "config.yaml").write_text(
        f"project_name_override: gpumarket-api-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n"
    )
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", "schema.json", "--output-path", "client", "--config", "config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    monkeypatch.syspath_prepend(str(tmp_path / "client"))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    yield importlib.import_module(PACKAGE)
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    shutil.rmtree(tmp_path / "client", ignore_errors=True)


def test_a_client_generated_from_the_schema_talks_to_the_live_server(generated, live_server) -> None:  # type: ignore[no-untyped-def]
    from gpumarket_api_client.api.gpu_models import gpu_models_list  # type: ignore[import-not-found]
    from gpumarket_api_client.api.offers import offers_list  # type: ignore[import-not-found]
    from gpumarket_api_client.api.orders import orders_create, orders_retrieve  # type: ignore[import-not-found]
    from gpumarket_api_client.models import Error, OrderSpecRequest  # type: ignore[import-not-found]

    user = f.client_user(balance=100 * USD)
    f.provider(gpus={"h100-sxm-80gb": 4})
    token = accounts.token_issue(user=user, name="sdk", scope=TokenScope.CLIENT).secret
    client = generated.AuthenticatedClient(base_url=live_server.url, token=token)

    models = gpu_models_list.sync(client=client)
    assert "h100-sxm-80gb" in {m.id for m in models}
    offers = offers_list.sync(client=client, gpu_count=2, min_vram_gib=80)  # integer filters, typed as such
    assert [o.gpu_model.id for o in offers.results] == ["h100-sxm-80gb"]

    # the port shorthand and an Idempotency-Key, as the schema declares them
    body = OrderSpecRequest.from_dict(
        {
            "workload": {"image": "ghcr.io/acme/trainer:1.4", "ports": [8888, {"port": 6006, "protocol": "udp"}]},
            "resources": {"gpu_count": 1, "gpu_models": ["h100-sxm-80gb"]},
            "duration_hours": 2,
            "max_price_per_hour": 3 * USD,
        }
    )
    created = orders_create.sync(client=client, body=body, idempotency_key="order-1")
    again = orders_create.sync_detailed(client=client, body=body, idempotency_key="order-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.parsed.id == created.id and Order.objects.count() == 1
    order = orders_retrieve.sync(client=client, id=created.id)
    assert isinstance(order.resources.gpu_count, int) and order.resources.gpu_count == 1
    assert [(p.port, p.protocol) for p in order.workload.ports] == [(8888, "tcp"), (6006, "udp")]

    # an error comes back in the API's one shape, typed
    bad = OrderSpecRequest.from_dict({**body.to_dict(), "duration_hours": 9999})
    error = orders_create.sync(client=client, body=bad)
    assert isinstance(error, Error) and "duration_hours" in error.error.fields.to_dict()
