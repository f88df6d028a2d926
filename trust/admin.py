from django.contrib import admin

from trust.models import GpuCheck


@admin.register(GpuCheck)
class GpuCheckAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "gpu_model", "reason", "status", "failure", "elapsed_seconds", "issued_at"]
    list_filter = ["status", "reason", "failure", "gpu_model"]
    search_fields = ["provider__name"]
    readonly_fields = [field.name for field in GpuCheck._meta.fields]
