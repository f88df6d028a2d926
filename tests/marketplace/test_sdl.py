"""Akash SDL files posted as orders: what each part becomes, and what cannot be honoured refused by
name at its path in the file. The files here are written for these tests (docs/SDL.md)."""

import copy
from decimal import Decimal

import pytest
import yaml
from django.test import Client

from core.errors import NotAllowed
from marketplace import selectors
from marketplace.models import Order
from marketplace.sdl import BLOCK_SECONDS, gpu_candidates
from marketplace.spec import order_spec
from providers.models import Provider
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db

# One GPU service with every feature we translate: a service-only port, a global one with `as`
# and http_options, fractional CPU, memory and storage with units, an H100 by Akash's name with
# its memory and interface, placement attributes, signedBy and a price in ACT.
TRAINER = """\
version: "2.0"
services:
  trainer:
    image: ghcr.io/acme/trainer:1.4
    command: [bash, -c]
    args: ["python train.py --epochs 3"]
    env:
      - HF_TOKEN=hf_very_secret
      - EPOCHS=3
      - EMPTY=
    expose:
      - port: 8888
        as: 80
        proto: tcp
        http_options: {max_body_size: 1048576, read_timeout: 60000}
        to:
          - global: true
      - port: 9000
        to:
          - service: trainer
    dependencies:
      - service: trainer
profiles:
  compute:
    trainer:
      resources:
        cpu: {units: 500m}
        memory: {size: 1536Mi}
        storage:
          - size: 10Gi
          - name: scratch
            size: 500M
        gpu:
          units: 2
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
                  interface: sxm
  placement:
    westcoast:
      attributes:
        region: us-west
        tier: gold
      signedBy:
        anyOf: [akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63]
      pricing:
        trainer: {denom: uact, amount: 10000}
deployment:
  trainer:
    westcoast:
      profile: trainer
      count: 1
"""


@pytest.fixture
def client_api():  # type: ignore[no-untyped-def]
    return f.api(f.client_user(), f.CLIENT)


def post_sdl(api, document: str | dict, query: str = "?duration_hours=24"):  # type: ignore[no-untyped-def]
    if isinstance(document, dict):
        return api.post(f"/api/v1/orders/{query}", document, format="json")
    return api.generic("POST", f"/api/v1/orders/{query}", document.encode(), content_type="application/yaml")


def changed(change) -> dict:  # type: ignore[no-untyped-def]
    document = yaml.safe_load(TRAINER)
    change(document)
    return document


def test_an_sdl_file_posted_as_it_is_becomes_the_order_it_asks_for(client_api) -> None:  # type: ignore[no-untyped-def]
    response = post_sdl(client_api, TRAINER)
    assert response.status_code == 201, response.json()
    body = response.json()
    order = Order.objects.get()
    assert body["name"] == "trainer" and order.image == "ghcr.io/acme/trainer:1.4"
    assert (order.command, order.args) == (["bash", "-c"], ["python train.py --epochs 3"])
    assert order.env == [
        {"name": "HF_TOKEN", "value": "hf_very_secret", "secret": True},
        {"name": "EPOCHS", "value": "3", "secret": False},
        {"name": "EMPTY", "value": "", "secret": False},
    ]
    assert order.ports == [{"port": 8888, "protocol": "tcp"}]  # the service-only port is not published
    # 500m → 1 core; 1536Mi → 2 GiB; 10Gi + 500M → 11 GiB
    assert (order.cpu_cores, order.memory_gib, order.storage_gib) == (1, 2, 11)
    assert order.gpu_count == 2 and [m.pk for m in order.gpu_models.all()] == ["h100-sxm-80gb"]
    assert order.placement == {"region": "us-west", "tier": "gold"}
    assert order.verification == "verified"  # signedBy
    assert order.max_price_per_hour == int(Decimal(10000) * 3600 / BLOCK_SECONDS)  # $5.90 an hour
    assert order.duration_hours == 24
    # the order keeps the file, its secret's value hidden, and what was made of it
    kept = body["workload_file"]
    assert kept["format"] == "akash-sdl" and kept["version"] == "2.0"
    assert "hf_very_secret" not in response.content.decode() and "HF_TOKEN=(secret: hidden)" in kept["text"]
    assert yaml.safe_load(kept["text"])["profiles"] == yaml.safe_load(TRAINER)["profiles"]
    notes = " ".join(kept["notes"])
    for said in ("HF_TOKEN", "CPU 500m → 1", "Memory 1536Mi → 2 GiB", "`as: 80`", "port 9000", "signedBy", "$5.90"):
        assert said in notes, said
    # and the order page shows it
    page = Client()
    page.force_login(order.client)
    html = page.get(f"/orders/{order.pk}/").content.decode()
    assert 'id="order-sdl"' in html and "HF_TOKEN=(secret: hidden)" in html and "hf_very_secret" not in html
    assert "region=us-west" in html


def test_the_same_file_as_json_makes_the_same_order(client_api) -> None:  # type: ignore[no-untyped-def]
    from_yaml = post_sdl(client_api, TRAINER).json()
    from_json = post_sdl(client_api, yaml.safe_load(TRAINER)).json()
    strip = {"id", "created_at", "deadline"}
    assert {k: v for k, v in from_yaml.items() if k not in strip} == {
        k: v for k, v in from_json.items() if k not in strip
    }


def test_a_price_without_a_dollar_rate_asks_for_a_maximum_in_dollars(client_api) -> None:  # type: ignore[no-untyped-def]
    in_akt = changed(lambda d: d["profiles"]["placement"]["westcoast"]["pricing"]["trainer"].update(denom="uakt"))
    response = post_sdl(client_api, in_akt)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "uakt has no dollar rate here" in error["fields"]["max_price_per_hour"][0]
    response = post_sdl(client_api, in_akt, "?duration_hours=2&max_price_per_gpu_hour=2500000")
    assert response.status_code == 201, response.json()
    assert response.json()["max_price_per_hour"] == 5 * USD  # two GPUs at $2.50
    # without any pricing, the same; and a duration is always needed
    no_pricing = changed(lambda d: d["profiles"]["placement"]["westcoast"].pop("pricing"))
    assert "max_price_per_hour" in post_sdl(client_api, no_pricing).json()["error"]["fields"]
    response = post_sdl(client_api, TRAINER, "?duration_hours=two")
    assert response.json()["error"]["fields"]["duration_hours"] == ["A valid integer is required."]
    response = post_sdl(client_api, TRAINER, "?duration_hours=9999")
    assert "duration_hours" in response.json()["error"]["fields"]
    assert Order.objects.count() == 1


def test_without_a_duration_an_sdl_order_is_open_ended_as_on_akash(client_api) -> None:  # type: ignore[no-untyped-def]
    response = post_sdl(client_api, TRAINER, "")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["open_ended"] is True and body["duration_hours"] == 24  # what the first deposit pays for
    response = post_sdl(client_api, TRAINER, "?deposit_hours=6")
    assert (response.json()["open_ended"], response.json()["duration_hours"]) == (True, 6)
    response = post_sdl(client_api, TRAINER, "?duration_hours=6&deposit_hours=6")
    assert response.status_code == 400 and "deposit_hours" in response.json()["error"]["fields"]
    page = Client()
    page.force_login(Order.objects.first().client)
    html = page.get(f"/orders/{body['id']}/").content.decode()
    assert "open-ended: runs while funded (the first deposit pays for 24 h)" in html


@pytest.mark.parametrize(
    ("model", "ram", "interface", "expected"),
    [
        ("h100", None, None, {"h100-sxm-80gb", "h100-pcie-80gb", "h100-nvl-94gb"}),
        ("h100", "80Gi", "pcie", {"h100-pcie-80gb"}),
        ("a100", "40Gi", None, {"a100-sxm-40gb", "a100-pcie-40gb"}),
        ("a100", None, "sxm4", {"a100-sxm-80gb", "a100-sxm-40gb"}),
        ("rtx4090", None, None, {"rtx-4090-24gb"}),
        ("rtxa6000", None, None, {"rtx-a6000-48gb"}),
        ("rtx6000ada", "48Gi", None, {"rtx-6000-ada-48gb"}),
        ("H200", None, None, {"h200-sxm-141gb"}),
    ],
)
def test_akash_gpu_names_map_to_the_catalog(model: str, ram: str | None, interface: str | None, expected: set) -> None:
    ram_gib = int(ram[:-2]) if ram else None
    assert {e.id for e in gpu_candidates(model, ram_gib=ram_gib, interface=interface)} == expected
    wanted = {"model": model} | ({"ram": ram} if ram else {}) | ({"interface": interface} if interface else {})
    document = changed(
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["gpu"]["attributes"]["vendor"].update(
            nvidia=[wanted]
        )
    )
    spec = order_spec(document, terms={"duration_hours": 1})
    assert set(spec.gpu_models) == expected
    if len(expected) > 1:  # several models: the candidates are listed for the client
        assert any(note.startswith(f"GPU {model} → any of") for note in spec.workload_file["notes"])


def test_any_nvidia_gpu_and_an_unknown_name(client_api) -> None:  # type: ignore[no-untyped-def]
    any_gpu = changed(
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["gpu"]["attributes"]["vendor"].update(nvidia=None)
    )
    spec = order_spec(any_gpu, terms={"duration_hours": 1})
    assert (spec.gpu_models, spec.min_vram_gib) == ([], 1)
    unknown = changed(
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["gpu"]["attributes"]["vendor"].update(
            nvidia=[{"model": "h10"}]
        )
    )
    response = post_sdl(client_api, unknown)
    path = "profiles.compute.trainer.resources.gpu.attributes.vendor.nvidia[0].model"
    [message] = response.json()["error"]["fields"][path]
    assert "No GPU in the catalog is 'h10'" in message and "Did you mean h100" in message and "rtx4090" in message


def _drop_gpu(d: dict) -> None:
    d["profiles"]["compute"]["trainer"]["resources"].pop("gpu")


UNSUPPORTED = {
    "ip endpoint": (
        lambda d: d["services"]["trainer"]["expose"][0]["to"].append({"ip": "myendpoint"}),
        "services.trainer.expose[0].to[1].ip",
        "`endpoints` (IP leases) is not supported",
    ),
    "endpoints": (
        lambda d: d.update(endpoints={"myendpoint": {"kind": "ip"}}),
        "endpoints",
        "`endpoints` (IP leases) is not supported",
    ),
    "accept": (
        lambda d: d["services"]["trainer"]["expose"][0].update(accept=["example.com"]),
        "services.trainer.expose[0].accept",
        "`accept` (hostnames of your own) is not supported",
    ),
    "credentials": (
        lambda d: d["services"]["trainer"].update(credentials={"host": "ghcr.io", "username": "u", "password": "p"}),
        "services.trainer.credentials",
        "private registries",
    ),
    "params": (
        lambda d: d["services"]["trainer"].update(params={"storage": {"data": {"mount": "/data"}}}),
        "services.trainer.params.storage.data",
        "No persistent or shared-memory volume named 'data' in the profile",
    ),
    "permissions": (
        lambda d: d["services"]["trainer"].update(params={"permissions": {"read": ["deployment"]}}),
        "services.trainer.params.permissions",
        "`params.permissions` is not supported",
    ),
    "persistent volume": (
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["storage"][1].update(
            attributes={"persistent": True, "class": "beta3"}
        ),
        "profiles.compute.trainer.resources.storage[1]",
        "A persistent volume is mounted through the service's params.storage.scratch",
    ),
    "shared memory beyond memory": (
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["storage"][1].update(
            size="4Gi", attributes={"class": "ram"}
        ),
        "profiles.compute.trainer.resources.storage[1].size",
        "Shared memory is part of memory_gib",
    ),
    "several services": (
        lambda d: d["services"].update(db={"image": "postgres:16"}),
        "services",
        "A deployment of several services (trainer, db) is not supported yet",
    ),
    "replicas": (
        lambda d: d["deployment"]["trainer"]["westcoast"].update(count=3),
        "deployment.trainer.westcoast.count",
        "`count: 3` (replicas) is not supported yet",
    ),
    "amd": (
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["gpu"]["attributes"]["vendor"].update(amd=None),
        "profiles.compute.trainer.resources.gpu.attributes.vendor.amd",
        "`amd` GPUs (only NVIDIA GPUs are offered)",
    ),
    "no gpu": (_drop_gpu, "profiles.compute.trainer.resources.gpu.units", "This market rents GPUs"),
    "unknown field": (
        lambda d: d["services"]["trainer"].update(imagee="typo"),
        "services.trainer.imagee",
        "Not an SDL field: services.trainer.imagee",
    ),
    "version": (lambda d: d.update(version="3.0"), "version", 'SDL versions "2.0" and "2.1"'),
    "bad image": (
        lambda d: d["services"]["trainer"].update(image="Not An Image"),
        "services.trainer.image",
        "Not a valid image reference",
    ),
    "bad as": (
        lambda d: d["services"]["trainer"]["expose"][0].update({"as": "80\x00"}),
        "services.trainer.expose[0].as",
        "A port, 1 to 65535",
    ),
    "bad cpu": (
        lambda d: d["profiles"]["compute"]["trainer"]["resources"]["cpu"].update(units="lots"),
        "profiles.compute.trainer.resources.cpu.units",
        "CPUs such as 2, 0.5 or 100m",
    ),
    "bad env": (
        lambda d: d["services"]["trainer"]["env"].append("1BAD=x"),
        "services.trainer.env[3].name",
        "Letters, digits and underscores",
    ),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_what_cannot_be_honoured_is_refused_by_name_at_its_path(client_api, case: str) -> None:  # type: ignore[no-untyped-def]
    change, path, said = UNSUPPORTED[case]
    response = post_sdl(client_api, changed(change))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in ("sdl_not_supported", "sdl_invalid")
    assert path in error["fields"], error
    assert any(said in message for message in error["fields"][path]), error["fields"][path]
    assert "Unknown field." not in response.content.decode()
    assert Order.objects.count() == 0


def test_the_placement_decides_who_may_bid_and_win(client_api) -> None:  # type: ignore[no-untyped-def]
    order = Order.objects.get(pk=post_sdl(client_api, TRAINER).json()["id"])
    elsewhere = f.provider(region="eu-central-1", verified=True)
    there = f.provider(region="us-west", verified=True)
    Provider.objects.filter(pk=there.pk).update(attributes={"tier": "gold"})
    there.refresh_from_db()
    assert order not in selectors.open_orders_for_provider(provider=elsewhere)
    assert order in selectors.open_orders_for_provider(provider=there)
    with pytest.raises(NotAllowed, match="region=us-west, tier=gold"):
        f.bid(elsewhere, order, USD)
    bid = f.bid(there, order, USD)
    # the provider drops the attribute before the deadline: its bid can no longer win
    Provider.objects.filter(pk=there.pk).update(attributes={})
    [candidate] = selectors.award_candidates(order=order, now=order.deadline)
    assert (candidate.bid_id, candidate.ineligible_reason) == (bid.pk, "placement_unmet")


def test_the_order_form_takes_an_sdl_file_with_its_hours_beside_it() -> None:
    client = f.client_user()
    page = Client()
    page.force_login(client)
    form = {"mode": "yaml", "workload_file": TRAINER, "sdl_duration_hours": "", "sdl_max_price_per_gpu_hour": ""}
    in_akt = TRAINER.replace("denom: uact", "denom: uakt")
    response = page.post("/orders/new/", {**form, "workload_file": in_akt})
    assert response.status_code == 400 and Order.objects.count() == 0
    html = response.content.decode()
    assert "HF_TOKEN=hf_very_secret" in html  # the file, kept as typed
    html = page.post("/orders/new/", {**form, "workload_file": in_akt, "sdl_duration_hours": "3"}).content.decode()
    assert "uakt has no dollar rate here: give it here." in html
    unsupported = TRAINER.replace("      count: 1", "      count: 2")
    html = page.post("/orders/new/", {**form, "workload_file": unsupported, "sdl_duration_hours": "3"}).content.decode()
    assert "`count: 2` (replicas) is not supported yet: deployment.trainer.westcoast.count" in html
    response = page.post(
        "/orders/new/",
        {**form, "workload_file": in_akt, "sdl_duration_hours": "3", "sdl_max_price_per_gpu_hour": "2.50"},
    )
    order = Order.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.pk}/"
    assert (order.duration_hours, order.max_price_per_hour, order.gpu_count) == (3, 5 * USD, 2)
    assert order.workload_file["format"] == "akash-sdl"


def test_an_sdl_file_is_not_mistaken_for_our_format_or_the_other_way_round(client_api) -> None:  # type: ignore[no-untyped-def]
    ours = f.spec_payload()
    assert post_sdl(client_api, ours, "").status_code == 201
    # our format's error names our field, as before
    response = post_sdl(client_api, {**ours, "services": {}}, "")
    assert response.status_code == 400 and response.json()["error"]["fields"] == {"services": ["Unknown field."]}
    document = copy.deepcopy(yaml.safe_load(TRAINER))
    document["services"] = "web"
    response = post_sdl(client_api, document)
    assert response.status_code == 400 and "services" in response.json()["error"]["fields"]


def test_a_retry_is_the_same_request_only_with_the_same_terms_beside_the_file(client_api) -> None:  # type: ignore[no-untyped-def]
    def post(query: str):  # type: ignore[no-untyped-def]
        return client_api.generic(
            "POST",
            f"/api/v1/orders/{query}",
            TRAINER.encode(),
            content_type="application/yaml",
            HTTP_IDEMPOTENCY_KEY="k1",
        )

    first = post("?duration_hours=24")
    assert first.status_code == 201
    again = post("?duration_hours=24")
    assert (
        again.status_code == 201 and again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    )
    other = post("?duration_hours=48")  # another request under the same key: refused, not replayed
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_a_shared_memory_volume_is_the_containers_dev_shm(client_api) -> None:  # type: ignore[no-untyped-def]
    def with_shm(d: dict) -> None:
        d["profiles"]["compute"]["trainer"]["resources"]["memory"]["size"] = "32Gi"
        d["profiles"]["compute"]["trainer"]["resources"]["storage"].append(
            {"name": "shm", "size": "8Gi", "attributes": {"class": "ram"}}
        )
        d["services"]["trainer"]["params"] = {"storage": {"shm": {"mount": "/dev/shm"}}}

    response = post_sdl(client_api, changed(with_shm))
    assert response.status_code == 201, response.json()
    assert response.json()["resources"]["shm_gib"] == 8 and response.json()["resources"]["storage_gib"] == 11
    assert "Shared memory (8Gi) → /dev/shm of 8 GiB." in response.json()["workload_file"]["notes"]
    # mounted anywhere else, it is not a volume of files
    elsewhere = changed(with_shm)
    elsewhere["services"]["trainer"]["params"]["storage"]["shm"]["mount"] = "/scratch"
    error = post_sdl(client_api, elsewhere).json()["error"]
    assert error["fields"]["services.trainer.params.storage.shm"] == [
        "No persistent or shared-memory volume named 'shm' in the profile: services.trainer.params.storage.shm"
    ]


def test_a_persistent_volume_is_the_leases_own_mounted_where_the_file_says(client_api) -> None:  # type: ignore[no-untyped-def]
    def with_data(d: dict) -> None:
        d["profiles"]["compute"]["trainer"]["resources"]["storage"][1] = {
            "name": "data",
            "size": "20Gi",
            "attributes": {"persistent": True, "class": "beta3"},
        }
        d["services"]["trainer"]["params"] = {"storage": {"data": {"mount": "/data"}}}

    response = post_sdl(client_api, changed(with_data))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["workload"]["volumes"] == [{"name": "data", "mount": "/data", "size_gib": 20, "storage_class": "beta3"}]
    assert body["resources"]["storage_gib"] == 30  # 10 GiB ephemeral and the volume's 20
    assert any(note.startswith("Volume data (20 GiB, class beta3) at /data") for note in body["workload_file"]["notes"])
    read_only = changed(with_data)
    read_only["services"]["trainer"]["params"]["storage"]["data"]["readOnly"] = True
    error = post_sdl(client_api, read_only).json()["error"]
    assert (
        "A read-only mount is not supported yet" in error["fields"]["services.trainer.params.storage.data.readOnly"][0]
    )
