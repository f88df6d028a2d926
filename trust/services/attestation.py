"""Hardware attestation: a fresh nonce per provider and GPU model, the signed evidence checked
against the attestation service's keys (``trust.attestation``), and the attested GPUs marked."""

import dataclasses
import logging
import secrets
from datetime import datetime, timedelta

import requests
from cryptography import x509
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from providers.models import Provider, ProviderGpu
from providers.services import gpus_attested
from trust import attestation
from trust.models import Attestation

logger = logging.getLogger(__name__)
JWKS_CACHE_KEY = "trust:attestation:jwks"


def attestation_issue(*, provider: Provider, gpu_model_id: str, now: datetime | None = None) -> Attestation:
    """A fresh nonce for attesting the provider's GPUs of one model (an unanswered one before it
    expires: a provider attests one model at a time)."""
    now = now or timezone.now()
    _attestation_offered()
    if not ProviderGpu.objects.filter(provider=provider, gpu_model_id=gpu_model_id, total__gt=0).exists():
        raise ValidationFailed(
            "You list no GPUs of that model.", code="unknown_gpu_model", fields={"gpu_model": ["A model you list."]}
        )
    with transaction.atomic():
        Attestation.objects.filter(
            provider=provider, gpu_model_id=gpu_model_id, status=Attestation.Status.ISSUED
        ).update(status=Attestation.Status.EXPIRED, finished_at=now, detail="replaced by a newer nonce")
        return Attestation.objects.create(
            provider=provider,
            gpu_model_id=gpu_model_id,
            nonce=secrets.token_hex(32),
            issued_at=now,
            expires_at=now + timedelta(seconds=settings.ATTESTATION_NONCE_SECONDS),
        )


def attestation_submit(
    *, provider: Provider, attestation_id: int, token: object, now: datetime | None = None
) -> Attestation:
    """Verify the token for the nonce: attested, the provider's GPUs of the model are marked so;
    rejected, the attestation records why. A malformed token is refused (400) and the nonce stays
    open; so does one that arrives while the attestation service's keys cannot be fetched (503)."""
    now = now or timezone.now()
    keys = _attestation_keys(now)
    policy = attestation.Policy(
        issuer=settings.ATTESTATION_ISSUER, min_driver_version=settings.ATTESTATION_MIN_DRIVER_VERSION
    )
    with transaction.atomic():
        record = (
            Attestation.objects.select_for_update()
            .select_related("gpu_model")
            .filter(pk=attestation_id, provider=provider)
            .first()
        )
        if record is None:
            raise NotFound("No such attestation.")
        if record.status != Attestation.Status.ISSUED:
            raise Conflict(f"The attestation is {record.status}: ask for a new nonce.", code="attestation_finished")
        if now > record.expires_at:
            record.status, record.finished_at, record.detail = Attestation.Status.EXPIRED, now, "answered too late"
            record.save(update_fields=["status", "finished_at", "detail"])
            raise Conflict("The nonce has expired: ask for a new one.", code="attestation_expired")
        try:
            gpus = attestation.verify(token, nonce=record.nonce, keys=keys, policy=policy, now=now)
            _attested_gpus_fit(record, gpus, now)
        except attestation.Malformed as exc:
            raise ValidationFailed(str(exc), code="malformed_token", fields={"token": [str(exc)]}) from exc
        except attestation.Rejected as exc:
            record.status, record.failure, record.detail = Attestation.Status.REJECTED, exc.code, str(exc)[:300]
            record.finished_at = now
            record.save(update_fields=["status", "failure", "detail", "finished_at"])
            return record
        record.status, record.finished_at = Attestation.Status.ATTESTED, now
        record.valid_until = now + timedelta(seconds=settings.ATTESTATION_VALID_SECONDS)
        record.gpus = [dataclasses.asdict(gpu) for gpu in gpus]
        record.save(update_fields=["status", "finished_at", "valid_until", "gpus"])
        gpus_attested(provider_id=provider.pk, gpu_model_id=record.gpu_model_id, until=record.valid_until, now=now)
    return record


def _attested_gpus_fit(record: Attestation, gpus: list[attestation.AttestedGpu], now: datetime) -> None:
    """The token must cover every listed GPU of the model, with cards of the model's architecture
    that no other provider attested meanwhile."""
    model = record.gpu_model
    wrong = [gpu.name for gpu in gpus if gpu.architecture != model.architecture]
    if wrong:
        raise attestation.Rejected(
            "wrong_architecture", f"{', '.join(wrong)}: not {model.architecture} GPUs, as a {model.name} is"
        )
    listed = (
        ProviderGpu.objects.filter(provider_id=record.provider_id, gpu_model_id=model.pk)
        .values_list("total", flat=True)
        .first()
        or 0
    )
    if len(gpus) < listed:
        raise attestation.Rejected(
            "too_few_gpus", f"the token attests {len(gpus)} GPUs; you list {listed} {model.name}"
        )
    ueids = {gpu.ueid for gpu in gpus}
    elsewhere = Attestation.objects.filter(status=Attestation.Status.ATTESTED, valid_until__gt=now).exclude(
        provider_id=record.provider_id
    )
    for other in elsewhere.values_list("gpus", flat=True):
        if ueids & {gpu.get("ueid") for gpu in other}:
            raise attestation.Rejected("gpu_elsewhere", "a GPU in the token is attested by another provider")


def _attestation_offered() -> None:
    if not settings.ATTESTATION_ROOT_CERTS:
        raise Conflict(
            "Hardware attestation is not offered here: the operator has not configured the attestation roots.",
            code="attestation_unavailable",
        )


def _attestation_keys(now: datetime) -> attestation.KeySet:
    """NRAS's signing keys (its JWKS, fetched and cached) that chain to the configured roots."""
    _attestation_offered()
    try:
        with open(settings.ATTESTATION_ROOT_CERTS, "rb") as handle:
            roots = x509.load_pem_x509_certificates(handle.read())
    except (OSError, ValueError) as exc:
        logger.error("attestation roots unreadable: %s", exc)
        raise ServiceUnavailable("The attestation roots cannot be read.", code="attestation_unavailable") from exc
    jwks = cache.get(JWKS_CACHE_KEY)
    if jwks is None:
        try:
            response = requests.get(settings.ATTESTATION_JWKS_URL, timeout=10)
            response.raise_for_status()
            jwks = response.json()
        except (requests.RequestException, ValueError) as exc:
            logger.warning("attestation keys unavailable: %s", exc)
            raise ServiceUnavailable(
                "The attestation service's keys cannot be fetched now; try again shortly.",
                code="attestation_unavailable",
            ) from exc
        cache.set(JWKS_CACHE_KEY, jwks, timeout=settings.ATTESTATION_JWKS_CACHE_SECONDS)
    try:
        return attestation.KeySet.from_jwks(jwks, roots, now)
    except attestation.Malformed as exc:
        cache.delete(JWKS_CACHE_KEY)
        raise ServiceUnavailable(
            f"The attestation service's key set is malformed: {exc}", code="attestation_unavailable"
        ) from exc
