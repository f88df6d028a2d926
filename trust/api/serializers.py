from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from trust import services
from trust.models import Attestation, GpuCheck


class GpuCheckSerializer(StrictModelSerializer):
    """A proof-of-GPU check as its provider sees it (the seed only in the answer to ``start``)."""

    rows = serializers.SerializerMethodField()
    measured_int8_tops = serializers.SerializerMethodField()
    failure = serializers.ChoiceField(
        choices=GpuCheck.Failure.choices, allow_blank=True, read_only=True, help_text="Empty unless it failed."
    )

    class Meta:
        model = GpuCheck
        fields = [
            "id",
            "gpu_model",
            "reason",
            "lease",
            "cards",
            "status",
            "failure",
            "detail",
            "params",
            "expected_seconds",
            "deadline_seconds",
            "envelope",
            "rows",
            "elapsed_seconds",
            "measured_int8_tops",
            "issued_at",
            "started_at",
            "committed_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_rows(self, check: GpuCheck) -> list[int]:
        """The rows to open: drawn when the commitment arrived."""
        return list(check.rows)

    def get_measured_int8_tops(self, check: GpuCheck) -> float | None:
        return services.measured_int8_tops(check)


class GpuCheckStartedSerializer(GpuCheckSerializer):
    seed = serializers.SerializerMethodField()

    class Meta(GpuCheckSerializer.Meta):
        fields = [*GpuCheckSerializer.Meta.fields, "seed"]
        read_only_fields = fields

    def get_seed(self, check: GpuCheck) -> str:
        """16 bytes, hexadecimal."""
        return bytes(check.seed).hex()


class CommitmentSerializer(serializers.Serializer):
    root = StrictCharField(  # type: ignore[assignment]  # an API field named as a Serializer attribute: DRF's metaclass takes it out of the class
        max_length=64, help_text="The Merkle root of the digests, 64 hexadecimal characters."
    )


class OpeningLeafSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    data = StrictCharField(help_text="The leaf's digests, base64.")  # type: ignore[assignment]  # an API field named as a Serializer attribute: DRF's metaclass takes it out of the class
    path = serializers.ListField(child=StrictCharField(), help_text="Sibling hashes up to the root, hexadecimal.")


class OpeningSerializer(serializers.Serializer):
    # for the schema: the check's own code reads the opening and says exactly what is wrong
    """The rows of the check's result the marketplace asked for, each with its Merkle path."""

    leaves = OpeningLeafSerializer(many=True)


class AttestationSerializer(StrictModelSerializer):
    """A hardware attestation of your GPUs of one model: the nonce to attest for, then the outcome."""

    class Meta:
        model = Attestation
        fields = [
            "id",
            "gpu_model",
            "nonce",
            "status",
            "failure",
            "detail",
            "gpus",
            "issued_at",
            "expires_at",
            "finished_at",
            "valid_until",
        ]
        read_only_fields = fields


class AttestationRequestSerializer(serializers.Serializer):
    gpu_model = StrictCharField(max_length=40, help_text="A catalog id you list GPUs of.")


class AttestationTokenSerializer(serializers.Serializer):
    token = serializers.JSONField(
        help_text="NVIDIA's attestation token for the nonce, as its attestation service answered: "
        '[["JWT", platform token], {"GPU-0": token, ...}] (or that JSON as a string).'
    )
