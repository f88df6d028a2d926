from rest_framework import serializers

from chain.models import Wallet


class ChallengeRequestSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=42)
    chain_id = serializers.IntegerField(min_value=1, max_value=2**53, default=1)


class ChallengeSerializer(serializers.Serializer):
    nonce = serializers.CharField()
    address = serializers.CharField()
    message = serializers.CharField(help_text="Sign exactly this text with the wallet (personal_sign).")
    expires_at = serializers.DateTimeField()


class LinkSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=4000, trim_whitespace=False)
    signature = serializers.CharField(max_length=140)


class WalletSerializer(serializers.ModelSerializer):
    class Meta:
        model = Wallet
        fields = ["address", "linked_at"]
