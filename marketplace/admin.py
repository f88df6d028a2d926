from django.contrib import admin

from marketplace.models import Bid, Order


class BidInline(admin.TabularInline):
    model = Bid
    extra = 0
    fields = ["provider", "gpu_model", "price_per_hour", "status", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "image", "gpu_count", "max_price_per_hour", "pricing_rule", "status", "deadline"]
    list_filter = ["status", "pricing_rule", "verification"]
    search_fields = ["image", "client__username", "name"]
    inlines = [BidInline]


@admin.register(Bid)
class BidAdmin(admin.ModelAdmin):
    list_display = ["id", "order", "provider", "gpu_model", "price_per_hour", "status", "created_at"]
    list_filter = ["status"]
