from rest_framework import serializers

from chain.models import Wallet
from core.api.fields import StrictCharField, StrictModelSerializer


class ChallengeRequestSerializer(serializers.Serializer):
    address = StrictCharField(max_length=42)
    chain_id = serializers.IntegerField(min_value=1, max_value=2**53, default=1)


class ChallengeSerializer(serializers.Serializer):
    nonce = StrictCharField()
    address = StrictCharField()
    message = StrictCharField(help_text="Sign exactly this text with the wallet (personal_sign).")
    expires_at = serializers.DateTimeField()


class LinkSerializer(serializers.Serializer):
    message = StrictCharField(max_length=4000, trim_whitespace=False)
    signature = StrictCharField(max_length=140)


class WalletSerializer(StrictModelSerializer):
    class Meta:
        model = Wallet
        fields = ["address", "linked_at"]
