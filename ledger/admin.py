from django.contrib import admin
from django.http import HttpRequest

from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


class LedgerEntryInline(admin.TabularInline):
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
class LedgerAccountAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "owner", "lease", "name", "balance"]
    list_filter = ["kind"]
    readonly_fields = ["balance"]
