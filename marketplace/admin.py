from django.contrib import admin

from core.admin import MoneyInDollars, ViewOnly
from marketplace.models import Bid, Order


class BidInline(ViewOnly, MoneyInDollars, admin.TabularInline):
    money_fields = ("price_per_hour",)
    model = Bid
    extra = 0
    fields = ["provider", "gpu_model", "price_per_hour", "status", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Order)
class OrderAdmin(ViewOnly, MoneyInDollars, admin.ModelAdmin):
    money_fields = ("max_price_per_hour",)
    list_display = ["id", "client", "image", "gpu_count", "max_price_per_hour", "pricing_rule", "status", "deadline"]
    list_filter = ["status", "pricing_rule", "verification"]
    search_fields = ["image", "client__username", "name"]
    inlines = [BidInline]


@admin.register(Bid)
class BidAdmin(ViewOnly, MoneyInDollars, admin.ModelAdmin):
    money_fields = ("price_per_hour",)
    list_display = ["id", "order", "provider", "gpu_model", "price_per_hour", "status", "created_at"]
    list_filter = ["status"]
