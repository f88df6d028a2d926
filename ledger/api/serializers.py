from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from ledger.models import LedgerEntry


class LedgerEntrySerializer(StrictModelSerializer):
    account = StrictCharField(source="account.kind")
    kind = StrictCharField(source="transaction.kind")
    memo = StrictCharField(source="transaction.memo")
    lease = serializers.IntegerField(source="transaction.lease_id", allow_null=True)
    transaction = serializers.IntegerField(source="transaction_id")

    class Meta:
        model = LedgerEntry
        fields = ["id", "transaction", "account", "kind", "amount", "balance_after", "lease", "memo", "created_at"]


class StatementLineSerializer(serializers.Serializer):
    kind = StrictCharField()
    count = serializers.IntegerField()
    total = serializers.IntegerField()


class AccountStatementSerializer(serializers.Serializer):
    account = StrictCharField()
    month = StrictCharField()
    opening_balance = serializers.IntegerField()
    lines = StatementLineSerializer(many=True)
    closing_balance = serializers.IntegerField()
