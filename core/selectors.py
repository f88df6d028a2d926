"""Reads for accounts and tokens."""

from django.db import connection
from django.db.models import QuerySet

from core.models import ApiToken, SshKey, User


def tokens_for_user(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def database_is_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False


def ssh_keys_for(*, user: User | int) -> QuerySet[SshKey]:
    """The account's SSH public keys, oldest first."""
    return SshKey.objects.filter(user=user).order_by("created_at", "id")
