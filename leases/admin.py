from django.contrib import admin

from core.admin import MoneyInDollars, ViewOnly
from leases.models import Lease


@admin.register(Lease)
class LeaseAdmin(ViewOnly, MoneyInDollars, admin.ModelAdmin):
    money_fields = (
        "price_per_hour",
        "bid_price_per_hour",
        "deposit",
        "settled_amount",
        "auto_top_up_limit",
        "auto_topped_up",
        "paid_to_provider",
        "platform_fee",
        "refunded_to_client",
        "close_requested_amount",
    )
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
