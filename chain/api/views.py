from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from chain import wallets
from chain.api.serializers import ChallengeRequestSerializer, ChallengeSerializer, LinkSerializer, WalletSerializer
from chain.models import Wallet
from core.api.idempotency import idempotent
from core.api.requests import AuthenticatedRequest


class WalletChallengeView(APIView):
    """Step 1 of linking a wallet: a Sign-In with Ethereum message to sign."""

    @extend_schema(request=ChallengeRequestSerializer, responses={201: ChallengeSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = ChallengeRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        challenge = wallets.siwe_challenge(
            user=request.user,
            address=payload.validated_data["address"],
            domain=request.get_host(),
            uri=request.build_absolute_uri("/"),
            chain_id=payload.validated_data["chain_id"],
        )
        return Response(ChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)


class WalletListLinkView(generics.ListAPIView):
    """Your linked wallets. POST a signed challenge to link one."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = WalletSerializer

    def get_queryset(self) -> QuerySet[Wallet]:
        if getattr(self, "swagger_fake_view", False):
            return Wallet.objects.none()
        return Wallet.objects.filter(user=self.request.user)

    @extend_schema(request=LinkSerializer, responses={201: WalletSerializer})
    @idempotent
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = LinkSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        wallet = wallets.wallet_link(user=request.user, **payload.validated_data)
        return Response(WalletSerializer(wallet).data, status=status.HTTP_201_CREATED)


class WalletUnlinkView(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest, address: str) -> Response:
        wallets.wallet_unlink(user=request.user, address=address)
        return Response(status=status.HTTP_204_NO_CONTENT)
