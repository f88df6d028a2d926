from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.idempotency import idempotent
from core.api.requests import AuthenticatedRequest
from payments import selectors, services
from payments.api.serializers import (
    CardTopUpSerializer,
    DemoCreditCreateSerializer,
    DemoCreditSerializer,
    TopUpCreatedSerializer,
    TopUpCreateSerializer,
)
from payments.models import CardTopUp


class TopUpListView(generics.ListAPIView):
    """Your card top-ups. POST starts one: confirm it on the page with the client secret."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    required_role = {"POST": "client"}
    serializer_class = CardTopUpSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[CardTopUp]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return CardTopUp.objects.none()
        return selectors.top_ups_for(user=self.request.user)

    @extend_schema(request=TopUpCreateSerializer, responses={201: TopUpCreatedSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = TopUpCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        top_up, client_secret = services.top_up_create(
            user=request.user,
            amount_cents=payload.validated_data["amount_cents"],
            idempotency_key=request.headers.get("Idempotency-Key", "")[:200],
        )
        data = {
            **CardTopUpSerializer(top_up).data,
            "client_secret": client_secret,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        }
        return Response(data, status=status.HTTP_201_CREATED)


class TopUpDetailView(APIView):
    @extend_schema(responses=CardTopUpSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        return Response(CardTopUpSerializer(selectors.top_up_get(user=request.user, top_up_id=pk)).data)


class DemoCreditView(APIView):
    """Demo credit: money added to your balance with no card, on demonstration servers only
    (``DEMO_CREDIT_CENTS`` per account). GET says how much is left."""

    required_role = {"POST": "client"}

    @extend_schema(responses=DemoCreditSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response({"left_cents": services.demo_credit_left(user=request.user)})

    @extend_schema(request=DemoCreditCreateSerializer, responses={201: DemoCreditSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = DemoCreditCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        cents = payload.validated_data["amount_cents"]
        services.demo_credit_add(user=request.user, amount_cents=cents)
        data = {"credited_cents": cents, "left_cents": services.demo_credit_left(user=request.user)}
        return Response(data, status=status.HTTP_201_CREATED)


class StripeWebhookView(APIView):
    """Stripe's events. Authenticated by their signature, not by a token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(request=None, responses={200: None})
    def post(self, request: Request) -> Response:
        outcome = services.stripe_event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
        return Response({"received": True, "outcome": outcome})
