from collections.abc import Mapping
from typing import Any, ClassVar

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.filters import StrictBooleanFilter, WholeNumberFilter
from core.api.idempotency import idempotent
from core.api.requests import AuthenticatedRequest
from providers import selectors, services
from providers.api.serializers import (
    GpuModelSerializer,
    InventorySerializer,
    OfferSerializer,
    ProviderMeSerializer,
    ProviderWriteSerializer,
)
from providers.models import Provider, ProviderGpu


class GpuModelListView(generics.ListAPIView):
    """The GPU catalog."""

    serializer_class = GpuModelSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self) -> QuerySet:
        return selectors.gpu_models()


class OfferFilter(filters.FilterSet):
    gpu_model = filters.CharFilter(help_text="A catalog id.")
    min_vram_gib = WholeNumberFilter(min_value=0, max_value=10_000)
    gpu_count = WholeNumberFilter(min_value=1, max_value=64, help_text="At least this many GPUs free.")
    region = filters.CharFilter(max_length=64)
    verified = StrictBooleanFilter()
    min_reputation = WholeNumberFilter(
        min_value=0, max_value=1000, help_text="Providers whose reputation (0 to 1000) is at least this."
    )
    max_price_per_gpu_hour = WholeNumberFilter(
        min_value=1,
        max_value=10**12,
        help_text="Offers asking at most this, in micro-dollars per GPU-hour (1500000 is $1.50).",
    )

    class Meta:
        model = ProviderGpu
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        data = self.form.cleaned_data
        return selectors.offers_list(
            filters=selectors.OfferFilters(
                gpu_model=data.get("gpu_model") or None,
                min_vram_gib=data.get("min_vram_gib"),
                gpu_count=data.get("gpu_count"),
                region=data.get("region") or None,
                verified=data.get("verified"),
                max_price_per_gpu_hour=data.get("max_price_per_gpu_hour"),
                min_reputation=data.get("min_reputation"),
            )
        )


class OfferOrdering(OrderingFilter):
    FIELDS: ClassVar[dict[str, str]] = {
        "price": "price_per_gpu_hour",
        "vram": "gpu_model__vram_gib",
        "available": "available_count",
        "reputation": "provider__reputation",
    }

    def get_valid_fields(
        self, queryset: QuerySet, view: APIView, context: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        return [(field, name) for name, field in self.FIELDS.items()]

    def get_ordering(self, request: Request, queryset: QuerySet, view: APIView) -> list[str]:
        params = request.query_params.get(self.ordering_param)
        if not params:
            return ["price_per_gpu_hour", "-provider__reputation", "id"]
        ordering = []
        for term in params.split(","):
            term = term.strip()
            desc = term.startswith("-")
            field = self.FIELDS.get(term.lstrip("-"))
            if field:
                ordering.append(f"-{field}" if desc else field)
        return [*ordering, "id"] if ordering else ["price_per_gpu_hour", "id"]


class OfferListView(generics.ListAPIView):
    """GPUs that online providers can rent out now. ``ordering``: price, vram, available, reputation
    (prefix ``-`` for descending)."""

    serializer_class = OfferSerializer
    filterset_class = OfferFilter
    filter_backends = [filters.DjangoFilterBackend, OfferOrdering]

    def get_queryset(self) -> QuerySet:
        return selectors.offers_list(filters=selectors.OfferFilters())


class ProviderMeView(APIView):
    """Your provider profile."""

    required_role = "provider"

    @extend_schema(responses=ProviderMeSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        provider = selectors.provider_for_user(user=request.user)
        return Response(ProviderMeSerializer(provider).data)

    @extend_schema(request=ProviderWriteSerializer, responses={201: ProviderMeSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = ProviderWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        provider = services.provider_register(user=request.user, **payload.validated_data)
        return Response(ProviderMeSerializer(provider).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProviderWriteSerializer(partial=True), responses=ProviderMeSerializer)
    def patch(self, request: AuthenticatedRequest) -> Response:
        provider = selectors.provider_for_user(user=request.user)
        payload = ProviderWriteSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        provider = services.provider_update(provider=provider, **payload.validated_data)
        return Response(ProviderMeSerializer(provider).data)


class InventoryView(APIView):
    """What your agent discovered. Each report replaces the last and counts as a heartbeat."""

    required_role = "provider"

    @extend_schema(responses=ProviderMeSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        provider = selectors.provider_for_user(user=request.user)
        return Response(ProviderMeSerializer(provider).data)

    @extend_schema(request=InventorySerializer, responses=ProviderMeSerializer)
    def put(self, request: AuthenticatedRequest) -> Response:
        provider = selectors.provider_for_user(user=request.user)
        payload = InventorySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        provider = services.inventory_report(
            provider=provider,
            gpus=[services.GpuReport(**line) for line in data["gpus"]],
            **_hosts(data),
            nodes=[_node(node) for node in data["nodes"]] if "nodes" in data else None,
            prices=data.get("prices"),
        )
        provider = Provider.objects.prefetch_related("gpus__gpu_model").get(pk=provider.pk)
        return Response(ProviderMeSerializer(provider).data)


def _hosts(data: dict) -> dict[str, services.HostReport]:
    return {label: services.HostReport(**data[label]) for label in services.HOST_RESOURCES}


def _node(data: dict) -> services.NodeReport:
    return services.NodeReport(
        name=data["name"], gpus=[services.GpuReport(**line) for line in data["gpus"]], **_hosts(data)
    )


class HeartbeatView(APIView):
    """A heartbeat without an inventory change."""

    required_role = "provider"

    @extend_schema(request=None, responses={204: None})
    def post(self, request: AuthenticatedRequest) -> Response:
        services.provider_heartbeat(provider=selectors.provider_for_user(user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)
