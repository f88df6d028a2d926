from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from core.models import ApiToken, SshKey, TokenScope


class TokenSerializer(StrictModelSerializer):
    prefix = serializers.SerializerMethodField()
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "scope", "prefix", "active", "created_at", "last_used_at", "revoked_at"]

    def get_prefix(self, obj: ApiToken) -> str:
        return f"gpm_{obj.prefix}_"


class TokenCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    scope = serializers.ChoiceField(choices=TokenScope.choices)


class TokenCreatedSerializer(TokenSerializer):
    token = StrictCharField(help_text="The bearer token. Shown once: store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


class SshKeySerializer(StrictModelSerializer):
    class Meta:
        model = SshKey
        fields = ["id", "name", "kind", "fingerprint", "public_key", "created_at"]


class SshKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    public_key = StrictCharField(
        max_length=16_384, help_text="One line of your .pub file: ed25519, ECDSA, or RSA of 2048 bits or more."
    )
