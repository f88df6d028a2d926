"""Reads for chain: a user's linked wallets, and where a wallet deposits."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from chain.models import ContractDeployment, Wallet
from core.models import User


def wallets_for(*, user: User) -> QuerySet[Wallet]:
    """The addresses the user linked, oldest first."""
    return Wallet.objects.filter(user=user).order_by("linked_at", "id")


@dataclass(frozen=True)
class DepositTarget:
    chain_id: int
    escrow: str  # the contract a wallet deposits into
    token: str  # the stablecoin it takes ("" where not recorded)


def deposit_target() -> DepositTarget | None:
    """Where a client's wallet deposits: the escrow contract and its stablecoin, as configured or
    as recorded at deployment (no chain is reached). None where no escrow was deployed."""
    records = {r.name: r for r in ContractDeployment.objects.filter(name__in=("Escrow", "DevUSD")).order_by("id")}
    escrow = records.get("Escrow")
    if escrow is None and not settings.CHAIN_ESCROW_ADDRESS:
        return None
    token = records.get("DevUSD")
    return DepositTarget(
        chain_id=escrow.chain_id if escrow else 0,
        escrow=settings.CHAIN_ESCROW_ADDRESS or (escrow.address if escrow else ""),
        token=settings.CHAIN_TOKEN_ADDRESS or (token.address if token else ""),
    )
