import copy
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from providers.models import Provider, ProviderGpu
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db

INVENTORY = {
    "gpus": [
        {"model": "NVIDIA H100 80GB HBM3", "total": 8, "free": 6, "price_per_gpu_hour": 2_500_000},
        {"model": "NVIDIA-A100-SXM4-80GB", "total": 4, "free": 4},
    ],
    "cpu_cores": {"total": 128, "free": 100},
    "memory_gib": {"total": 1024, "free": 900},
    "storage_gib": {"total": 10_000, "free": 9_000},
}


@pytest.fixture
def provider_api():  # type: ignore[no-untyped-def]
    return f.api(f.user(provider=True), f.PROVIDER)


def test_register_report_inventory_and_update(provider_api) -> None:  # type: ignore[no-untyped-def]
    assert provider_api.get("/api/v1/providers/me/").status_code == 403
    created = provider_api.post(
        "/api/v1/providers/me/", {"name": "Acme GPU", "region": "us-east-1", "attributes": {"tier": "3"}}, format="json"
    )
    assert created.status_code == 201 and created.json()["online"] is False
    assert (
        provider_api.post("/api/v1/providers/me/", {"name": "again", "region": "x"}, format="json").status_code == 409
    )
    response = provider_api.put("/api/v1/providers/me/inventory/", INVENTORY, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["online"] is True and body["last_heartbeat_at"]
    gpus = {g["gpu_model"]["id"]: g for g in body["gpus"]}
    assert gpus["h100-sxm-80gb"]["total"] == 8 and gpus["h100-sxm-80gb"]["available"] == 6
    assert gpus["a100-sxm-80gb"]["free"] == 4
    assert body["cpu_cores"] == {"total": 128, "free": 100, "reserved": 0}
    patched = provider_api.patch("/api/v1/providers/me/", {"region": "us-west-2"}, format="json")
    assert patched.status_code == 200 and patched.json()["region"] == "us-west-2"
    # a later report without the A100s removes them
    smaller = {**INVENTORY, "gpus": INVENTORY["gpus"][:1]}
    assert provider_api.put("/api/v1/providers/me/inventory/", smaller, format="json").status_code == 200
    assert list(ProviderGpu.objects.values_list("gpu_model_id", flat=True)) == ["h100-sxm-80gb"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda inv: inv["gpus"].append({"model": "NVIDIA GTX 9999 Ti", "total": 1, "free": 1}),
        lambda inv: inv["gpus"].__setitem__(0, {"model": "h100-sxm-80gb", "total": 1, "free": 2}),
        lambda inv: inv["gpus"].__setitem__(0, {"model": "h100-sxm-80gb", "total": -1, "free": 0}),
        lambda inv: inv["gpus"].__setitem__(
            0, {"model": "h100-sxm-80gb", "total": "8", "free": 0, "price_per_gpu_hour": 0}
        ),
        lambda inv: inv.__setitem__("cpu_cores", {"total": 1, "free": 2}),
        lambda inv: inv.__setitem__("memory_gib", None),
        lambda inv: inv.__setitem__("gpus", [{"model": "h100-sxm-80gb", "total": 1, "free": 1}] * 65),
        lambda inv: inv.pop("storage_gib"),
    ],
)
def test_bad_inventory_is_400_and_changes_nothing(provider_api, mutate) -> None:  # type: ignore[no-untyped-def]
    provider_api.post("/api/v1/providers/me/", {"name": "Acme", "region": "eu"}, format="json")
    inventory = {**INVENTORY, "gpus": [dict(g) for g in INVENTORY["gpus"]]}
    mutate(inventory)
    response = provider_api.put("/api/v1/providers/me/inventory/", inventory, format="json")
    assert response.status_code == 400, response.json()
    assert not ProviderGpu.objects.exists()
    assert Provider.objects.get().last_heartbeat_at is None


NODES = [
    {
        "name": "gpu-1",
        "gpus": [{"model": "NVIDIA H100 80GB HBM3", "total": 8, "free": 6}],
        "cpu_cores": {"total": 64, "free": 50},
        "memory_gib": {"total": 512, "free": 450},
        "storage_gib": {"total": 5_000, "free": 4_500},
    },
    {
        "name": "gpu-2",
        "gpus": [{"model": "a100-sxm-80gb", "total": 4, "free": 4}],
        "cpu_cores": {"total": 64, "free": 50},
        "memory_gib": {"total": 512, "free": 450},
        "storage_gib": {"total": 5_000, "free": 4_500},
    },
]


def test_inventory_by_node_and_asking_prices_are_stored_and_shown(provider_api) -> None:  # type: ignore[no-untyped-def]
    provider_api.post("/api/v1/providers/me/", {"name": "Acme", "region": "eu"}, format="json")
    prices = {"h100-sxm-80gb": 9 * USD, "a100-sxm-80gb": 1_300_000}
    response = provider_api.put(
        "/api/v1/providers/me/inventory/", {**INVENTORY, "nodes": NODES, "prices": prices}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [node["name"] for node in body["nodes"]] == ["gpu-1", "gpu-2"]
    assert body["nodes"][0]["gpus"] == [{"model": "h100-sxm-80gb", "total": 8, "free": 6}]  # by catalog id
    assert body["nodes"][1]["cpu_cores"] == {"total": 64, "free": 50}
    # a line's own price wins; the prices fill in the lines without one
    asking = {g["gpu_model"]["id"]: g["price_per_gpu_hour"] for g in body["gpus"]}
    assert asking == {"h100-sxm-80gb": 2_500_000, "a100-sxm-80gb": 1_300_000}
    assert provider_api.get("/api/v1/providers/me/").json()["nodes"] == body["nodes"]
    # the public listing does not show the provider's machines
    public = f.api(f.client_user(), f.CLIENT).get(f"/api/v1/providers/{body['id']}/").json()
    assert "nodes" not in public
    # the console shows them, with catalog names
    web = Client()
    web.force_login(provider_api.user)
    console = web.get("/provider/")
    assert console.status_code == 200
    page = console.content.decode()
    assert "gpu-2" in page and "4/4 × A100 SXM 80GB" in page and "50/64" in page
    # an agent that reports no nodes leaves none (not stale ones)
    assert provider_api.put("/api/v1/providers/me/inventory/", INVENTORY, format="json").json()["nodes"] == []


def _nodes_changed(change) -> dict:  # type: ignore[no-untyped-def]
    nodes = copy.deepcopy(NODES)
    change(nodes)
    return {**INVENTORY, "nodes": nodes}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_nodes_changed(lambda n: n[0]["gpus"][0].__setitem__("free", 5)), "inventory_mismatch"),  # 5 + 0 ≠ 6
        (_nodes_changed(lambda n: n.pop()), "inventory_mismatch"),  # the A100s are on no node
        (_nodes_changed(lambda n: n[1].__setitem__("name", "gpu-1")), "inventory_mismatch"),
        (_nodes_changed(lambda n: n[1]["cpu_cores"].__setitem__("total", 65)), "inventory_mismatch"),
        (
            _nodes_changed(lambda n: n[1]["gpus"].append({"model": "GTX 9999", "total": 1, "free": 1})),
            "unknown_gpu_model",
        ),
        (_nodes_changed(lambda n: n[0]["gpus"][0].__setitem__("free", 9)), "validation_error"),
        (_nodes_changed(lambda n: n[0].pop("memory_gib")), "validation_error"),
        (_nodes_changed(lambda n: n.extend([n[0]] * 1000)), "validation_error"),
        ({**INVENTORY, "prices": {"h100": 1}}, "unknown_gpu_model"),
        ({**INVENTORY, "prices": {"h100-sxm-80gb": 0}}, "validation_error"),
        ({**INVENTORY, "prices": ["h100-sxm-80gb"]}, "validation_error"),
    ],
)
def test_nodes_that_do_not_add_up_and_bad_prices_are_400(provider_api, body: dict, code: str) -> None:  # type: ignore[no-untyped-def]
    provider_api.post("/api/v1/providers/me/", {"name": "Acme", "region": "eu"}, format="json")
    response = provider_api.put("/api/v1/providers/me/inventory/", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert not ProviderGpu.objects.exists() and Provider.objects.get().nodes == []


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "region": "eu"},
        {"name": "x\x00y", "region": "eu"},
        {"name": "ok", "region": "e\u202eu"},
        {"name": "ok", "region": "eu", "attributes": {"k": {"nested": 1}}},
        {"name": "ok", "region": "eu", "attributes": ["a"]},
        {"name": "ok"},
    ],
)
def test_bad_profiles_are_400(provider_api, body) -> None:  # type: ignore[no-untyped-def]
    response = provider_api.post("/api/v1/providers/me/", body, format="json")
    assert response.status_code == 400
    assert not Provider.objects.exists()


def test_offers_filter_and_sort() -> None:
    cheap = f.provider(gpus={"h100-sxm-80gb": 8}, region="eu-central-1")
    ProviderGpu.objects.filter(provider=cheap).update(price_per_gpu_hour=2 * USD)
    pricey = f.provider(gpus={"h100-sxm-80gb": 2, "l4-24gb": 4}, region="us-east-1", verified=True)
    ProviderGpu.objects.filter(provider=pricey).update(price_per_gpu_hour=3 * USD)
    offline = f.provider(gpus={"h100-sxm-80gb": 8})
    Provider.objects.filter(pk=offline.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    api = f.api(f.client_user(), f.CLIENT)

    def offers(query: str = "") -> list[tuple[int, str]]:
        response = api.get(f"/api/v1/offers/{query}")
        assert response.status_code == 200, response.json()
        return [(o["provider"]["id"], o["gpu_model"]["id"]) for o in response.json()["results"]]

    assert (offline.pk, "h100-sxm-80gb") not in offers()
    assert offers("?gpu_model=h100-sxm-80gb") == [(cheap.pk, "h100-sxm-80gb"), (pricey.pk, "h100-sxm-80gb")]
    assert offers("?gpu_model=h100-sxm-80gb&ordering=-price")[0] == (pricey.pk, "h100-sxm-80gb")
    assert offers("?gpu_count=4") == [(cheap.pk, "h100-sxm-80gb"), (pricey.pk, "l4-24gb")]
    assert offers("?min_vram_gib=48") == [(cheap.pk, "h100-sxm-80gb"), (pricey.pk, "h100-sxm-80gb")]
    assert offers("?region=US-EAST-1") == [(pricey.pk, "h100-sxm-80gb"), (pricey.pk, "l4-24gb")]
    assert offers("?verified=true&ordering=vram") == [(pricey.pk, "l4-24gb"), (pricey.pk, "h100-sxm-80gb")]
    assert offers("?verified=false") == [(cheap.pk, "h100-sxm-80gb")]
    assert offers("?gpu_model=nope") == []
    # a price cap in micro-dollars per GPU-hour, decimals of a dollar included
    assert offers("?max_price_per_gpu_hour=2000000") == [(cheap.pk, "h100-sxm-80gb")]
    assert offers("?max_price_per_gpu_hour=1999999") == []
    assert offers("?max_price_per_gpu_hour=3000000&gpu_model=l4-24gb") == [(pricey.pk, "l4-24gb")]
    assert api.get("/api/v1/offers/?gpu_count=0").status_code == 400
    assert api.get("/api/v1/offers/?min_vram_gib=abc").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "max_price_per_gpu_hour=abc",
        "max_price_per_gpu_hour=0",
        "max_price_per_gpu_hour=-5",
        "max_price_per_gpu_hour=1.5",  # micro-dollars are whole
        "max_price_per_gpu_hour=99999999999999999999999",
        "min_vram_gib=40.5",  # a fraction was quietly dropped before
        "gpu_count=2.5",
        "min_reputation=500.1",
    ],
)
def test_an_offer_filter_it_cannot_read_is_a_400_naming_it(query: str) -> None:
    response = f.api(f.client_user(), f.CLIENT).get(f"/api/v1/offers/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()["error"]["fields"]


def test_gpu_models_lists_the_catalog() -> None:
    models = f.api(f.client_user(), f.CLIENT).get("/api/v1/gpu-models/").json()
    h100 = next(m for m in models if m["id"] == "h100-sxm-80gb")
    assert h100 == {
        "id": "h100-sxm-80gb",
        "name": "H100 SXM 80GB",
        "vendor": "NVIDIA",
        "architecture": "Hopper",
        "vram_gib": 80,
        "memory_type": "HBM3",
        "interface": "SXM5",
        "memory_bandwidth_gbps": 3350,
        "int8_tops": 1979.0,
        "bf16_tflops": 989.0,
    }


def test_heartbeat_keeps_a_provider_online() -> None:
    p = f.provider()
    Provider.objects.filter(pk=p.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    api = f.api(p.user, f.PROVIDER)
    assert api.get("/api/v1/providers/me/").json()["online"] is False
    assert api.post("/api/v1/providers/me/heartbeat/").status_code == 204
    assert api.get("/api/v1/providers/me/").json()["online"] is True
