"""Reads for providers, their inventory and the offers list."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from django.conf import settings
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from core.errors import NotAllowed
from core.models import User
from protocol.catalog import CATALOG_BY_ID
from providers.models import GpuModel, Provider, ProviderGpu


def online_since(now: datetime | None = None) -> datetime:
    """Providers with a heartbeat after this moment are online."""
    return (now or timezone.now()) - timedelta(seconds=settings.PROVIDER_OFFLINE_AFTER_SECONDS)


def provider_is_online(provider: Provider, now: datetime | None = None) -> bool:
    return provider.last_heartbeat_at is not None and provider.last_heartbeat_at >= online_since(now)


def provider_for_user(*, user: User) -> Provider:
    provider = Provider.objects.filter(user=user).order_by().first()
    if provider is None:
        raise NotAllowed(
            "Register a provider profile first (POST /api/v1/providers/me/).",
            code="provider_profile_required",
        )
    return provider


def inventory_by_node(provider: Provider) -> list[dict]:
    """The provider's last report by node, each GPU line with its catalog name."""
    return [
        {
            **node,
            "gpus": [
                {**line, "name": CATALOG_BY_ID[line["model"]].name if line["model"] in CATALOG_BY_ID else line["model"]}
                for line in node["gpus"]
            ],
        }
        for node in provider.nodes
    ]


def gpu_models() -> QuerySet[GpuModel]:
    return GpuModel.objects.all()


def gpu_models_matching(*, ids: list[str] | None = None, min_vram_gib: int | None = None) -> QuerySet[GpuModel]:
    qs = GpuModel.objects.all()
    if ids:
        qs = qs.filter(id__in=ids)
    if min_vram_gib is not None:
        qs = qs.filter(vram_gib__gte=min_vram_gib)
    return qs


def gpu_available_expr() -> Greatest:
    return Greatest(Least(F("free"), F("total") - F("reserved")), Value(0))


def host_available(provider: Provider, *, cpu_cores: int, memory_gib: int, storage_gib: int) -> bool:
    def fits(total: int, free: int, reserved: int, amount: int) -> bool:
        return min(free, total - reserved) >= amount

    return (
        fits(provider.cpu_cores_total, provider.cpu_cores_free, provider.cpu_cores_reserved, cpu_cores)
        and fits(provider.memory_gib_total, provider.memory_gib_free, provider.memory_gib_reserved, memory_gib)
        and fits(provider.storage_gib_total, provider.storage_gib_free, provider.storage_gib_reserved, storage_gib)
    )


@dataclass(frozen=True)
class OfferFilters:
    gpu_model: str | None = None
    min_vram_gib: int | None = None
    gpu_count: int | None = None
    region: str | None = None
    verified: bool | None = None
    max_price_per_gpu_hour: int | None = None  # micro-dollars
    min_reputation: int | None = None  # 0 to 1000


def offers_list(*, filters: OfferFilters) -> QuerySet[ProviderGpu]:
    """What online, active providers can rent out now: one row per provider and GPU model."""
    qs = (
        ProviderGpu.objects.select_related("provider", "gpu_model")
        .annotate(available_count=gpu_available_expr())
        .filter(
            provider__status=Provider.Status.ACTIVE,
            provider__last_heartbeat_at__gte=online_since(),
            available_count__gt=0,
        )
    )
    if filters.gpu_model:
        qs = qs.filter(gpu_model_id=filters.gpu_model)
    if filters.min_vram_gib is not None:
        qs = qs.filter(gpu_model__vram_gib__gte=filters.min_vram_gib)
    if filters.gpu_count is not None:
        qs = qs.filter(available_count__gte=filters.gpu_count)
    if filters.region:
        qs = qs.filter(provider__region__iexact=filters.region)
    if filters.verified is not None:
        qs = qs.filter(verified=filters.verified)
    if filters.max_price_per_gpu_hour is not None:
        qs = qs.filter(price_per_gpu_hour__lte=filters.max_price_per_gpu_hour)
    if filters.min_reputation:
        qs = qs.filter(provider__reputation__gte=filters.min_reputation)
    return qs


def offer_get(*, offer_id: int) -> ProviderGpu | None:
    """One row of the offers list, while it is on offer."""
    return offers_list(filters=OfferFilters()).filter(pk=offer_id).first()


@dataclass(frozen=True)
class OnOffer:
    gpus: int  # free now, across online providers
    lowest_price_per_gpu_hour: int | None  # of the asking prices; None when no provider states one


def models_on_offer() -> dict[str, OnOffer]:
    """Per GPU model on offer now: how many GPUs, and the lowest asking price."""
    by_model: dict[str, OnOffer] = {}
    for offer in offers_list(filters=OfferFilters()):
        seen = by_model.get(offer.gpu_model_id, OnOffer(0, None))
        prices = [p for p in (seen.lowest_price_per_gpu_hour, offer.price_per_gpu_hour) if p]
        by_model[offer.gpu_model_id] = OnOffer(
            seen.gpus + offer.available_count,  # type: ignore[attr-defined]  # annotated by offers_list
            min(prices) if prices else None,
        )
    return by_model


@dataclass(frozen=True)
class ModelGlance:
    gpu_model: GpuModel
    gpus_online: int
    gpus_verified: int  # of those
    median_price_per_gpu_hour: int | None  # of the providers' asking prices

    @property
    def verified_share(self) -> float:
        return self.gpus_verified / self.gpus_online if self.gpus_online else 0.0


def market_at_a_glance() -> list[ModelGlance]:
    """For the landing page: per GPU model, the GPUs online providers can rent out now, their
    median asking price per GPU-hour, and how many of them are verified."""
    by_model: dict[str, list[ProviderGpu]] = {}
    for offer in offers_list(filters=OfferFilters()):
        by_model.setdefault(offer.gpu_model_id, []).append(offer)
    rows = []
    for offers in by_model.values():
        online = sum(o.available_count for o in offers)  # type: ignore[attr-defined]  # annotated by offers_list
        prices = sorted(o.price_per_gpu_hour for o in offers if o.price_per_gpu_hour)
        rows.append(
            ModelGlance(
                gpu_model=offers[0].gpu_model,
                gpus_online=online,
                gpus_verified=sum(o.available_count for o in offers if o.verified),  # type: ignore[attr-defined]  # annotated by offers_list
                median_price_per_gpu_hour=int(median(prices)) if prices else None,
            )
        )
    return sorted(rows, key=lambda r: (-r.gpu_model.vram_gib, r.gpu_model.name))
