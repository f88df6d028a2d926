"""Proof-of-GPU checks through the provider API: the honest agent's GPUs become verified; a cheater,
a slow card and a prover that never opens its rows fail; bad input is refused without counting."""

import random
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from protocol.proof import protocol, work
from providers.models import ProviderGpu
from tests import factories as f
from trust import selectors, services
from trust.models import GpuCheck
from trust.tasks import sweep_checks

pytestmark = pytest.mark.django_db

CHECKS = "/api/v1/providers/me/checks/"


@pytest.fixture(autouse=True)
def small_challenges(settings):  # type: ignore[no-untyped-def]
    """Challenges a CPU answers at once: 256 rows of width 32, 3 rounds."""
    settings.PROOF_WIDTH, settings.PROOF_ROUNDS, settings.PROOF_LEAF_ROWS = 32, 3, 64
    settings.PROOF_ROWS_PER_SECOND = {"h100-sxm-80gb": 1000.0, "a100-sxm-80gb": 1000.0}
    settings.PROOF_TARGET_SECONDS = 0.256
    settings.PROOF_ALLOWANCE_SECONDS = 5.0  # a loaded test machine is not a slow GPU


def params_of(check: dict) -> protocol.Params:
    p = check["params"]
    return protocol.Params(
        rows=p["rows"], width=p["width"], rounds=p["rounds"], leaf_rows=p["leaf_rows"], checks=p["checks"]
    )


def answer(api, check_id: int, *, skip: float = 0.0) -> dict:  # type: ignore[no-untyped-def]
    """What the agent does: start, prove, commit, open (skipping a share of the rows if asked)."""
    started = api.post(f"{CHECKS}{check_id}/start/")
    assert started.status_code == 200, started.json()
    params = params_of(started.json())
    commitment = protocol.prove(bytes.fromhex(started.json()["seed"]), params)
    if skip:
        size = work.DIGEST_WORDS * 4
        leaves = [bytearray(leaf) for leaf in commitment.leaves]
        for row in random.Random(1).sample(range(params.rows), int(skip * params.rows)):
            offset = (row % params.leaf_rows) * size
            leaves[row // params.leaf_rows][offset : offset + size] = bytes(size)
        commitment = protocol.Commitment([bytes(leaf) for leaf in leaves])
    committed = api.post(f"{CHECKS}{check_id}/commitment/", {"root": commitment.root.hex()}, format="json")
    assert committed.status_code == 200, committed.json()
    assert committed.json()["status"] == "committed" and len(committed.json()["rows"]) == params.checks
    opened = api.post(
        f"{CHECKS}{check_id}/opening/", commitment.open(committed.json()["rows"], params.leaf_rows), format="json"
    )
    assert opened.status_code == 200, opened.json()
    return opened.json()


def test_an_honest_agents_gpus_become_verified_with_the_speed_measured() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    api = f.api(provider.user, f.PROVIDER)
    listed = api.get(CHECKS).json()
    assert [(c["gpu_model"], c["reason"], c["status"]) for c in listed] == [("h100-sxm-80gb", "listing", "issued")]
    assert "seed" not in listed[0]
    assert (listed[0]["cards"], listed[0]["params"]["rows"]) == (8, 8 * 256)  # all eight free cards at once
    assert api.get(CHECKS).json()[0]["id"] == listed[0]["id"]  # asked again: the same check

    result = answer(api, listed[0]["id"])
    assert result["status"] == "passed" and result["measured_int8_tops"] > 0
    gpus = ProviderGpu.objects.get(provider=provider)
    assert gpus.verified and gpus.verified_at is not None and gpus.verified_int8_tops == result["measured_int8_tops"]
    after = api.get(CHECKS).json()
    assert [c["status"] for c in after] == ["passed"]  # nothing more to answer


@pytest.mark.parametrize("skip", [0.25, 1.0])
def test_a_prover_that_skips_work_fails_and_is_suspended_from_verified_orders(skip: float, settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 4})
    ProviderGpu.objects.filter(provider=provider, gpu_model_id="a100-sxm-80gb").update(verified=True)
    api = f.api(provider.user, f.PROVIDER)
    [check] = api.get(CHECKS).json()  # the unverified H100s
    result = answer(api, check["id"], skip=skip)
    assert (result["status"], result["failure"]) == ("failed", "row_mismatch")
    assert not ProviderGpu.objects.filter(provider=provider, verified=True).exists()  # the A100s too
    assert selectors.suspended_until(provider=provider) is not None
    page = Client()
    page.force_login(provider.user)
    assert "A check failed: your GPUs are not verified" in page.get("/provider/").content.decode()
    assert [c["status"] for c in api.get(CHECKS).json()] == ["failed"]  # nothing to answer while suspended

    later = timezone.now() + timedelta(seconds=settings.PROOF_SUSPENSION_SECONDS + 1)
    due = services.checks_due(provider=provider, now=later)  # then every model is checked again
    assert sorted(c.gpu_model_id for c in due) == ["a100-sxm-80gb", "h100-sxm-80gb"]


def test_a_commitment_later_than_the_models_envelope_fails() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    ProviderGpu.objects.filter(provider=provider).update(verified=True)  # verified before: a spot check
    check = services.check_issue(provider=provider, gpu_model_id="h100-sxm-80gb", reason=GpuCheck.Reason.ADMIN)
    t0 = timezone.now()
    services.check_start(provider=provider, check_id=check.pk, now=t0)
    honest = protocol.prove(bytes(check.seed), protocol.Params.from_dict(check.params))
    late = t0 + timedelta(seconds=check.deadline_seconds + 0.01)  # as if a slower card had done the work
    check = services.check_commit(provider=provider, check_id=check.pk, root=honest.root.hex(), now=late)
    assert (check.status, check.failure) == ("failed", "too_slow")
    assert "an honest h100-sxm-80gb needs at most" in check.detail
    assert check.detail.endswith("(set by the marketplace's operator)")  # the envelope's source, for a dispute
    assert not ProviderGpu.objects.get(provider=provider).verified


def test_a_check_says_where_its_envelope_came_from(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The operator's figure, else a card measured by us, else the datasheet estimate: each check
    is sized from the first there is, and says which (in the API, and on the provider's page)."""
    settings.PROOF_ROWS_PER_SECOND = {"h100-sxm-80gb": 1000.0}
    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 4, "l40s-48gb": 2})
    monkeypatch.setitem(protocol.CALIBRATED_ROWS_PER_SECOND, "a100-sxm-80gb", 500.0)
    monkeypatch.setitem(protocol.CALIBRATED_ROWS_PER_SECOND, "h100-sxm-80gb", 2000.0)  # the operator's wins
    listed = {c["gpu_model"]: c for c in f.api(provider.user, f.PROVIDER).get(CHECKS).json()}
    assert {model: c["envelope"] for model, c in listed.items()} == {
        "h100-sxm-80gb": "operator",
        "a100-sxm-80gb": "calibrated",
        "l40s-48gb": "datasheet",
    }
    estimate = protocol.estimated_rows_per_second(733, 864, width=32, rounds=3)  # the L40S's datasheet
    for model, rate in (("h100-sxm-80gb", 1000.0 * 8), ("a100-sxm-80gb", 500.0 * 4), ("l40s-48gb", estimate * 2)):
        assert listed[model]["params"]["rows"] == protocol.fit(rate, 0.256, width=32, rounds=3, leaf_rows=64).rows
    page = Client()
    page.force_login(provider.user)
    checks = page.get("/provider/").content.decode().split('id="checks"')[1].split("</table>")[0]
    assert checks.count(">est.</abbr>") == 1  # the L40S's, estimated


def test_rows_not_opened_in_time_fail_the_check(settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    first = services.checks_due(provider=provider)[0]
    t0 = timezone.now()
    services.check_start(provider=provider, check_id=first.pk, now=t0)
    commitment = protocol.prove(bytes(first.seed), protocol.Params.from_dict(first.params))
    committed = services.check_commit(provider=provider, check_id=first.pk, root=commitment.root.hex(), now=t0)
    later = t0 + timedelta(seconds=settings.PROOF_OPEN_WITHIN_SECONDS + 1)
    opened = services.check_open(
        provider=provider, check_id=first.pk, opening=commitment.open(committed.rows, 64), now=later
    )
    assert (opened.status, opened.failure) == ("failed", "not_opened")
    # and the sweeper fails one that never comes back at all
    second = services.check_issue(provider=provider, gpu_model_id="h100-sxm-80gb", reason=GpuCheck.Reason.ADMIN)
    services.check_start(provider=provider, check_id=second.pk, now=t0)
    services.check_commit(provider=provider, check_id=second.pk, root="ab" * 32, now=t0)
    GpuCheck.objects.filter(pk=second.pk).update(committed_at=t0 - (later - t0))  # as long ago
    assert sweep_checks.delay().get() == 1  # the worker's periodic sweep
    second.refresh_from_db()
    assert (second.status, second.failure) == ("failed", "not_opened")


def test_a_check_nobody_starts_expires_without_consequence(settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    first = services.checks_due(provider=provider)[0]
    later = timezone.now() + timedelta(seconds=settings.PROOF_START_WITHIN_SECONDS + 1)
    again = services.checks_due(provider=provider, now=later)
    first.refresh_from_db()
    assert first.status == "expired" and first.failure == ""
    assert [c.status for c in again] == ["issued"] and again[0].pk != first.pk  # a fresh one


def test_bad_answers_are_refused_and_do_not_count() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    api = f.api(provider.user, f.PROVIDER)
    check = api.get(CHECKS).json()[0]
    url = f"{CHECKS}{check['id']}"

    early = api.post(f"{url}/commitment/", {"root": "ab" * 32}, format="json")  # before start
    assert early.status_code == 409 and early.json()["error"]["code"] == "check_not_started"
    started = api.post(f"{url}/start/").json()
    assert api.post(f"{url}/start/").status_code == 409  # once
    for root in ("", "xyz", "ab" * 31, None, 7):
        bad = api.post(f"{url}/commitment/", {"root": root}, format="json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_commitment", root
    assert api.post(f"{url}/commitment/", ["not", "an", "object"], format="json").status_code == 400

    params = params_of(started)
    commitment = protocol.prove(bytes.fromhex(started["seed"]), params)
    rows = api.post(f"{url}/commitment/", {"root": commitment.root.hex()}, format="json").json()["rows"]
    good = commitment.open(rows, params.leaf_rows)
    for opening in ({}, {"leaves": []}, {"leaves": good["leaves"][:1]}, {"leaves": "x"}, [1, 2]):
        bad = api.post(f"{url}/opening/", opening, format="json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_opening", opening
    assert GpuCheck.objects.get(pk=check["id"]).status == "committed"  # still answerable
    assert api.post(f"{url}/opening/", good, format="json").json()["status"] == "passed"

    stranger = f.api(f.provider().user, f.PROVIDER)
    assert stranger.post(f"{url}/start/").status_code == 404  # not theirs
    assert api.post(f"{CHECKS}999999/start/").status_code == 404
    assert f.api(f.client_user(), f.CLIENT).get(CHECKS).status_code == 403


def test_an_operator_checks_a_providers_gpus_on_demand() -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 2})
    out = StringIO()
    call_command("check_gpus", str(provider.pk), stdout=out)
    assert sorted(GpuCheck.objects.filter(provider=provider).values_list("gpu_model_id", "reason")) == [
        ("a100-sxm-80gb", "admin"),
        ("h100-sxm-80gb", "admin"),
    ]
    call_command("check_gpus", str(provider.pk), "--model", "a100-sxm-80gb", stdout=out)
    assert "a100-sxm-80gb: A check of these GPUs is already under way." in out.getvalue()
    with pytest.raises(CommandError):
        call_command("check_gpus", "999999")
    with pytest.raises(CommandError):
        call_command("check_gpus", str(provider.pk), "--model", "l4-24gb")


def test_verification_and_its_measured_speed_show_in_offers_bids_and_the_providers_page() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    api = f.api(provider.user, f.PROVIDER)
    assert answer(api, api.get(CHECKS).json()[0]["id"])["status"] == "passed"
    tops = ProviderGpu.objects.get(provider=provider).verified_int8_tops

    client = f.client_user()
    [offer] = f.api(client, f.CLIENT).get("/api/v1/offers/?verified=true").json()["results"]
    assert offer["verified"] is True and offer["verified_int8_tops"] == tops
    order = f.order(client, verification="verified")
    placed = api.post(f"/api/v1/orders/{order.pk}/bids/", {"price_per_hour": 2_000_000}, format="json").json()
    assert placed["gpu_verified"] is True
    [listed] = f.api(client, f.CLIENT).get(f"/api/v1/orders/{order.pk}/bids/").json()["results"]
    assert listed["gpu_verified"] is True

    page = Client()
    page.force_login(provider.user)
    html = page.get("/provider/").content.decode()
    assert 'id="checks"' in html and "passed" in html and f"{tops:.0f} TOPS" in html
