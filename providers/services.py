"""Writes for providers: the catalog, profiles, inventory reports and capacity reservations."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.errors import Conflict, NotAllowed, ValidationFailed
from core.models import User
from core.validation import check_display_name
from protocol.catalog import CATALOG_BY_ID, GPU_CATALOG, normalize_gpu_name
from providers.models import GpuModel, Provider, ProviderGpu, UptimeDay
from providers.selectors import host_available

MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LENGTH = 128


def gpu_catalog_sync() -> int:
    """Insert or update every catalog entry; returns how many rows were written."""
    count = 0
    for entry in GPU_CATALOG:
        GpuModel.objects.update_or_create(
            id=entry.id,
            defaults={
                "name": entry.name,
                "vendor": entry.vendor,
                "architecture": entry.architecture,
                "vram_gib": entry.vram_gib,
                "memory_type": entry.memory_type,
                "interface": entry.interface,
                "memory_bandwidth_gbps": entry.memory_bandwidth_gbps,
                "int8_tops": entry.int8_tops,
                "bf16_tflops": entry.bf16_tflops,
            },
        )
        count += 1
    return count


def _check_region(region: str) -> str:
    region = check_display_name(region, field="region", max_length=64)
    return region


def _check_attributes(attributes: Any) -> dict[str, str]:
    if not isinstance(attributes, dict):
        raise ValidationFailed("Invalid attributes.", fields={"attributes": ["Must be an object of strings."]})
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValidationFailed("Invalid attributes.", fields={"attributes": [f"At most {MAX_ATTRIBUTES} keys."]})
    clean: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(value, str | int | float | bool):
            raise ValidationFailed("Invalid attributes.", fields={"attributes": [f"{key}: must be a string."]})
        key = check_display_name(str(key), field="attributes", max_length=64)
        clean[key] = check_display_name(
            str(value), field="attributes", max_length=MAX_ATTRIBUTE_LENGTH, allow_empty=True
        )
    return clean


def provider_register(*, user: User, name: str, region: str, attributes: dict | None = None) -> Provider:
    if not user.is_provider:
        raise NotAllowed("This account does not have the provider role.", code="role_required")
    if Provider.objects.filter(user=user).exists():
        raise Conflict("This account already has a provider profile.", code="provider_exists")
    with transaction.atomic():
        return Provider.objects.create(
            user=user,
            name=check_display_name(name, field="name"),
            region=_check_region(region),
            attributes=_check_attributes(attributes or {}),
        )


def provider_update(*, provider: Provider, **changes: Any) -> Provider:
    fields = []
    if "name" in changes:
        provider.name = check_display_name(changes["name"], field="name")
        fields.append("name")
    if "region" in changes:
        provider.region = _check_region(changes["region"])
        fields.append("region")
    if "attributes" in changes:
        provider.attributes = _check_attributes(changes["attributes"])
        fields.append("attributes")
    if fields:
        provider.save(update_fields=[*fields, "updated_at"])
    return provider


@dataclass(frozen=True)
class GpuReport:
    model: str  # a catalog id, or a name as NVML / Kubernetes labels report it
    total: int
    free: int
    memory_mib: int | None = None
    price_per_gpu_hour: int | None = None


@dataclass(frozen=True)
class HostReport:
    total: int
    free: int


@dataclass(frozen=True)
class NodeReport:
    """One machine of the provider (a Docker host, a Kubernetes node) and what it holds."""

    name: str
    gpus: list[GpuReport]
    cpu_cores: HostReport
    memory_gib: HostReport
    storage_gib: HostReport


HOST_RESOURCES = ("cpu_cores", "memory_gib", "storage_gib")


def _errors_at(path: tuple[str, ...], errors: dict) -> dict:
    """Field errors nested under ``path``: ``("nodes", "0", "gpus", "1")`` → ``{"nodes": {"0": …}}``."""
    for key in reversed(path):
        errors = {key: errors}
    return errors


def _resolve_model(report: GpuReport, path: tuple[str, ...]) -> str:
    if report.model in CATALOG_BY_ID:
        return report.model
    model_id = normalize_gpu_name(report.model, report.memory_mib)
    if model_id is None:
        raise ValidationFailed(
            "Unknown GPU model.",
            code="unknown_gpu_model",
            fields=_errors_at(path, {"model": [f"{report.model!r} is not in the GPU catalog."]}),
        )
    return model_id


def _gpu_lines(gpus: list[GpuReport], *, path: tuple[str, ...]) -> dict[str, GpuReport]:
    """The lines by catalog model (lines of one model added up); free must not exceed total."""
    by_model: dict[str, GpuReport] = {}
    for index, report in enumerate(gpus):
        model_id = _resolve_model(report, (*path, str(index)))
        if report.free > report.total:
            raise ValidationFailed(
                "Free GPUs exceed total.", fields=_errors_at((*path, str(index)), {"free": ["Must be at most total."]})
            )
        if model_id in by_model:
            previous = by_model[model_id]
            report = GpuReport(
                model=model_id,
                total=previous.total + report.total,
                free=previous.free + report.free,
                price_per_gpu_hour=report.price_per_gpu_hour or previous.price_per_gpu_hour,
            )
        by_model[model_id] = report
    return by_model


def _hosts(hosts: dict[str, HostReport], *, path: tuple[str, ...]) -> None:
    for label, host in hosts.items():
        if host.free > host.total:
            raise ValidationFailed(
                "Free exceeds total.", fields=_errors_at((*path, label), {"free": ["Must be at most total."]})
            )


def _nodes(
    nodes: list[NodeReport], *, by_model: dict[str, GpuReport], hosts: dict[str, HostReport]
) -> list[dict[str, Any]]:
    """Each node checked, and together equal to the provider's totals: what is stored and shown."""
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        raise ValidationFailed(
            "Node names must be unique.", code="inventory_mismatch", fields={"nodes": ["Each node once."]}
        )
    stored = []
    gpu_sums: dict[str, list[int]] = {}
    host_sums = {label: [0, 0] for label in HOST_RESOURCES}
    for index, node in enumerate(nodes):
        lines = _gpu_lines(node.gpus, path=("nodes", str(index), "gpus"))
        node_hosts = {label: getattr(node, label) for label in HOST_RESOURCES}
        _hosts(node_hosts, path=("nodes", str(index)))
        for model_id, line in lines.items():
            sums = gpu_sums.setdefault(model_id, [0, 0])
            sums[0] += line.total
            sums[1] += line.free
        for label, host in node_hosts.items():
            host_sums[label][0] += host.total
            host_sums[label][1] += host.free
        stored.append(
            {
                "name": node.name,
                "gpus": [{"model": m, "total": line.total, "free": line.free} for m, line in sorted(lines.items())],
                **{label: {"total": h.total, "free": h.free} for label, h in node_hosts.items()},
            }
        )
    reported = {model_id: [line.total, line.free] for model_id, line in by_model.items() if line.total}
    if {m: v for m, v in gpu_sums.items() if v[0]} != reported:
        raise ValidationFailed(
            "The nodes' GPUs do not add up to the GPUs reported.",
            code="inventory_mismatch",
            fields={"nodes": ["Per model, the nodes' total and free GPUs must add up to `gpus`."]},
        )
    for label, (total, free) in host_sums.items():
        if [hosts[label].total, hosts[label].free] != [total, free]:
            raise ValidationFailed(
                f"The nodes' {label} do not add up to the {label} reported.",
                code="inventory_mismatch",
                fields={"nodes": [f"The nodes' total and free `{label}` must add up to `{label}`."]},
            )
    return stored


def _prices(prices: dict[str, int]) -> dict[str, int]:
    unknown = sorted(model for model in prices if model not in CATALOG_BY_ID)
    if unknown:
        raise ValidationFailed(
            "Prices are by catalog id.",
            code="unknown_gpu_model",
            fields={"prices": {model: [f"{model!r} is not a catalog id."] for model in unknown}},
        )
    return prices


def inventory_report(
    *,
    provider: Provider,
    gpus: list[GpuReport],
    cpu_cores: HostReport,
    memory_gib: HostReport,
    storage_gib: HostReport,
    nodes: list[NodeReport] | None = None,
    prices: dict[str, int] | None = None,
) -> Provider:
    """Replace the provider's inventory with what its agent discovered; counts as a heartbeat.

    ``nodes``, when given, say where the GPUs are and must add up to the totals; ``prices`` are
    asking prices per GPU-hour by catalog id, for lines that carry none of their own. Models
    missing from the report drop to zero GPUs; their rows stay while leases reserve them.
    """
    by_model = _gpu_lines(gpus, path=("gpus",))
    hosts = {"cpu_cores": cpu_cores, "memory_gib": memory_gib, "storage_gib": storage_gib}
    _hosts(hosts, path=())
    stored_nodes = _nodes(nodes, by_model=by_model, hosts=hosts) if nodes is not None else []
    asking = _prices(prices or {})
    by_model = {
        model_id: GpuReport(
            model=model_id,
            total=line.total,
            free=line.free,
            price_per_gpu_hour=line.price_per_gpu_hour or asking.get(model_id),
        )
        for model_id, line in by_model.items()
    }

    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        existing = {row.gpu_model_id: row for row in ProviderGpu.objects.select_for_update().filter(provider=provider)}
        for model_id, report in by_model.items():
            row = existing.pop(model_id, None)
            if row is None:
                ProviderGpu.objects.create(
                    provider=provider,
                    gpu_model_id=model_id,
                    total=report.total,
                    free=report.free,
                    price_per_gpu_hour=report.price_per_gpu_hour,
                )
            else:
                row.total, row.free = report.total, report.free
                row.price_per_gpu_hour = report.price_per_gpu_hour
                row.save(update_fields=["total", "free", "price_per_gpu_hour", "updated_at"])
        for row in existing.values():
            if row.reserved:
                row.total = row.free = 0
                row.save(update_fields=["total", "free", "updated_at"])
            else:
                row.delete()
        provider.cpu_cores_total, provider.cpu_cores_free = cpu_cores.total, cpu_cores.free
        provider.memory_gib_total, provider.memory_gib_free = memory_gib.total, memory_gib.free
        provider.storage_gib_total, provider.storage_gib_free = storage_gib.total, storage_gib.free
        provider.nodes = stored_nodes
        now = timezone.now()
        _uptime_add(provider.pk, since=provider.last_heartbeat_at, now=now)
        provider.last_heartbeat_at = now
        provider.save()
    return provider


def _uptime_add(provider_id: int, *, since: datetime | None, now: datetime) -> None:
    """Count the time since the previous heartbeat as online, if it came recently enough."""
    if since is None:
        return
    gap = int((now - since).total_seconds())
    if not 0 < gap <= settings.PROVIDER_OFFLINE_AFTER_SECONDS:
        return
    day = now.astimezone(UTC).date()
    if UptimeDay.objects.filter(provider_id=provider_id, day=day).update(online_seconds=F("online_seconds") + gap):
        return
    try:
        with transaction.atomic():
            UptimeDay.objects.create(provider_id=provider_id, day=day, online_seconds=gap)
    except IntegrityError:  # created meanwhile by another heartbeat
        UptimeDay.objects.filter(provider_id=provider_id, day=day).update(online_seconds=F("online_seconds") + gap)


def gpus_verified(*, provider_id: int, gpu_model_id: str, int8_tops: float, now: datetime) -> int:
    """A passed proof-of-GPU check: the provider's GPUs of the model are verified at that speed."""
    return ProviderGpu.objects.filter(provider_id=provider_id, gpu_model_id=gpu_model_id).update(
        verified=True, verified_at=now, verified_int8_tops=int8_tops, updated_at=now
    )


def gpus_unverified(*, provider_id: int, now: datetime) -> int:
    """A failed check: every GPU of the provider loses its verification (and attestation), so it
    cannot win orders that require verified GPUs until checks pass again."""
    return ProviderGpu.objects.filter(provider_id=provider_id).update(
        verified=False, attested_until=None, updated_at=now
    )


def gpus_attested(*, provider_id: int, gpu_model_id: str, until: datetime, now: datetime) -> int:
    """A verified hardware attestation: the provider's GPUs of the model are attested until then."""
    return ProviderGpu.objects.filter(provider_id=provider_id, gpu_model_id=gpu_model_id).update(
        attested_until=until, updated_at=now
    )


def provider_heartbeat(*, provider: Provider) -> Provider:
    now = timezone.now()
    _uptime_add(provider.pk, since=provider.last_heartbeat_at, now=now)
    Provider.objects.filter(pk=provider.pk).update(last_heartbeat_at=now)
    provider.last_heartbeat_at = now
    return provider


@dataclass(frozen=True)
class Reservation:
    provider_id: int
    gpu_model_id: str
    gpu_count: int
    cpu_cores: int
    memory_gib: int
    storage_gib: int


def capacity_reserve(*, reservation: Reservation) -> None:
    """Hold GPUs and host resources for an awarded lease. Call inside the award transaction.

    Locks the provider row, then its GPU row (the fixed order every writer uses).
    """
    r = reservation
    provider = Provider.objects.select_for_update().get(pk=r.provider_id)
    gpu = ProviderGpu.objects.select_for_update().filter(provider_id=r.provider_id, gpu_model_id=r.gpu_model_id).first()
    if (
        gpu is None
        or gpu.available < r.gpu_count
        or not host_available(provider, cpu_cores=r.cpu_cores, memory_gib=r.memory_gib, storage_gib=r.storage_gib)
    ):
        raise Conflict("The provider no longer has free capacity for this order.", code="insufficient_capacity")
    ProviderGpu.objects.filter(pk=gpu.pk).update(reserved=F("reserved") + r.gpu_count)
    Provider.objects.filter(pk=provider.pk).update(
        cpu_cores_reserved=F("cpu_cores_reserved") + r.cpu_cores,
        memory_gib_reserved=F("memory_gib_reserved") + r.memory_gib,
        storage_gib_reserved=F("storage_gib_reserved") + r.storage_gib,
    )


def capacity_release(*, reservation: Reservation) -> None:
    """Give back what ``capacity_reserve`` held (a closed lease). Never goes below zero."""
    r = reservation
    provider = Provider.objects.select_for_update().get(pk=r.provider_id)
    gpu = ProviderGpu.objects.select_for_update().filter(provider_id=r.provider_id, gpu_model_id=r.gpu_model_id).first()
    if gpu is not None:
        gpu.reserved = max(0, gpu.reserved - r.gpu_count)
        gpu.save(update_fields=["reserved", "updated_at"])
    provider.cpu_cores_reserved = max(0, provider.cpu_cores_reserved - r.cpu_cores)
    provider.memory_gib_reserved = max(0, provider.memory_gib_reserved - r.memory_gib)
    provider.storage_gib_reserved = max(0, provider.storage_gib_reserved - r.storage_gib)
    provider.save(update_fields=["cpu_cores_reserved", "memory_gib_reserved", "storage_gib_reserved", "updated_at"])
