from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.requests import AuthenticatedRequest
from providers.selectors import provider_for_user
from trust import selectors, services
from trust.api.serializers import (
    AttestationRequestSerializer,
    AttestationSerializer,
    AttestationTokenSerializer,
    CommitmentSerializer,
    GpuCheckSerializer,
    GpuCheckStartedSerializer,
    OpeningSerializer,
)


class CheckListView(APIView):
    """Your proof-of-GPU checks: the ones to answer now (issuing a check for each listed model
    not yet verified), then the last finished ones. ``docs/PROOF_OF_GPU.md`` has the protocol."""

    required_role = "provider"

    @extend_schema(responses=GpuCheckSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        provider = provider_for_user(user=request.user)
        due = services.checks_due(provider=provider)
        recent = selectors.checks_finished(provider=provider)[:20]
        return Response(GpuCheckSerializer([*due, *recent], many=True).data)


class CheckStartView(APIView):
    """Start a check when the GPUs are ready: the answer carries the seed, and the clock runs
    until the commitment arrives."""

    required_role = "provider"

    @extend_schema(request=None, responses=GpuCheckStartedSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        check = services.check_start(provider=provider_for_user(user=request.user), check_id=pk)
        return Response(GpuCheckStartedSerializer(check).data)


class CheckCommitmentView(APIView):
    """The Merkle root of the digests. On time, the answer lists the rows to open; late, the
    check has failed."""

    required_role = "provider"

    @extend_schema(request=CommitmentSerializer, responses=GpuCheckSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        root = request.data.get("root") if isinstance(request.data, dict) else None
        check = services.check_commit(provider=provider_for_user(user=request.user), check_id=pk, root=root)
        return Response(GpuCheckSerializer(check).data)


class CheckOpeningView(APIView):
    """The leaves holding the chosen rows, with their Merkle paths: the check passes or fails."""

    required_role = "provider"

    @extend_schema(request=OpeningSerializer, responses=GpuCheckSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        check = services.check_open(provider=provider_for_user(user=request.user), check_id=pk, opening=request.data)
        return Response(GpuCheckSerializer(check).data)


class AttestationListView(APIView):
    """Hardware attestation (NVIDIA confidential computing): your attestations, newest first; POST
    a GPU model for a nonce, then send NVIDIA's attestation token for it."""

    required_role = "provider"

    @extend_schema(responses=AttestationSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        provider = provider_for_user(user=request.user)
        return Response(AttestationSerializer(selectors.attestations_of(provider=provider)[:20], many=True).data)

    @extend_schema(request=AttestationRequestSerializer, responses={201: AttestationSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = AttestationRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        record = services.attestation_issue(
            provider=provider_for_user(user=request.user), gpu_model_id=payload.validated_data["gpu_model"]
        )
        return Response(AttestationSerializer(record).data, status=status.HTTP_201_CREATED)


class AttestationTokenView(APIView):
    """NVIDIA's attestation token for the nonce: the answer says attested or rejected (and why)."""

    required_role = "provider"

    @extend_schema(request=AttestationTokenSerializer, responses=AttestationSerializer)
    def post(self, request: AuthenticatedRequest, pk: int) -> Response:
        payload = AttestationTokenSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        record = services.attestation_submit(
            provider=provider_for_user(user=request.user), attestation_id=pk, token=payload.validated_data["token"]
        )
        return Response(AttestationSerializer(record).data)
