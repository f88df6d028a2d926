"""Reads for chain: a user's linked wallets."""

from django.db.models import QuerySet

from chain.models import Wallet
from core.models import User


def wallets_for(*, user: User) -> QuerySet[Wallet]:
    """The addresses the user linked, oldest first."""
    return Wallet.objects.filter(user=user).order_by("linked_at", "id")
