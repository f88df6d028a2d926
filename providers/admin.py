from django.contrib import admin

from core.admin import MoneyInDollars
from providers.models import GpuModel, Provider, ProviderGpu


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "vram_gib", "interface", "int8_tops", "bf16_tflops", "memory_bandwidth_gbps"]


class ProviderGpuInline(MoneyInDollars, admin.TabularInline):
    money_fields = ("price_per_gpu_hour",)
    model = ProviderGpu
    extra = 0
    fields = ["gpu_model", "total", "free", "reserved", "price_per_gpu_hour", "verified", "verified_at"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "region", "status", "reputation", "last_heartbeat_at"]
    list_filter = ["status", "region"]
    search_fields = ["name", "user__username"]
    inlines = [ProviderGpuInline]
