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

import logging
import math
import random
from contextlib import suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import queueing
from core.errors import Conflict, NotFound, ValidationFailed
from leases.models import Lease
from protocol.proof import protocol
from providers.models import GpuModel, Provider, ProviderGpu
from providers.services import gpus_unverified, gpus_verified
from trust import tasks
from trust.models import GpuCheck
from trust.selectors import suspended_until
from trust.services.reputation import reputations_update

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
