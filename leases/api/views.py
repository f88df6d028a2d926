from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.idempotency import idempotent
from core.api.renderers import CSVRenderer, csv_attachment
from core.api.requests import AuthenticatedRequest
from core.money import usd_decimal
from core.permissions import acting_roles, reading_roles
from leases import selectors, services
from leases.api.serializers import (
    AccountSerializer,
    LeaseCloseSerializer,
    LeaseLogSerializer,
    LeaseSerializer,
    LeaseStatementSerializer,
    LeaseTopUpSerializer,
    LeaseTopUpWriteSerializer,
    LeaseUpdateSerializer,
    ManifestSerializer,
    ProviderEarningsSerializer,
    ShellSessionSerializer,
    StatusReportSerializer,
    UsageBatchResultSerializer,
    UsageBatchSerializer,
    UsageReportSerializer,
    UsageReportWriteSerializer,
)
from leases.models import Lease, LeaseTopUp, ShellSession, UsageReport


class LeaseFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Lease.Status.choices)

    class Meta:
        model = Lease
        fields = ["status"]


class LeaseListView(generics.ListAPIView):
    """Your leases: as a client, the ones you rent; as a provider, the ones you serve."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = LeaseSerializer
    filterset_class = LeaseFilter
    ordering_fields = ["created_at", "price_per_hour"]

    def get_queryset(self) -> QuerySet[Lease]:
        return selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))


class LeaseDetailView(generics.RetrieveAPIView):
    """A lease; its client may change its automatic top-up limit (PATCH)."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = LeaseSerializer
    filter_backends: list = []
    required_role = {"PATCH": "client"}

    def get_queryset(self) -> QuerySet[Lease]:
        return selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))

    @extend_schema(request=LeaseUpdateSerializer, responses=LeaseSerializer)
    def patch(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = LeaseUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.lease_auto_top_up_set(
            user=request.user, lease_id=pk, limit=payload.validated_data["auto_top_up_limit"]
        )
        return Response(LeaseSerializer(self.get_queryset().get(pk=pk)).data)


class LeaseTopUpView(generics.ListAPIView):
    """Top-ups of a lease: its client adds to the deposit from its balance (POST; the lease runs
    longer, and one waiting in its grace period resumes); client and provider read them."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    required_role = {"POST": "client"}
    serializer_class = LeaseTopUpSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[LeaseTopUp]:
        visible = selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))
        lease = generics.get_object_or_404(visible, pk=self.kwargs["pk"])
        return LeaseTopUp.objects.filter(lease=lease).order_by("-created_at", "-id")

    @extend_schema(request=LeaseTopUpWriteSerializer, responses={201: LeaseTopUpSerializer, 202: LeaseTopUpSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = LeaseTopUpWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        top_up = services.lease_top_up(user=request.user, lease_id=pk, amount=payload.validated_data["amount"])
        pending = top_up.status == LeaseTopUp.Status.PENDING
        return Response(
            LeaseTopUpSerializer(top_up).data, status=status.HTTP_202_ACCEPTED if pending else status.HTTP_201_CREATED
        )


class LeaseCloseView(APIView):
    """Close a lease (client or provider): the provider is paid for the time elapsed, the rest of
    the deposit is refunded to the client."""

    @extend_schema(request=LeaseCloseSerializer, responses=LeaseSerializer)
    @idempotent
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = LeaseCloseSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        lease = services.lease_close(
            user=request.user, lease_id=pk, roles=acting_roles(request), reason=payload.validated_data.get("reason", "")
        )
        return Response(LeaseSerializer(lease).data)


class AccountView(APIView):
    """Your balance, what is held in escrow for your leases, and your earnings as a provider."""

    @extend_schema(responses=AccountSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        summary = selectors.account_summary(user=request.user)
        data = {
            "username": request.user.username,
            "roles": request.user.roles,
            "balance": summary.balance,
            "in_escrow": summary.in_escrow,
            "earnings": summary.earnings,
        }
        return Response(AccountSerializer(data).data)


class LeaseManifestView(APIView):
    """What to run for this lease, secret environment values included: its provider only."""

    required_role = "provider"

    @extend_schema(responses=ManifestSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        return Response(ManifestSerializer(services.lease_manifest(user=request.user, lease_id=pk)).data)


class LeaseStatusView(APIView):
    """The provider's agent reports deploying, running (with endpoints) or failed (with a reason;
    the client is refunded in full)."""

    required_role = "provider"

    @extend_schema(request=StatusReportSerializer, responses=LeaseSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = StatusReportSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        lease = services.lease_report_status(user=request.user, lease_id=pk, **payload.validated_data)
        return Response(LeaseSerializer(lease).data)


class LeaseLogsView(APIView):
    """The tail of the workload's log: the lease's provider's agent replaces it (PUT, at most 64,000
    bytes, until the lease closes); its client and provider read it."""

    required_role = {"PUT": "provider"}

    @extend_schema(responses=LeaseLogSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        visible = selectors.leases_visible_to(user=request.user, roles=reading_roles(request))
        lease = generics.get_object_or_404(visible, pk=pk)
        if lease.client_id == request.user.pk:  # its client reads: the agent streams a while (``logs -f``)
            services.lease_logs_watch(lease=lease)
        return Response(selectors.lease_log(lease=lease))

    @extend_schema(request=LeaseLogSerializer, responses=LeaseLogSerializer)
    def put(self, request: AuthenticatedRequest, pk: int) -> Response:
        text = request.data.get("text") if isinstance(request.data, dict) else None
        log = services.lease_logs_put(user=request.user, lease_id=pk, text=text)
        return Response({"text": log.text, "updated_at": log.updated_at})


class LeaseUsageView(generics.ListAPIView):
    """Signed usage reports: the lease's provider sends them (POST); client and provider read them."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

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
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = UsageReportWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        report, created = services.usage_report_accept(user=request.user, lease_id=pk, **payload.validated_data)
        return Response(
            UsageReportSerializer(report).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class LeaseShellSessionsView(generics.ListAPIView):
    """The shells opened into the lease from the browser, newest first: who, when and for how long
    (never what was typed or shown). The client opens them at ``wss://<host>/ws/leases/{id}/shell/``;
    its client and its provider read the list."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = ShellSessionSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[ShellSession]:
        visible = selectors.leases_visible_to(user=self.request.user, roles=reading_roles(self.request))
        return selectors.lease_shell_sessions(generics.get_object_or_404(visible, pk=self.kwargs["pk"]))


class UsageBatchView(APIView):
    """Signed usage reports of any of your leases, up to 500 in one request (what the agent's
    outbox sends). Each report is taken or refused on its own, with the checks and errors of
    ``POST /leases/{id}/usage/``: the answer has one result per report, in the order sent.
    Sending a report again is safe: it comes back as a duplicate."""

    required_role = "provider"

    @extend_schema(request=UsageBatchSerializer, responses=UsageBatchResultSerializer)
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = UsageBatchSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        outcomes = services.usage_reports_accept(user=request.user, reports=payload.validated_data["reports"])
        rejected = sum(1 for o in outcomes if o.error is not None)
        created = sum(1 for o in outcomes if o.created)
        body = {
            "created": created,
            "duplicates": len(outcomes) - created - rejected,
            "rejected": rejected,
            "results": outcomes,
        }
        return Response(UsageBatchResultSerializer(body).data)


class LeaseStatementView(APIView):
    """The lease's statement: periods of reported usage, what each is worth, what was paid and
    refunded. ``?format=csv`` for a spreadsheet."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(responses=LeaseStatementSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        lease = generics.get_object_or_404(
            selectors.leases_visible_to(user=request.user, roles=reading_roles(request)), pk=pk
        )
        statement = selectors.lease_statement(lease=lease)
        if request.accepted_renderer.format != "csv":
            return Response(LeaseStatementSerializer(statement).data)
        # dollars for people; the exact micro-dollars (the API's unit) in the last two columns
        rows: list[list] = [
            [
                "period_start",
                "period_end",
                "run_seconds",
                "gpu_hours",
                "price_per_hour_usd",
                "amount_usd",
                "price_per_hour_micro_usd",
                "amount_micro_usd",
            ]
        ]

        def money(label: str, amount: int, *, price: int | None = None) -> list:
            return [label, "", "", "", *_usd_pair(price, amount)]

        for p in statement.periods:
            rows.append(
                [
                    p.period_start.isoformat(),
                    p.period_end.isoformat(),
                    p.run_seconds,
                    f"{p.gpu_seconds / 3600:.4f}",
                    *_usd_pair(lease.price_per_hour, p.amount),
                ]
            )
        rows += [
            [
                "total",
                "",
                statement.run_seconds,
                f"{statement.gpu_seconds / 3600:.4f}",
                *_usd_pair(None, statement.usage_amount),
            ],
            money("paid_to_provider", statement.paid_to_provider or statement.settled),
            money(f"of_which_platform_fee_{lease.platform_fee_bps}_bps", statement.platform_fee),
            money("refunded_to_client", statement.refunded_to_client),
            # the terms the escrow holds the lease to
            money("deposit", lease.deposit, price=lease.price_per_hour),
            [
                "escrow_payer" + ("_custody" if lease.held_in_custody else ""),
                lease.escrow_payer,
                "",
                "",
                "",
                "",
                "",
                "",
            ],
            ["escrow_payee", lease.escrow_payee, "", "", "", "", "", ""],
            ["open_tx_hash", lease.open_tx_hash, "", "", "", "", "", ""],
        ]
        return csv_attachment(rows, f"lease-{lease.pk}-statement.csv")


def _usd_pair(price: int | None, amount: int) -> list:
    """A price and an amount in dollars, then the same in micro-dollars."""
    return [
        "" if price is None else usd_decimal(price),
        usd_decimal(amount),
        "" if price is None else price,
        amount,
    ]


class ProviderEarningsView(APIView):
    """Your earnings as a provider: accrued, earned, claimed and claimable, and per recent lease.
    Claim on chain with the escrow contract's ``claim()`` from your linked wallet."""

    required_role = "provider"

    @extend_schema(responses=ProviderEarningsSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(ProviderEarningsSerializer(selectors.provider_earnings(user=request.user)).data)
