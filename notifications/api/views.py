from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.requests import AuthenticatedRequest
from notifications import selectors, services
from notifications.api.serializers import (
    NotificationSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSecretSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointWriteSerializer,
)
from notifications.models import Notification, WebhookDelivery, WebhookEndpoint


class WebhookListView(generics.ListAPIView):
    """Your webhook endpoints. POST registers one; its signing secret is in the answer."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = WebhookEndpointSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return WebhookEndpoint.objects.none()
        return selectors.endpoints_for(user=self.request.user)

    @extend_schema(request=WebhookEndpointWriteSerializer, responses={201: WebhookEndpointSecretSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = WebhookEndpointWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        endpoint = services.webhook_endpoint_create(
            user=request.user, url=data["url"], events=data["events"], description=data.get("description", "")
        )
        return Response(WebhookEndpointSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    @extend_schema(responses=WebhookEndpointSerializer)
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        return Response(
            WebhookEndpointSerializer(services.webhook_endpoint_get(user=request.user, endpoint_id=pk)).data
        )

    @extend_schema(request=WebhookEndpointWriteSerializer(partial=True), responses=WebhookEndpointSerializer)
    def patch(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = WebhookEndpointWriteSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(user=request.user, endpoint_id=pk, **payload.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request: AuthenticatedRequest, pk: int) -> Response:
        services.webhook_endpoint_delete(user=request.user, endpoint_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRollSecretView(APIView):
    """A new signing secret; the old one stops working at once."""

    @extend_schema(request=None, responses=WebhookEndpointSecretSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        endpoint = services.webhook_secret_roll(user=request.user, endpoint_id=pk)
        return Response(WebhookEndpointSecretSerializer(endpoint).data)


class WebhookPingView(APIView):
    """Send a ``webhook.ping`` event to this endpoint now."""

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        delivery = services.webhook_ping(user=request.user, endpoint_id=pk)
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListView(generics.ListAPIView):
    """What was sent to this endpoint, newest first: status, attempts, the last answer."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = WebhookDeliverySerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        services.webhook_endpoint_get(user=self.request.user, endpoint_id=self.kwargs["pk"])
        return selectors.deliveries_for(user=self.request.user, endpoint_id=self.kwargs["pk"])


class NotificationListView(generics.ListAPIView):
    """Your notifications, newest first (``?unread=true`` for the unread ones)."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = NotificationSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Notification]:
        if getattr(self, "swagger_fake_view", False):
            return Notification.objects.none()
        unread = self.request.query_params.get("unread") in ("1", "true", "yes")
        return selectors.notifications_for(user=self.request.user, unread=unread)


class NotificationReadView(APIView):
    @extend_schema(request=None, responses=NotificationSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        return Response(NotificationSerializer(services.notification_read(user=request.user, notification_id=pk)).data)
