from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.filters import IdFilter, StrictChoiceFilter
from core.api.renderers import CSVRenderer, csv_attachment
from core.api.requests import AuthenticatedRequest
from core.errors import ValidationFailed
from core.money import usd_decimal
from ledger import selectors
from ledger.api.serializers import AccountStatementSerializer, LedgerEntrySerializer
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


class LedgerFilter(filters.FilterSet):
    account = StrictChoiceFilter(
        field_name="account__kind",
        choices=[
            (LedgerAccount.Kind.CLIENT_BALANCE, "client_balance"),
            (LedgerAccount.Kind.PROVIDER_EARNINGS, "provider_earnings"),
        ],
    )
    kind = StrictChoiceFilter(field_name="transaction__kind", choices=LedgerTransaction.Kind.choices)
    lease = IdFilter(field_name="transaction__lease_id")


class LedgerView(generics.ListAPIView):
    """Every movement on your balance and earnings, newest first."""

    request: AuthenticatedRequest  # its permissions let no anonymous caller in

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerFilter
    ordering_fields: list[str] = []

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return LedgerEntry.objects.none()
        return selectors.ledger_for_user(user=self.request.user)


class AccountStatementView(APIView):
    """Your monthly statement (``YYYY-MM``): for each of your accounts, the opening balance, the
    month's movements by kind, and the closing balance. ``?format=csv`` lists every movement."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(responses=AccountStatementSerializer(many=True))
    def get(self, request: AuthenticatedRequest, month: str) -> Response:
        try:
            year, number = (int(part) for part in month.split("-"))
            if not (2000 <= year <= 9999 and 1 <= number <= 12):
                raise ValueError(month)
        except ValueError as exc:
            raise ValidationFailed("The month is YYYY-MM.", fields={"month": ["For example 2026-11."]}) from exc
        statements = selectors.account_statements(user=request.user, year=year, month=number)
        if request.accepted_renderer.format != "csv":
            return Response(AccountStatementSerializer(statements, many=True).data)
        # dollars for people; the exact micro-dollars (the API's unit) in the last two columns
        rows: list[list] = [
            [
                "account",
                "time",
                "kind",
                "memo",
                "amount_usd",
                "balance_after_usd",
                "amount_micro_usd",
                "balance_after_micro_usd",
            ]
        ]

        def balance(account: str, kind: str, amount: int) -> list:
            return [account, "", kind, "", "", usd_decimal(amount), "", amount]

        for statement in statements:
            rows.append(balance(statement.account, "opening_balance", statement.opening_balance))
            for entry in statement.entries:
                rows.append(
                    [
                        statement.account,
                        entry.created_at.isoformat(),
                        entry.transaction.kind,
                        entry.transaction.memo,
                        usd_decimal(entry.amount),
                        usd_decimal(entry.balance_after),
                        entry.amount,
                        entry.balance_after,
                    ]
                )
            rows.append(balance(statement.account, "closing_balance", statement.closing_balance))
        return csv_attachment(rows, f"statement-{month}.csv")
