from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import acting_roles, reading_roles
from leases import selectors, services
from leases.api.serializers import (
    AccountSerializer,
    LeaseCloseSerializer,
    LeaseSerializer,
    LedgerEntrySerializer,
    ManifestSerializer,
    StatusReportSerializer,
    UsageReportSerializer,
    UsageReportWriteSerializer,
)
from leases.models import Lease, LedgerAccount, LedgerEntry, LedgerTransaction, UsageReport


class LeaseFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Lease.Status.choices)

    class Meta:
        model = Lease
        fields = ["status"]


class LeaseListView(generics.ListAPIView):
    """Your leases: as a client, the ones you rent; as a provider, the ones you serve."""

    serializer_class = LeaseSerializer
    filterset_class = LeaseFilter
    ordering_fields = ["created_at", "price_per_hour"]

    def get_queryset(self) -> QuerySet[Lease]:
        return selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))


class LeaseDetailView(generics.RetrieveAPIView):
    serializer_class = LeaseSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Lease]:
        return selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))


class LeaseCloseView(APIView):
    """Close a lease (client or provider): the provider is paid for the time elapsed, the rest of
    the deposit is refunded to the client."""

    @extend_schema(request=LeaseCloseSerializer, responses=LeaseSerializer)
    def post(self, request: Request, pk: int) -> Response:
        payload = LeaseCloseSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        lease = services.lease_close(
            user=request.user, lease_id=pk, roles=acting_roles(request), reason=payload.validated_data.get("reason", "")
        )
        return Response(LeaseSerializer(lease).data)


class AccountView(APIView):
    """Your balance, what is held in escrow for your leases, and your earnings as a provider."""

    @extend_schema(responses=AccountSerializer)
    def get(self, request: Request) -> Response:
        summary = selectors.account_summary(user=request.user)
        data = {
            "username": request.user.username,
            "roles": request.user.roles,
            "balance": summary.balance,
            "in_escrow": summary.in_escrow,
            "earnings": summary.earnings,
        }
        return Response(AccountSerializer(data).data)


class LedgerFilter(filters.FilterSet):
    account = filters.ChoiceFilter(
        field_name="account__kind",
        choices=[
            (LedgerAccount.Kind.CLIENT_BALANCE, "client_balance"),
            (LedgerAccount.Kind.PROVIDER_EARNINGS, "provider_earnings"),
        ],
    )
    kind = filters.ChoiceFilter(field_name="transaction__kind", choices=LedgerTransaction.Kind.choices)
    lease = filters.NumberFilter(field_name="transaction__lease_id")


class LedgerView(generics.ListAPIView):
    """Every movement on your balance and earnings, newest first."""

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerFilter
    ordering_fields: list[str] = []

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return LedgerEntry.objects.none()
        return selectors.ledger_for_user(user=self.request.user)


class LeaseManifestView(APIView):
    """What to run for this lease, secret environment values included: its provider only."""

    required_role = "provider"

    @extend_schema(responses=ManifestSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(ManifestSerializer(services.lease_manifest(user=request.user, lease_id=pk)).data)


class LeaseStatusView(APIView):
    """The provider's agent reports deploying, running (with endpoints) or failed (with a reason;
    the client is refunded in full)."""

    required_role = "provider"

    @extend_schema(request=StatusReportSerializer, responses=LeaseSerializer)
    def post(self, request: Request, pk: int) -> Response:
        payload = StatusReportSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        lease = services.lease_report_status(user=request.user, lease_id=pk, **payload.validated_data)
        return Response(LeaseSerializer(lease).data)


class LeaseUsageView(generics.ListAPIView):
    """Signed usage reports: the lease's provider sends them (POST); client and provider read them."""

    required_role = {"POST": "provider"}
    serializer_class = UsageReportSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[UsageReport]:
        visible = selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))
        lease = generics.get_object_or_404(visible, pk=self.kwargs["pk"])
        return selectors.usage_reports_for(lease=lease)

    @extend_schema(
        request=UsageReportWriteSerializer, responses={201: UsageReportSerializer, 200: UsageReportSerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        payload = UsageReportWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        report, created = services.usage_report_accept(user=request.user, lease_id=pk, **payload.validated_data)
        return Response(
            UsageReportSerializer(report).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
