from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.idempotency import idempotent
from core.api.requests import AuthenticatedRequest
from core.permissions import reading_roles
from leases.api.serializers import LeaseSerializer
from marketplace import selectors, services
from marketplace.api.serializers import (
    AcceptSerializer,
    AuthorizationSerializer,
    AuthorizeSerializer,
    BidCreateSerializer,
    BidSerializer,
    BidUpdateSerializer,
    OrderSerializer,
    SignedTermsSerializer,
)
from marketplace.models import Bid, Order
from marketplace.spec import OrderSpecSerializer, SdlTermsSerializer, order_spec
from providers.selectors import provider_for_user

ORDER_EXAMPLE = {
    "name": "llama fine-tune",
    "workload": {
        "image": "ghcr.io/acme/trainer:1.4",
        "command": ["python", "train.py"],
        "args": ["--epochs", "3"],
        "env": [{"name": "HF_TOKEN", "value": "hf_xxx", "secret": True}],
        "ports": [{"port": 8888, "protocol": "tcp"}],
    },
    "resources": {
        "gpu_count": 1,
        "gpu_models": ["h100-sxm-80gb", "h100-pcie-80gb"],
        "cpu_cores": 8,
        "memory_gib": 64,
        "storage_gib": 200,
    },
    "duration_hours": 4,
    "max_price_per_hour": 4000000,
    "bid_window_seconds": 120,
    "pricing_rule": "first_price",
    "verification": "none",
}


class OrderFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Order.Status.choices)

    class Meta:
        model = Order
        fields = ["status"]


class OrderListCreateView(generics.ListAPIView):
    """Your orders. POST a workload spec as JSON, or as a YAML workload file with
    ``Content-Type: application/yaml``; or an Akash SDL file (``deploy.yaml``, version 2.0 or
    2.1) as it is, with what SDL does not say (its duration, a maximum in dollars) as query
    parameters."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["created_at", "deadline", "max_price_per_hour"]

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.orders_listed_for(user=self.request.user, roles=reading_roles(self.request))

    required_role = {"POST": "client"}

    @extend_schema(
        request=OrderSpecSerializer,
        parameters=[SdlTermsSerializer],
        responses={201: OrderSerializer},
        examples=[OpenApiExample("A one-GPU order", value=ORDER_EXAMPLE, request_only=True)],
    )
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        terms = SdlTermsSerializer(data=request.query_params.dict())  # a plain dict: "" is not "not given"
        terms.is_valid(raise_exception=True)
        spec = order_spec(request.data, terms=terms.validated_data)
        order = services.order_create(client=request.user, spec=spec)
        return Response(OrderSerializer(order, context={"request": request}).data, status=status.HTTP_201_CREATED)


class OrderDetailView(generics.RetrieveAPIView):
    request: AuthenticatedRequest  # its permissions let no anonymous caller in
    serializer_class = OrderSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.orders_visible_to(user=self.request.user, roles=reading_roles(self.request))


class OrderCancelView(APIView):
    """Cancel an open order; its bids expire."""

    required_role = "client"

    @extend_schema(request=None, responses=OrderSerializer)
    @idempotent
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        order = services.order_cancel(client=request.user, order_id=pk)
        return Response(OrderSerializer(order, context={"request": request}).data)


class OrderAcceptView(APIView):
    """Accept a bid during the bid window: creates the lease and moves the deposit into escrow.
    402 when your balance cannot cover ``price_per_hour * duration_hours``."""

    required_role = "client"

    @extend_schema(request=AcceptSerializer, responses={201: LeaseSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = AcceptSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        lease = services.order_accept(
            client=request.user,
            order_id=pk,
            bid_id=data["bid"],
            signature=data.get("signature", ""),
            deadline=data.get("deadline"),
        )
        return Response(LeaseSerializer(lease).data, status=status.HTTP_201_CREATED)


class BidTermsView(APIView):
    """What your wallet signs to accept this bid (with the escrow on chain): the EIP-712 message with
    the order, the provider's payee address, the price, the deposit, the duration and a deadline.
    Accept with its signature and deadline."""

    required_role = "client"

    @extend_schema(responses=SignedTermsSerializer)
    def get(self, request: AuthenticatedRequest, pk: int, bid: int) -> Response:
        typed = services.order_bid_terms(client=request.user, order_id=pk, bid_id=bid)
        return Response(SignedTermsSerializer({"typed_data": typed}).data)


class OrderAuthorizationView(APIView):
    """The standing authorization for the deadline's award (with the escrow on chain): GET the
    message your wallet signs (the order's maximum price and deposit, an expiry), POST its signature.
    Without it, an order of a client with a wallet is awarded only by the client's own Accept."""

    required_role = "client"

    @extend_schema(responses=SignedTermsSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        typed = services.order_authorization_terms(client=request.user, order_id=pk)
        return Response(SignedTermsSerializer({"typed_data": typed}).data)

    @extend_schema(request=AuthorizeSerializer, responses=AuthorizationSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = AuthorizeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        order = services.order_authorize(
            client=request.user,
            order_id=pk,
            signature=payload.validated_data["signature"],
            expiry=payload.validated_data["expiry"],
        )
        return Response(AuthorizationSerializer(order.authorization).data)


class OrderBidsView(generics.ListAPIView):
    """Bids on an order: all of them for its owner, your own for a provider. POST to bid."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = BidSerializer
    filter_backends: list = []
    throttle_scope = "bids"  # bids have a budget of their own (settings: bids)

    required_role = {"POST": "provider"}

    def get_queryset(self) -> QuerySet[Bid]:
        roles = reading_roles(self.request)
        order = selectors.order_get_visible(user=self.request.user, roles=roles, order_id=self.kwargs["pk"])
        return (
            selectors.bids_visible_to(user=self.request.user, roles=roles, order=order)
            .select_related("order")
            .order_by("price_per_hour", "created_at", "id")
        )

    @extend_schema(request=BidCreateSerializer, responses={201: BidSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = BidCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        bid = services.bid_place(user=request.user, order_id=pk, **payload.validated_data)
        return Response(BidSerializer(bid).data, status=status.HTTP_201_CREATED)


class BidFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Bid.Status.choices)

    class Meta:
        model = Bid
        fields = ["status"]


class BidListView(generics.ListAPIView):
    """Your bids, newest first (``?status=open`` for the ones still in play)."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    required_role = "provider"
    serializer_class = BidSerializer
    filterset_class = BidFilter

    def get_queryset(self) -> QuerySet[Bid]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Bid.objects.none()
        return selectors.bids_of_provider(provider=provider_for_user(user=self.request.user))


class BidDetailView(APIView):
    """Your bid. PATCH lowers its price while the window is open."""

    required_role = "provider"
    throttle_scope = "bids"

    @extend_schema(responses=BidSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        bid = selectors.bid_get_own(provider=provider_for_user(user=request.user), bid_id=pk)
        return Response(BidSerializer(bid).data)

    @extend_schema(request=BidUpdateSerializer, responses=BidSerializer)
    def patch(self, request: AuthenticatedRequest, pk: int) -> Response:
        selectors.bid_get_own(provider=provider_for_user(user=request.user), bid_id=pk)  # someone else's: 404 first
        payload = BidUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        bid = services.bid_lower(user=request.user, bid_id=pk, **payload.validated_data)
        return Response(BidSerializer(bid).data)


class BidWithdrawView(APIView):
    required_role = "provider"

    @extend_schema(request=None, responses=BidSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        bid = services.bid_withdraw(user=request.user, bid_id=pk)
        return Response(BidSerializer(bid).data)


class ProviderOrderFeedView(generics.ListAPIView):
    """Open orders you could serve now with your free capacity (``my_bid`` shows your open bid)."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = OrderSerializer
    required_role = "provider"
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.open_orders_for_provider(provider=provider_for_user(user=self.request.user))
