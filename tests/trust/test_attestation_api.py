"""Hardware attestation through the provider API: a nonce per GPU model, NVIDIA's token for it
(made here in its real format and signed by keys chaining to a root the test configures), the key
set fetched from a JWKS endpoint on loopback as from NVIDIA's; attested GPUs show as such."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from providers.models import ProviderGpu
from tests import factories as f
from tests.trust.nras import Nras, bundle
from tests.trust.test_consequences import failed_check, small_challenges  # noqa: F401 - fixture
from trust import services
from trust.models import Attestation

pytestmark = pytest.mark.django_db
URL = "/api/v1/providers/me/attestations/"


def attest(api, service: Nras, model: str = "h100-sxm-80gb", **kwargs) -> dict:  # type: ignore[no-untyped-def]
    issued = api.post(URL, {"gpu_model": model}, format="json")
    assert issued.status_code == 201, issued.json()
    token = bundle(service.key, issued.json()["nonce"], **kwargs)
    answered = api.post(f"{URL}{issued.json()['id']}/token/", {"token": token}, format="json")
    assert answered.status_code == 200, answered.json()
    return answered.json()


def test_an_h100_host_in_confidential_computing_mode_gets_its_gpus_attested(nras: Nras) -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 2})
    api = f.api(provider.user, f.PROVIDER)
    result = attest(api, nras, gpus=2)
    assert result["status"] == "attested" and len(result["gpus"]) == 2
    assert result["gpus"][0]["architecture"] == "Hopper" and result["gpus"][0]["driver_version"] == "570.133.20"
    row = ProviderGpu.objects.get(provider=provider)
    assert row.attested and row.attested_until > timezone.now() + timedelta(days=6)
    offer = f.api(f.client_user(), f.CLIENT).get("/api/v1/offers/").json()["results"][0]
    assert offer["attested"] is True
    assert "attested" in Client().get("/offers/").content.decode()
    assert [a["status"] for a in api.get(URL).json()] == ["attested"]
    page = Client()
    page.force_login(provider.user)
    console = page.get("/provider/").content.decode()
    assert 'id="attestations"' in console and "2 GPUs" in console

    again = api.post(f"{URL}{result['id']}/token/", {"token": bundle(nras.key, result["nonce"], gpus=2)}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "attestation_finished"  # a nonce serves once


def test_tokens_that_do_not_cover_the_listing_are_rejected_with_the_reason(nras: Nras) -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 4, "a100-sxm-80gb": 2})
    api = f.api(provider.user, f.PROVIDER)
    short = attest(api, nras, gpus=2)
    assert (short["status"], short["failure"]) == ("rejected", "too_few_gpus")
    assert "attests 2 GPUs; you list 4" in short["detail"]
    wrong = attest(api, nras, model="a100-sxm-80gb", gpus=2)  # Hopper tokens for Ampere cards
    assert (wrong["status"], wrong["failure"]) == ("rejected", "wrong_architecture")
    debug = attest(api, nras, gpus=4, gpu={"dbgstat": "enabled"})
    assert (debug["status"], debug["failure"]) == ("rejected", "debug_enabled")
    assert not ProviderGpu.objects.filter(provider=provider, attested_until__isnull=False).exists()

    mine = attest(api, nras, gpus=4)
    assert mine["status"] == "attested"
    borrower = f.provider(gpus={"h100-sxm-80gb": 4})  # the same cards, claimed by someone else
    theirs = attest(f.api(borrower.user, f.PROVIDER), nras, gpus=4)
    assert (theirs["status"], theirs["failure"]) == ("rejected", "gpu_elsewhere")


def test_bad_answers_are_refused_without_using_up_the_nonce(nras: Nras, settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 1})
    api = f.api(provider.user, f.PROVIDER)
    issued = api.post(URL, {"gpu_model": "h100-sxm-80gb"}, format="json").json()
    token_url = f"{URL}{issued['id']}/token/"
    for token in ("not json", [], {"a": 1}, [["JWT", "x.y.z"], {"GPU-0": "x.y.z"}], None):
        refused = api.post(token_url, {"token": token}, format="json")
        assert refused.status_code == 400, token
        assert refused.json()["error"]["code"] in ("malformed_token", "validation_error"), refused.json()
    assert api.post(token_url, {}, format="json").status_code == 400
    assert Attestation.objects.get(pk=issued["id"]).status == "issued"

    settings.ATTESTATION_JWKS_URL = settings.ATTESTATION_JWKS_URL.replace("jwks.json", "gone.json")
    cache.delete(services.JWKS_CACHE_KEY)
    down = api.post(token_url, {"token": bundle(nras.key, issued["nonce"])}, format="json")
    assert down.status_code == 503 and down.json()["error"]["code"] == "attestation_unavailable"
    assert Attestation.objects.get(pk=issued["id"]).status == "issued"  # try again later

    Attestation.objects.filter(pk=issued["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    settings.ATTESTATION_JWKS_URL = settings.ATTESTATION_JWKS_URL.replace("gone.json", "jwks.json")
    late = api.post(token_url, {"token": bundle(nras.key, issued["nonce"])}, format="json")
    assert late.status_code == 409 and late.json()["error"]["code"] == "attestation_expired"

    unlisted = api.post(URL, {"gpu_model": "l4-24gb"}, format="json")
    assert unlisted.status_code == 400 and "gpu_model" in unlisted.json()["error"]["fields"]
    assert f.api(f.provider().user, f.PROVIDER).post(token_url, {"token": "x"}, format="json").status_code == 404
    assert f.api(f.client_user(), f.CLIENT).get(URL).status_code == 403


def test_without_configured_roots_attestation_is_not_offered(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ATTESTATION_ROOT_CERTS = ""
    api = f.api(f.provider().user, f.PROVIDER)
    refused = api.post(URL, {"gpu_model": "h100-sxm-80gb"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "attestation_unavailable"


def test_a_failed_proof_of_gpu_check_takes_the_attestation_away(nras: Nras) -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 1})
    assert attest(f.api(provider.user, f.PROVIDER), nras)["status"] == "attested"
    failed_check(provider, "h100-sxm-80gb")
    assert not ProviderGpu.objects.get(provider=provider).attested
