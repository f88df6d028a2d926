"""Proof-of-GPU checks: issue a challenge sized for the claimed model, time the agent's answer,
check the rows it opens, and mark the GPUs verified (or not).

A check's life: issued → started (the agent asked for the seed: the clock starts) → committed (the
Merkle root came; the rows to open are drawn now) → passed or failed. An issued check nobody starts
within ``PROOF_START_WITHIN_SECONDS`` expires without consequence.

A failed check takes verification from every GPU of the provider and suspends it from verified
orders for ``PROOF_SUSPENSION_SECONDS``; then its GPUs are checked again. What counts as a failed
check: a commitment later than the envelope, rows or leaves that do not
match, no opening within ``PROOF_OPEN_WITHIN_SECONDS`` of the commitment. What does not: a
malformed commitment or opening (the agent is told what is wrong and may send it again before the
deadline; the root it committed cannot change), an answer for a check that is not its own, unknown,
or not at that step (404 or 409).
"""

import dataclasses
import logging
import math
import random
import secrets
from contextlib import suppress
from datetime import datetime, timedelta

import requests
from cryptography import x509
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import queueing
from core.bulk import update_column
from core.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from core.money import format_usd
from leases import states as lease_states
from leases.escrow import escrow
from leases.models import Lease
from leases.selectors import lease_owed
from leases.services import lease_close_for_cause
from notifications.services import notify
from protocol.proof import protocol
from providers.models import GpuModel, Provider, ProviderGpu
from providers.services import gpus_attested, gpus_unverified, gpus_verified
from trust import attestation, reputation, tasks
from trust.models import Attestation, Compensation, GpuCheck
from trust.selectors import reputation_records, suspended_until

logger = logging.getLogger(__name__)

OPEN = (GpuCheck.Status.ISSUED, GpuCheck.Status.STARTED, GpuCheck.Status.COMMITTED)


def expected_rows_per_second(gpu_model: GpuModel) -> tuple[float, str]:
    """How fast an honest card of the model does this work, and where that comes from: the
    operator's figure, else ours measured on a real card, else the datasheet estimate."""
    for table, source in (
        (settings.PROOF_ROWS_PER_SECOND, GpuCheck.Envelope.OPERATOR),
        (protocol.CALIBRATED_ROWS_PER_SECOND, GpuCheck.Envelope.CALIBRATED),
    ):
        if gpu_model.pk in table:
            return float(table[gpu_model.pk]), source
    estimate = protocol.estimated_rows_per_second(
        float(gpu_model.int8_tops),
        gpu_model.memory_bandwidth_gbps,
        width=settings.PROOF_WIDTH,
        rounds=settings.PROOF_ROUNDS,
    )
    return estimate, GpuCheck.Envelope.DATASHEET


def check_issue(
    *,
    provider: Provider,
    gpu_model_id: str,
    reason: str,
    lease_id: int | None = None,
    cards: int = 1,
    now: datetime | None = None,
) -> GpuCheck:
    """A new challenge for the provider's GPUs of one model, one at a time per model. ``cards``
    GPUs answer it together: it is ``cards`` times the work of one, in the same time."""
    now = now or timezone.now()
    try:
        gpu_model = GpuModel.objects.get(pk=gpu_model_id)
    except GpuModel.DoesNotExist as exc:
        raise NotFound("No such GPU model.", code="unknown_gpu_model") from exc
    rate, source = expected_rows_per_second(gpu_model)
    rate *= cards
    params = protocol.fit(
        rate,
        settings.PROOF_TARGET_SECONDS,
        width=settings.PROOF_WIDTH,
        rounds=settings.PROOF_ROUNDS,
        leaf_rows=settings.PROOF_LEAF_ROWS,
    )
    expected = params.rows / rate
    try:
        with transaction.atomic():
            return GpuCheck.objects.create(
                provider=provider,
                gpu_model=gpu_model,
                reason=reason,
                lease_id=lease_id,
                cards=cards,
                seed=protocol.new_seed(),
                params=params.as_dict(),
                expected_seconds=expected,
                envelope=source,
                deadline_seconds=protocol.envelope(
                    expected, margin=settings.PROOF_MARGIN, allowance=settings.PROOF_ALLOWANCE_SECONDS
                ),
                issued_at=now,
            )
    except IntegrityError as exc:
        raise Conflict("A check of these GPUs is already under way.", code="check_under_way") from exc


def checks_due(*, provider: Provider, now: datetime | None = None) -> list[GpuCheck]:
    """What the provider's agent should answer now: its unfinished checks, after issuing a listing
    check for every model it lists that is neither verified nor under check. A provider whose check
    failed is suspended: no listing check, so no verified GPU, until ``PROOF_SUSPENSION_SECONDS``
    have passed (an operator may still check it with ``check_gpus``)."""
    now = now or timezone.now()
    checks_expire(now=now, provider=provider)
    suspended = suspended_until(provider=provider, now=now) is not None
    busy = GpuCheck.objects.filter(provider=provider, status__in=OPEN).values("gpu_model_id")
    unproven = (
        []
        if suspended
        else ProviderGpu.objects.filter(provider=provider, verified=False, total__gt=0, free__gt=0)
        .exclude(gpu_model_id__in=busy)
        .values_list("gpu_model_id", "free")
    )
    for gpu_model_id, free in unproven:  # every free card of the model at once
        with suppress(Conflict):  # issued meanwhile by another request
            check_issue(
                provider=provider, gpu_model_id=gpu_model_id, reason=GpuCheck.Reason.LISTING, cards=free, now=now
            )
    return list(GpuCheck.objects.filter(provider=provider, status__in=OPEN).order_by("id"))


def checks_expire(*, now: datetime | None = None, provider: Provider | None = None) -> int:
    """Issued checks nobody started in time expire; committed ones never opened fail."""
    now = now or timezone.now()
    scope = GpuCheck.objects.all() if provider is None else GpuCheck.objects.filter(provider=provider)
    expired = scope.filter(
        status=GpuCheck.Status.ISSUED, issued_at__lt=now - timedelta(seconds=settings.PROOF_START_WITHIN_SECONDS)
    ).update(status=GpuCheck.Status.EXPIRED, finished_at=now, detail="not started in time")
    late = scope.filter(
        status=GpuCheck.Status.COMMITTED,
        committed_at__lt=now - timedelta(seconds=settings.PROOF_OPEN_WITHIN_SECONDS),
    ).values_list("pk", flat=True)
    for check_id in late:
        with transaction.atomic():
            check = GpuCheck.objects.select_for_update().get(pk=check_id)
            if check.status == GpuCheck.Status.COMMITTED:
                _fail(check, GpuCheck.Failure.NOT_OPENED, "the rows were not opened in time", now)
    return expired + len(late)


def _locked(provider: Provider, check_id: int, status: str) -> GpuCheck:
    check = GpuCheck.objects.select_for_update().filter(pk=check_id, provider=provider).first()
    if check is None:
        raise NotFound("No such check.")
    if check.status != status:
        raise Conflict(f"The check is {check.status}, not {status}.", code="check_not_" + status)
    return check


def check_start(*, provider: Provider, check_id: int, now: datetime | None = None) -> GpuCheck:
    """The agent is ready: the seed goes out with the answer and the clock starts."""
    now = now or timezone.now()
    with transaction.atomic():
        check = _locked(provider, check_id, GpuCheck.Status.ISSUED)
        check.status, check.started_at = GpuCheck.Status.STARTED, now
        check.save(update_fields=["status", "started_at"])
    return check


def check_commit(*, provider: Provider, check_id: int, root: object, now: datetime | None = None) -> GpuCheck:
    """The commitment: on time, the rows to open are drawn; late, the check fails."""
    now = now or timezone.now()
    try:
        digest = protocol.parse_root(root)
    except protocol.MalformedOpening as exc:
        raise ValidationFailed(str(exc), code="malformed_commitment", fields={"root": [str(exc)]}) from exc
    with transaction.atomic():
        check = _locked(provider, check_id, GpuCheck.Status.STARTED)
        assert check.started_at is not None
        elapsed = (now - check.started_at).total_seconds()
        check.root, check.committed_at, check.elapsed_seconds = digest, now, elapsed
        params = protocol.Params.from_dict(check.params)
        check.rows_per_second = params.rows / elapsed if elapsed > 0 else None
        if elapsed > check.deadline_seconds:
            check.save(update_fields=["root", "committed_at", "elapsed_seconds", "rows_per_second"])
            _fail(
                check,
                GpuCheck.Failure.TOO_SLOW,
                f"{elapsed:.2f} s; an honest {check.gpu_model_id} needs at most {check.deadline_seconds:.2f} s"
                f" ({check.get_envelope_display().lower()})",
                now,
            )
            return check
        check.rows = protocol.choose_rows(params)
        check.status = GpuCheck.Status.COMMITTED
        check.save(update_fields=["root", "committed_at", "elapsed_seconds", "rows_per_second", "rows", "status"])
    return check


def check_open(*, provider: Provider, check_id: int, opening: object, now: datetime | None = None) -> GpuCheck:
    """The opened rows: recomputed from the seed and checked against the root."""
    now = now or timezone.now()
    with transaction.atomic():
        check = _locked(provider, check_id, GpuCheck.Status.COMMITTED)
        assert check.committed_at is not None
        if now > check.committed_at + timedelta(seconds=settings.PROOF_OPEN_WITHIN_SECONDS):
            _fail(check, GpuCheck.Failure.NOT_OPENED, "the rows were not opened in time", now)
            return check
        params = protocol.Params.from_dict(check.params)
        try:
            opened = protocol.parse_opening(opening, params, check.rows)
        except protocol.MalformedOpening as exc:
            raise ValidationFailed(str(exc), code="malformed_opening") from exc
        verdict = protocol.check(bytes(check.seed), params, bytes(check.root or b""), check.rows, opened)
        if not verdict.passed:
            _fail(check, verdict.reason, verdict.detail, now)
            return check
        check.status, check.finished_at = GpuCheck.Status.PASSED, now
        check.save(update_fields=["status", "finished_at"])
        gpus_verified(
            provider_id=check.provider_id,
            gpu_model_id=check.gpu_model_id,
            int8_tops=measured_int8_tops(check) or 0.0,
            now=now,
        )
        reputations_update(provider_ids=[check.provider_id], now=now)
    return check


def measured_int8_tops(check: GpuCheck) -> float | None:
    """The speed the check measured per card, as int8 tera-operations (two per multiply-add) per
    second."""
    if not check.elapsed_seconds:
        return None
    operations = 2 * protocol.Params.from_dict(check.params).multiply_accumulates
    return operations / check.cards / check.elapsed_seconds / 1e12


def spot_checks_issue(*, now: datetime | None = None, rng: random.Random | None = None) -> int:
    """Spot checks at random times on running leases' own GPUs, all of a lease's cards at once:
    each running lease is checked ``PROOF_SPOT_CHECKS_PER_DAY`` times a day on average, as a Poisson
    process sampled once a sweep. Returns how many were issued."""
    now, rng = now or timezone.now(), rng or random.SystemRandom()
    chance = 1 - math.exp(-settings.PROOF_SPOT_CHECKS_PER_DAY * settings.PROOF_SWEEP_SECONDS / 86400)
    running = Lease.objects.filter(status=Lease.Status.RUNNING).order_by("pk")
    issued = 0
    for lease_id, provider_id, gpu_model_id, cards in running.values_list(
        "pk", "provider_id", "gpu_model_id", "gpu_count"
    ).iterator():
        if rng.random() >= chance:
            continue
        with suppress(Conflict):  # a check of those GPUs is under way: that one will do
            check_issue(
                provider=Provider(pk=provider_id),
                gpu_model_id=gpu_model_id,
                reason=GpuCheck.Reason.LEASE,
                lease_id=lease_id,
                cards=cards,
                now=now,
            )
            issued += 1
    return issued


def _fail(check: GpuCheck, failure: str, detail: str, now: datetime) -> None:
    check.status, check.failure, check.detail, check.finished_at = GpuCheck.Status.FAILED, failure, detail[:200], now
    check.save(update_fields=["status", "failure", "detail", "finished_at"])
    gpus_unverified(provider_id=check.provider_id, now=now)
    reputations_update(provider_ids=[check.provider_id], now=now)
    # queued after commit; with the broker down, the minute's sweep does it
    transaction.on_commit(lambda: queueing.send(tasks.apply_consequences, check.pk))


# --- what a failure costs --------------------------------------------------------------------------
# Closing a lease never waits for the money: the lease closes first (nothing more paid, the unsettled
# deposit refunded), its compensation is fixed then, and paid afterwards (on chain, by slashing).
PAY_LOCK_SECONDS = 600  # longer than slashing for every lease of a check may take


def consequences_apply(*, check_id: int, now: datetime | None = None) -> int:
    """A failed check closes every lease on the failed GPUs (the provider's GPUs of the checked
    model) and owes each client everything the lease paid since those GPUs last passed a check.
    Returns how many leases it closed now. A lease that cannot close yet (its deposit or a top-up is
    on its way to the escrow) is closed by a later sweep."""
    now = now or timezone.now()
    check = GpuCheck.objects.select_related("provider").get(pk=check_id)
    if check.status != GpuCheck.Status.FAILED or check.consequences_at is not None:
        return 0
    passed_at = (
        GpuCheck.objects.filter(
            provider_id=check.provider_id, gpu_model_id=check.gpu_model_id, status=GpuCheck.Status.PASSED
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    closed, waiting = 0, False
    leases = Lease.objects.filter(
        provider_id=check.provider_id, gpu_model_id=check.gpu_model_id, status__in=lease_states.OPEN
    ).order_by("pk")
    for lease_id in leases.values_list("pk", flat=True):
        with transaction.atomic():
            lease = Lease.objects.select_for_update().get(pk=lease_id)
            compensation = Compensation.objects.filter(lease=lease).first()
            if compensation is None:
                since = max(lease.started_at, passed_at) if passed_at else lease.started_at
                earned_before = lease_owed(lease=lease, until=since, tail=False)
                compensation = Compensation.objects.create(
                    gpu_check=check,
                    lease=lease,
                    client_id=lease.client_id,
                    since=since,
                    refund=max(0, lease.settled_amount - earned_before),
                )
            if lease.status == Lease.Status.CLOSING:  # closing already: nothing more is paid beyond its ask
                continue
            try:
                lease_close_for_cause(
                    lease_id=lease.pk,
                    reason=f"its GPUs failed proof-of-GPU check {check.pk} ({check.get_failure_display().lower()})",
                    now=now,
                )
                closed += 1
            except Conflict:
                waiting = True
    if not waiting:
        GpuCheck.objects.filter(pk=check.pk).update(consequences_at=now)
        transaction.on_commit(lambda: queueing.send(tasks.pay_compensations, check.pk))
    if closed:
        logger.warning("check %s failed: closed %d leases of provider %s", check.pk, closed, check.provider_id)
        reputations_update(provider_ids=[check.provider_id], now=now)
    return closed


def consequences_due(*, limit: int = 100) -> list[int]:
    """Failed checks whose leases are not all closed yet."""
    due = GpuCheck.objects.filter(status=GpuCheck.Status.FAILED, consequences_at__isnull=True).order_by("pk")
    return list(due.values_list("pk", flat=True)[:limit])


def compensations_due(*, limit: int = 100) -> list[int]:
    """Failed checks with compensations still to pay."""
    due = Compensation.objects.filter(status=Compensation.Status.PENDING, gpu_check__consequences_at__isnull=False)
    return sorted(set(due.values_list("gpu_check_id", flat=True)[:limit]))


def compensations_pay(*, check_id: int, now: datetime | None = None) -> int:
    """Pay the compensations a failed check owes; returns how many were paid now.

    - Ledger escrow: each client gets its refund back from the provider's earnings and the
      platform's fee, as far as their balances go.
    - Escrow on chain: the verifier slashes the provider's stake. First the refunds (pro rata to
      them if the stake cannot cover them all), then ``PROOF_SLASH_BPS`` of what stake remains, as a
      penalty shared by the affected clients pro rata to their leases' hourly price. Each share is
      slashed straight to the client's wallet, or to the custody account for a client without one.
    """
    now = now or timezone.now()
    if not cache.add(f"trust:compensations:{check_id}", 1, timeout=PAY_LOCK_SECONDS):
        return 0  # another worker is paying them
    try:
        return _pay(check_id, now)
    finally:
        cache.delete(f"trust:compensations:{check_id}")


def _pay(check_id: int, now: datetime) -> int:
    pending = list(
        Compensation.objects.filter(
            gpu_check_id=check_id, gpu_check__consequences_at__isnull=False, status=Compensation.Status.PENDING
        )
        .select_related("lease__provider", "lease__client")
        .order_by("pk")
    )
    if not pending:
        return 0
    if any(c.payable is None for c in pending):  # fixed once: a retry pays the same
        planned = escrow().compensation_plan(
            [c.lease for c in pending], refunds=[c.refund for c in pending], penalty_bps=settings.PROOF_SLASH_BPS
        )
        for compensation, payable in zip(pending, planned, strict=True):
            compensation.payable = payable
            compensation.penalty = max(0, payable - compensation.refund)
            compensation.save(update_fields=["payable", "penalty"])
    for compensation in pending:

        def paid(given: int, beneficiary: str, compensation: Compensation = compensation) -> None:
            compensation.beneficiary = beneficiary
            _paid(compensation, given, now)

        escrow().compensate(
            compensation.lease,
            amount=compensation.payable or 0,
            key=f"compensation:{compensation.pk}",
            since=compensation.since,
            paid=paid,
        )
    return len(pending)


def _paid(compensation: Compensation, amount: int, now: datetime) -> None:
    compensation.paid, compensation.status, compensation.paid_at = amount, Compensation.Status.PAID, now
    compensation.save(update_fields=["paid", "status", "paid_at", "beneficiary", "payable", "penalty"])
    lease = compensation.lease
    notify(
        user=lease.client,
        kind="lease.compensated",
        title=f"Lease {lease.pk}: {format_usd(amount)} back after its provider failed a GPU check",
        body=(
            f"The GPUs of lease {lease.pk} failed a proof-of-GPU check, so the lease was closed and its unused "
            f"deposit refunded. For the time since the GPUs last passed a check "
            f"({compensation.since:%Y-%m-%d %H:%M} UTC) the lease paid {format_usd(compensation.refund)}; "
            f"{format_usd(amount)} is back in your balance."
        ),
        data={
            "object": "compensation",
            "lease": lease.pk,
            "check": compensation.gpu_check_id,
            "refund": compensation.refund,
            "penalty": compensation.penalty,
            "paid": amount,
            "since": compensation.since.isoformat(),
        },
    )


# --- reputation ------------------------------------------------------------------------------------
def reputations_update(*, provider_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Score providers from their record (``trust.reputation``) and store what changed; returns
    how many changed. All providers unless ``provider_ids`` names some."""
    now = now or timezone.now()
    providers = Provider.objects.all() if provider_ids is None else Provider.objects.filter(pk__in=provider_ids)
    records = reputation_records(provider_ids=provider_ids, now=now)
    changed = {}
    for provider_id, current in providers.values_list("pk", "reputation"):
        score = reputation.score(records[provider_id])
        if score != current:
            changed[provider_id] = score
    update_column(Provider, "reputation", changed)
    return len(changed)


# --- hardware attestation --------------------------------------------------------------------------
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
