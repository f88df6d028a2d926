"""Answers to other apps' signals."""

from typing import Any

from django.conf import settings

from core.errors import Conflict
from core.models import User
from leases.models import Lease, LedgerAccount


def refuse_wallet_while_in_custody(*, user: User, **kwargs: Any) -> None:
    """With the escrow on chain, a client without a wallet is funded through the custody account
    (``leases.escrow``): linking a first wallet would move the balance it already has, and the
    refunds of its open leases, to a wallet that does not hold them. Refused until both are zero."""
    if settings.ESCROW_BACKEND != "chain":
        return
    balance = (
        LedgerAccount.objects.filter(owner=user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        .values_list("balance", flat=True)
        .first()
    )
    open_leases = Lease.objects.filter(client=user).exclude(status=Lease.Status.CLOSED).exists()
    if balance or open_leases:
        raise Conflict(
            "The marketplace holds your card-paid balance for you; spend it and close your leases before "
            "linking a wallet.",
            code="balance_in_custody",
        )
