from django.contrib import admin
from django.http import HttpRequest

from core.admin import MoneyInDollars
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


class LedgerEntryInline(MoneyInDollars, admin.TabularInline):
    money_fields = ("amount", "balance_after")
    model = LedgerEntry
    extra = 0
    can_delete = False
    readonly_fields = ["account", "amount", "balance_after", "created_at"]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "idempotency_key", "lease", "created_at"]
    list_filter = ["kind"]
    inlines = [LedgerEntryInline]

    def has_change_permission(self, request: HttpRequest, obj: LedgerTransaction | None = None) -> bool:
        return False  # the books are append-only


@admin.register(LedgerAccount)
class LedgerAccountAdmin(MoneyInDollars, admin.ModelAdmin):
    money_fields = ("balance",)
    list_display = ["id", "kind", "owner", "lease", "name", "balance"]
    list_filter = ["kind"]
