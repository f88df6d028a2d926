from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import realtime, selectors, services
from core.api.errors import error_body
from core.api.idempotency import idempotent
from core.api.requests import AuthenticatedRequest
from core.api.serializers import (
    SshKeyCreateSerializer,
    SshKeySerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from core.models import ApiToken, SshKey


def scope_of(request: AuthenticatedRequest) -> str | None:
    """The scope of the token the request came with (None: a web session)."""
    return request.auth.scope if isinstance(request.auth, ApiToken) else None


class TokenListCreateView(generics.ListAPIView):
    """Your API tokens. Creating one returns its secret once. A token creates tokens of its own
    scope or narrower (read_only); the account page, signed in, creates any your roles allow."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = TokenSerializer
    required_role = None
    throttle_scope = "tokens"  # creating tokens has a budget of its own (settings: tokens)

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return ApiToken.objects.none()
        return selectors.tokens_for_user(user=self.request.user)

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = TokenCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        issued = services.token_issue(user=request.user, by_scope=scope_of(request), **payload.validated_data)
        data = TokenSerializer(issued.token).data | {"token": issued.secret}
        return Response(data, status=status.HTTP_201_CREATED)


class TokenRevokeView(APIView):
    required_role = None

    @extend_schema(request=None, responses={200: TokenSerializer})
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        token = services.token_revoke(user=request.user, token_id=pk, by_scope=scope_of(request))
        return Response(TokenSerializer(token).data)


class SshKeyListCreateView(generics.ListAPIView):
    """Your SSH public keys. Every lease you rent receives them, so that you can log into an SSH box:
    as ``PUBLIC_KEY`` (newline-separated, where the workload does not set it), and as the
    ``~/.ssh/authorized_keys`` of the user the image runs as (root's, on Kubernetes)."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = SshKeySerializer
    required_role = "client"
    pagination_class = None  # at most services.MAX_SSH_KEYS

    def get_queryset(self) -> QuerySet[SshKey]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return SshKey.objects.none()
        return selectors.ssh_keys_for(user=self.request.user)

    @extend_schema(request=SshKeyCreateSerializer, responses={201: SshKeySerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = SshKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key = services.ssh_key_add(user=request.user, **payload.validated_data)
        return Response(SshKeySerializer(key).data, status=status.HTTP_201_CREATED)


class SshKeyDeleteView(APIView):
    required_role = "client"

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest, pk: int) -> Response:
        services.ssh_key_remove(user=request.user, key_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database answers."""
    if selectors.database_is_reachable():
        return JsonResponse({"status": "ok", "database": "ok"})
    return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)


@csrf_exempt
@require_POST
def realtime_relay(request: HttpRequest) -> JsonResponse:
    """A worker's live event, for the sockets of this process (embedded defaults only)."""
    if not settings.REALTIME_RELAY_ACCEPT:
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    if not realtime.relay_accept(request.body.decode(errors="replace")):
        return JsonResponse(error_body("bad_signature", "Not a signed, fresh event."), status=403)
    return JsonResponse({"status": "sent"})
