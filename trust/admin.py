from django.contrib import admin

from core.admin import MoneyInDollars
from trust.models import Attestation, Compensation, GpuCheck


@admin.register(GpuCheck)
class GpuCheckAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "provider",
        "gpu_model",
        "reason",
        "cards",
        "status",
        "failure",
        "elapsed_seconds",
        "issued_at",
    ]
    list_filter = ["status", "reason", "failure", "envelope", "gpu_model"]
    search_fields = ["provider__name"]
    readonly_fields = [field.name for field in GpuCheck._meta.fields]


@admin.register(Compensation)
class CompensationAdmin(MoneyInDollars, admin.ModelAdmin):
    money_fields = ("refund", "penalty", "paid")
    list_display = ["id", "gpu_check", "lease", "client", "refund", "penalty", "paid", "status", "paid_at"]
    list_filter = ["status"]
    readonly_fields = [field.name for field in Compensation._meta.fields]


@admin.register(Attestation)
class AttestationAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "gpu_model", "status", "failure", "issued_at", "valid_until"]
    list_filter = ["status", "failure", "gpu_model"]
    search_fields = ["provider__name"]
    readonly_fields = [field.name for field in Attestation._meta.fields]
