"""Spot checks: running leases' own GPUs are checked at random times, as often as the lease terms say,
all of a lease's cards at once; the terms are on the lease (page and API) and on the new-order form."""

import random

import pytest
from django.test import Client

from leases.models import Lease
from tests import factories as f
from tests.trust.test_consequences import lease_on, small_challenges  # noqa: F401 - fixture
from trust import services
from trust.models import GpuCheck

pytestmark = pytest.mark.django_db


def test_running_leases_are_spot_checked_at_random_as_often_as_the_terms_say(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PROOF_SPOT_CHECKS_PER_DAY = 100
    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 4})
    client = f.client_user()
    running = lease_on(provider, client, "a100-sxm-80gb", ran=60)
    Lease.objects.filter(pk=running.pk).update(gpu_count=2)
    starting = lease_on(provider, client, "h100-sxm-80gb", ran=60)
    Lease.objects.filter(pk=starting.pk).update(status=Lease.Status.DEPLOYING)  # not running yet: left alone

    rng, issued = random.Random(7), 0
    for _minute in range(24 * 60):  # a day of sweeps
        issued += services.spot_checks_issue(rng=rng)
        GpuCheck.objects.filter(status=GpuCheck.Status.ISSUED).update(status=GpuCheck.Status.EXPIRED)
    # a Poisson count with mean 100 (standard deviation 10): outside 60..140 once in 10^4 runs
    assert 60 <= issued <= 140
    checks = GpuCheck.objects.all()
    assert {(c.reason, c.lease_id, c.gpu_model_id, c.cards) for c in checks} == {
        ("lease", running.pk, "a100-sxm-80gb", 2)
    }
    assert checks[0].params["rows"] == 2 * 256  # both cards' work in one card's time


def test_a_check_under_way_is_not_doubled_and_none_are_drawn_when_turned_off(settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    client = f.client_user()
    lease_on(provider, client, "h100-sxm-80gb", ran=60)
    lease_on(provider, client, "h100-sxm-80gb", ran=60)
    settings.PROOF_SPOT_CHECKS_PER_DAY = 1e9  # every lease, every sweep
    assert services.spot_checks_issue() == 1  # one at a time per provider and model
    assert services.spot_checks_issue() == 0
    settings.PROOF_SPOT_CHECKS_PER_DAY = 0
    GpuCheck.objects.update(status=GpuCheck.Status.EXPIRED)
    assert services.spot_checks_issue() == 0


def test_the_terms_are_shown_on_the_lease_and_the_new_order_form(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PROOF_SPOT_CHECKS_PER_DAY, settings.PROOF_TARGET_SECONDS = 6, 3
    settings.PROOF_MARGIN, settings.PROOF_ALLOWANCE_SECONDS = 0.25, 1
    client = f.client_user()
    lease = lease_on(f.provider(), client, "h100-sxm-80gb", ran=60)
    terms = f.api(client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/").json()["spot_checks"]
    assert terms == {"per_day": 6, "seconds": 3, "at_most_seconds": 4.75}
    page = Client()
    page.force_login(client)
    html = page.get(f"/leases/{lease.pk}/").content.decode()
    assert "About 6 times a day, at random" in html and "about 3 s (at most 4.75 s)" in html
    assert "About 6 times a day" in page.get("/orders/new/").content.decode()
