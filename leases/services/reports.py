"""What the provider's agent reports of its leases: the manifest it runs, the state it sees
(deploying, running with endpoints, failed), the tail of the workload's logs, and signed usage."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chain.models import Wallet
from core import realtime
from core.errors import Conflict, DomainError, NotAllowed, NotFound, ValidationFailed
from core.models import User
from core.validation import MAX_ID
from leases import states
from leases.events import lease_changed
from leases.models import Lease, LeaseLog, UsageReport
from leases.services.lifecycle import lease_close_by
from protocol import usage

logger = logging.getLogger(__name__)


def lease_for_provider(*, user: User, lease_id: int) -> Lease:
    lease = (
        Lease.objects.select_related("order", "gpu_model", "provider").filter(pk=lease_id, provider__user=user).first()
    )
    if lease is None:
        raise NotFound("No such lease.")
    return lease


def lease_manifest(*, user: User, lease_id: int) -> Lease:
    """The lease its provider should run: only while there is something to run."""
    lease = lease_for_provider(user=user, lease_id=lease_id)
    if lease.status not in states.RUNNABLE:
        raise Conflict(f"The lease is {lease.status}: there is nothing to run.", code="lease_not_deployable")
    return lease


def lease_report_status(
    *,
    user: User,
    lease_id: int,
    status: str,
    endpoints: list[str] | None = None,
    reason: str = "",
    cause: str = Lease.FailureCause.PROVIDER,
) -> Lease:
    """The provider's agent moves a lease: deploying, running (with endpoints), or failed.

    A failed lease is closed at once and earns nothing more: its client gets back all of the deposit
    that settlements of reported usage did not already pay. The failure's ``cause`` (the client's
    workload, or the provider) decides whether it counts against the provider's reliability
    (``trust.selectors.reputation_records``); the reason is said once, as the close's reason.
    """
    lease = lease_for_provider(user=user, lease_id=lease_id)
    allowed_from = states.PROVIDER_REPORTS.get(status)
    if allowed_from is None:
        raise Conflict(f"A provider cannot set a lease to {status}.", code="illegal_transition")
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        if lease.status not in allowed_from:
            raise Conflict(f"The lease is {lease.status}; it cannot become {status}.", code="illegal_transition")
        if status == Lease.Status.FAILED:
            lease.status_reason = ""  # the close's reason says it
            lease.failure_cause = cause
            lease.save(update_fields=["status_reason", "failure_cause"])
            return lease_close_by(
                lease_id=lease.pk,
                closed_by=Lease.ClosedBy.PROVIDER,
                reason=f"the deployment failed: {reason}",
                nothing_earned=True,
            )
        lease.status_reason = reason[:500]
        if endpoints is not None:
            lease.endpoints = endpoints
        if status == lease.status:  # the same state again: new endpoints or a new word on it
            lease.save(update_fields=["status_reason", "endpoints"])
            lease_changed(lease)
        else:
            states.lease_transition(lease, status, fields=["status_reason", "endpoints"])
    return lease


MAX_LOG_BYTES = 64_000


def lease_logs_put(*, user: User, lease_id: int, text: object) -> LeaseLog:
    """The provider's agent replaces the lease's log tail (at most ``MAX_LOG_BYTES``) until the lease
    closes; the lease page hears of it."""
    if not isinstance(text, str):
        raise ValidationFailed("Invalid log.", fields={"text": ["The log tail, as text."]})
    text = text.replace("\x00", "")
    if len(text.encode()) > MAX_LOG_BYTES:
        raise ValidationFailed(
            "The log tail is too long.", code="logs_too_large", fields={"text": [f"At most {MAX_LOG_BYTES} bytes."]}
        )
    lease = lease_for_provider(user=user, lease_id=lease_id)
    if lease.status == Lease.Status.CLOSED:
        raise Conflict("The lease is closed.", code="lease_closed")
    log, _ = LeaseLog.objects.update_or_create(lease=lease, defaults={"text": text})
    realtime.publish(realtime.lease_group(lease.pk), {"type": "lease.logs", "lease": lease.pk})
    return log


LOGS_WATCH_SECONDS = 90  # the agent streams a watched lease's log this long after it was asked
LOGS_WATCH_REPEAT_SECONDS = 30  # a page asks again at most this often


def lease_logs_watch(*, lease: Lease) -> bool:
    """Someone is reading the lease's logs: ask its provider's agent to stream them (send the tail
    every couple of seconds while it changes) for the next ``LOGS_WATCH_SECONDS``. At most once
    per ``LOGS_WATCH_REPEAT_SECONDS`` a lease, however many pages read. True when it asked."""
    if lease.status not in states.SETTLING:
        return False
    try:
        first = cache.add(f"lease-logs-watch:{lease.pk}", 1, timeout=LOGS_WATCH_REPEAT_SECONDS)
    except Exception:  # noqa: BLE001 - the cache down (Redis): ask anyway, the push is best effort too
        first = True
    if first:
        realtime.publish(
            realtime.provider_group(lease.provider_id),
            {"type": "lease.logs.watch", "lease": lease.pk, "seconds": LOGS_WATCH_SECONDS},
        )
    return bool(first)


USAGE_BATCH_MAX = 500  # reports in one request


@dataclass(frozen=True)
class UsageOutcome:
    """What became of one report of a batch: stored now, stored before (a resend), or refused."""

    lease_id: int
    period_start: int
    report: UsageReport | None = None
    created: bool = False
    error: DomainError | None = None


def usage_report_accept(
    *,
    user: User,
    lease_id: int,
    period_start: int,
    period_end: int,
    gpu_seconds: int,
    run_seconds: int,
    restarts: int,
    signature: str,
    gpu_utilization_pct: float | None = None,
    gpu_memory_mib: int | None = None,
    now: datetime | None = None,
) -> tuple[UsageReport, bool]:
    """Store one signed usage report (see ``usage_reports_accept``); returns (report, created), or
    raises why it was refused."""
    [outcome] = usage_reports_accept(
        user=user,
        reports=[
            {
                "lease": lease_id,
                "period_start": period_start,
                "period_end": period_end,
                "gpu_seconds": gpu_seconds,
                "run_seconds": run_seconds,
                "restarts": restarts,
                "signature": signature,
                "gpu_utilization_pct": gpu_utilization_pct,
                "gpu_memory_mib": gpu_memory_mib,
            }
        ],
        now=now,
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.report is not None
    return outcome.report, outcome.created


def _usage_checked(report: dict, lease: Lease | None, wallets: set[str]) -> tuple[str, DomainError | None]:
    """The checks of one report that need no lock: the lease is the provider's, the numbers fit
    the period, the signature recovers to an address the provider linked. Returns (signer, error)."""
    if lease is None:
        return "", NotFound("No such lease.")
    length = report["period_end"] - report["period_start"]
    if length <= 0:
        return "", ValidationFailed(
            "The period must end after it starts.", fields={"period_end": ["After period_start."]}
        )
    if report["gpu_seconds"] > lease.gpu_count * length:
        return "", ValidationFailed(
            f"{report['gpu_seconds']} GPU-seconds do not fit {lease.gpu_count} GPUs for {length} s.",
            code="usage_exceeds_period",
            fields={"gpu_seconds": [f"At most {lease.gpu_count * length}."]},
        )
    if report["run_seconds"] > length:
        return "", ValidationFailed(
            "The workload cannot run longer than the period.",
            code="usage_exceeds_period",
            fields={"run_seconds": [f"At most {length}."]},
        )
    signed = usage.UsageReport(
        lease=lease.pk,
        period_start=report["period_start"],
        period_end=report["period_end"],
        gpu_seconds=report["gpu_seconds"],
        run_seconds=report["run_seconds"],
        restarts=report["restarts"],
    )
    try:
        signer = usage.signer_of(signed, chain_id=settings.USAGE_SIGNING_CHAIN_ID, signature=report["signature"])
    except ValueError as exc:
        return "", ValidationFailed(
            "Not a valid signature.", code="invalid_signature", fields={"signature": [str(exc)[:200]]}
        )
    if signer not in wallets:
        return "", NotAllowed(
            f"The report is signed by {signer}, which is not linked to your account: link the agent's "
            "signing address as a wallet.",
            code="unknown_signer",
        )
    return signer, None


def usage_reports_accept(*, user: User, reports: list[dict], now: datetime | None = None) -> list[UsageOutcome]:
    """Store signed usage reports from a provider's agent, many leases at once; one outcome per
    report, in the order given.

    A report is refused (its outcome carries the error; the others are stored) unless: its lease
    is the provider's; the signature recovers to an address the provider linked; GPU-seconds fit
    ``GPUs x period`` and running time fits the period; the period lies inside the lease, ends
    no later than now (with ``USAGE_CLOCK_SKEW_SECONDS``) and starts at or after the end of the
    lease's last report (periods only move forward, never overlap). A report sent again (an agent
    retrying after a lost answer) is recognised by its lease, start and signature and returns the
    stored one. Signatures are checked before any lock; one transaction then locks the leases,
    reads each one's last period and inserts the accepted reports in bulk.
    """
    now = now or timezone.now()
    # an id no row can have is no lease of yours (and past 2^63 the database cannot even compare it)
    lease_ids = {int(r["lease"]) for r in reports if 0 < int(r["lease"]) <= MAX_ID}
    leases = {
        lease.pk: lease for lease in Lease.objects.filter(pk__in=lease_ids, provider__user=user).only("pk", "gpu_count")
    }
    wallets = set(Wallet.objects.filter(user_id=user.pk).values_list("address", flat=True))
    outcomes: list[UsageOutcome | None] = [None] * len(reports)
    checked: list[tuple[int, dict, str]] = []  # (position, report, signer) of those that passed
    for position, report in enumerate(reports):
        signer, error = _usage_checked(report, leases.get(int(report["lease"])), wallets)
        if error is not None:
            outcomes[position] = UsageOutcome(int(report["lease"]), report["period_start"], error=error)
        else:
            checked.append((position, report, signer))
    if checked:
        _usage_store(checked, outcomes, now=now)
    return [outcome for outcome in outcomes if outcome is not None]


def _usage_store(checked: list[tuple[int, dict, str]], outcomes: list, *, now: datetime) -> None:
    """Under the leases' locks: the checks that depend on what is stored, then one bulk insert."""
    latest = now + timedelta(seconds=settings.USAGE_CLOCK_SKEW_SECONDS)
    ids = sorted({int(report["lease"]) for _, report, _ in checked})
    starts = {datetime.fromtimestamp(report["period_start"], tz=UTC) for _, report, _ in checked}
    with transaction.atomic():
        last_end = Subquery(
            UsageReport.objects.filter(lease=OuterRef("pk")).order_by("-period_start").values("period_end")[:1]
        )
        leases = {
            lease.pk: lease
            for lease in Lease.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
            .only("pk", "status", "started_at", "closed_at")
            .annotate(last_end=last_end)
        }
        stored = {
            (r.lease_id, r.period_start): r
            for r in UsageReport.objects.filter(lease_id__in=ids, period_start__in=starts)
        }
        new: list[UsageReport] = []
        positions: list[int] = []
        # each lease's reports in period order, so an agent's backlog is taken in one go
        for position, report, signer in sorted(checked, key=lambda c: (int(c[1]["lease"]), c[1]["period_start"])):
            lease = leases[int(report["lease"])]
            start = datetime.fromtimestamp(report["period_start"], tz=UTC)
            end = datetime.fromtimestamp(report["period_end"], tz=UTC)
            error = _usage_refusal(
                lease, start=start, end=end, latest=latest, signature=report["signature"], stored=stored
            )
            if isinstance(error, UsageReport):  # the same report again
                outcomes[position] = UsageOutcome(lease.pk, report["period_start"], report=error)
                continue
            if error is not None:
                outcomes[position] = UsageOutcome(lease.pk, report["period_start"], error=error)
                continue
            row = UsageReport(
                lease=lease,
                period_start=start,
                period_end=end,
                gpu_seconds=report["gpu_seconds"],
                run_seconds=report["run_seconds"],
                restarts=report["restarts"],
                gpu_utilization_pct=report.get("gpu_utilization_pct"),
                gpu_memory_mib=report.get("gpu_memory_mib"),
                signer=signer,
                signature=report["signature"],
                received_at=now,
            )
            stored[(lease.pk, start)] = row
            lease.last_end = end
            new.append(row)
            positions.append(position)
        UsageReport.objects.bulk_create(new)
    for position, row in zip(positions, new, strict=True):
        outcomes[position] = UsageOutcome(row.lease_id, int(row.period_start.timestamp()), report=row, created=True)


def _usage_refusal(
    lease: Lease,
    *,
    start: datetime,
    end: datetime,
    latest: datetime,
    signature: str,
    stored: dict[tuple[int, datetime], UsageReport],
) -> DomainError | UsageReport | None:
    """Why a report cannot be stored now (None: it can), or the stored report it repeats."""
    replay = stored.get((lease.pk, start))
    if replay is not None and replay.signature == signature:
        return replay
    if lease.status not in states.USAGE:
        return Conflict(f"The lease is {lease.status}: it has no usage to report.", code="lease_not_running")
    if start < lease.started_at.replace(microsecond=0):
        return ValidationFailed("The period starts before the lease.", code="usage_outside_lease")
    if lease.closed_at is not None:
        latest = min(latest, lease.closed_at + timedelta(seconds=1))
    if end > latest:
        return ValidationFailed("The period ends after the lease closed or in the future.", code="usage_outside_lease")
    last_end = lease.last_end  # type: ignore[attr-defined]  # annotated by usage_reports_accept's query
    if last_end is not None and start < last_end:
        return Conflict(
            f"The period overlaps the last report, which ended at {int(last_end.timestamp())}.",
            code="usage_overlap",
        )
    return None
