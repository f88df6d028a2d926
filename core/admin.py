from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.http import HttpRequest

from core.models import ApiToken, User
from core.money import format_usd


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "is_client", "is_provider", "is_staff", "date_joined"]
    list_filter = ["is_client", "is_provider", "is_staff", "is_active"]
    fieldsets = (*(BaseUserAdmin.fieldsets or ()), ("Marketplace roles", {"fields": ("is_client", "is_provider")}))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]
    search_fields = ["name", "user__username", "prefix"]


def _usd_display(field: str) -> Any:
    @admin.display(description=f"{field.replace('_', ' ').capitalize()} ($)", ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        value = getattr(obj, field)
        return "—" if value is None else format_usd(int(value))

    return show


class MoneyInDollars:
    """For a model admin or an inline: its money fields (integer micro-dollars) shown in dollars,
    as ``<field>_usd``, and never edited here: money moves only through the services' balanced
    ledger entries (and the chain), so an edit in the admin could only make the books disagree."""

    money_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        money = cls.money_fields

        def in_dollars(names: Any) -> list:
            return [f"{name}_usd" if name in money else name for name in names]

        for name in money:
            setattr(cls, f"{name}_usd", _usd_display(name))
        for option in ("list_display", "fields"):
            if getattr(cls, option, None):
                setattr(cls, option, in_dollars(getattr(cls, option)))
        readonly = in_dollars(getattr(cls, "readonly_fields", ()))
        cls.readonly_fields = [*readonly, *(f"{name}_usd" for name in money if f"{name}_usd" not in readonly)]  # type: ignore[attr-defined]  # a ModelAdmin's option
        cls.exclude = [*(getattr(cls, "exclude", None) or ()), *money]  # type: ignore[attr-defined]  # a ModelAdmin's option


class ViewOnly:
    """For the admin of a record whose changes belong to its services (a lease's states, an order's
    auction, a bid): the operator reads it here, and changes it only through what the product does."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
