"""Answers to other apps' signals."""

from typing import Any

from core.models import User
from leases.escrow import escrow


def refuse_wallet_while_in_custody(*, user: User, **kwargs: Any) -> None:
    """Linking a wallet must not strand money the escrow holds for the user (on chain: a client
    without a wallet is funded through the custody account)."""
    escrow().wallet_link_check(user=user)
