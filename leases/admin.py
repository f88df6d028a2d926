from django.contrib import admin

from leases.models import Lease


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "order",
        "client",
        "provider",
        "gpu_model",
        "gpu_count",
        "price_per_hour",
        "status",
        "created_at",
    ]
    list_filter = ["status"]
    raw_id_fields = ["order", "bid", "client", "provider"]
