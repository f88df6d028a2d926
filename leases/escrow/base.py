"""The escrow as the lease code needs it: one small interface, two backends.

- ``ledger`` (``leases.escrow.ledger``): the database ledger is the escrow. A deposit is held the
  moment a lease opens, a close pays and refunds at once.
- ``chain`` (``leases.escrow.chain``): the escrow contract holds the money and the ledger books
  what the contract moved. Opening, closing and top-ups wait for the chain (``funding``,
  ``closing``, a pending top-up), settlements go out in batched transactions, compensations are
  slashed from the provider's stake, and deposits and withdrawals of linked wallets come from the
  chain's events.

``leases.escrow.escrow()`` returns the one ``ESCROW_BACKEND`` names; no other code asks which it
is. Both book through ``leases.books``.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.errors import Conflict
from core.models import User
from leases.models import Lease, LeaseTopUp


def nothing_to_sign() -> Conflict:
    """The answer to a signature nobody asked for: the marketplace signs for this account, or the
    escrow needs none."""
    return Conflict("Nothing to sign: the marketplace signs for this account.", code="nothing_to_sign")


Paid = Callable[[int, str], None]
"""Told, inside the transaction that books it, what a compensation gave and to which address."""


class Escrow(ABC):
    opening_status: str
    """The state an awarded lease opens in: ``funded`` when the escrow holds its deposit at once,
    ``funding`` while it waits for the chain."""

    @abstractmethod
    def fund(self, lease: Lease) -> None:
        """The lease just opened (inside the award's transaction), its deposit reserved from the
        client's balance: have the escrow hold it."""

    @abstractmethod
    def close(self, lease: Lease, *, earned: int, now: datetime) -> Lease:
        """Close the lease (its lock held): pay its provider ``earned`` on top of the settlements
        made, refund its client the rest of the deposit."""

    @abstractmethod
    def top_up(self, top_up: LeaseTopUp, lease: Lease, *, now: datetime) -> None:
        """The top-up's amount was reserved from the client's balance (the lease's lock held): add
        it to the lease's deposit in the escrow."""

    @abstractmethod
    def settlements_catch_up(self) -> bool:
        """Book settlements the escrow made that the books miss; False while the escrow cannot be
        asked (then nothing is settled this tick)."""

    @abstractmethod
    def settle(self, due: dict[int, tuple[int, int]], *, batch_size: int) -> int:
        """Pay providers: ``due`` maps a lease to (what its provider earned in all, what was settled
        before). Returns how many leases were paid."""

    @abstractmethod
    def compensation_plan(self, leases: list[Lease], *, refunds: list[int], penalty_bps: int) -> list[int]:
        """What each lease's client can be given after its provider's GPUs failed a check: its
        refund, and where the escrow holds a stake, a share of ``penalty_bps`` of it."""

    @abstractmethod
    def compensate(self, lease: Lease, *, amount: int, key: str, since: datetime, paid: Paid) -> None:
        """Give the lease's client ``amount`` (once per ``key``) for the time since ``since``, and
        tell ``paid`` what was given, in the transaction that books it."""

    def sync(self) -> int:
        """Apply what happened in the escrow outside the marketplace's own calls (deposits and
        withdrawals of linked wallets) and finish what a lost task left; how many were applied."""
        return 0

    def reconcile(self) -> list[str]:
        """Every difference between the books and the escrow, as sentences (empty: none)."""
        return []

    def off_chain_funding_check(self, *, user: User) -> None:
        """Raise unless ``user`` may add money other than through the escrow (a card payment)."""
        return

    def wallet_link_check(self, *, user: User) -> None:
        """Raise if linking a wallet to ``user`` now would strand money the escrow holds for it."""
        return

    # --- the terms a client signs (the escrow on chain checks them; the ledger needs none) -----
    def acceptance_terms(
        self, *, client: User, order_id: int, provider_user_id: int, price_per_hour: int, duration_hours: int
    ) -> dict[str, Any] | None:
        """What the client signs (an EIP-712 message for its wallet) to accept a bid at this price;
        None when there is nothing for it to sign."""
        return None

    def acceptance_signed(
        self,
        *,
        client: User,
        order_id: int,
        provider_user_id: int,
        price_per_hour: int,
        duration_hours: int,
        signature: str,
        deadline: int | None,
    ) -> dict[str, Any]:
        """Check the client's signature of its acceptance; returns the signed terms the lease keeps
        (empty: none needed). Raises ValidationFailed naming ``signature`` or ``deadline``."""
        return {}

    def authorization_terms(self, *, order: Any) -> dict[str, Any] | None:
        """What the client signs to let the deadline's award open the lease within the order's
        ceilings; None when there is nothing for it to sign."""
        return None

    def authorization_signed(self, *, order: Any, signature: str, expiry: int | None) -> dict[str, Any]:
        """Check the client's signature of its standing authorization; returns what the order keeps.
        Raises ValidationFailed naming ``signature`` or ``expiry``, and Conflict where there is
        nothing for the client to sign (here: the escrow is the marketplace's ledger)."""
        raise nothing_to_sign()

    def terms_signer(self, *, client: User) -> str:
        """Who signs the terms this client accepts: ``wallet``, ``custody`` or ``demo`` (the
        marketplace, where it holds the key), or "" when there is nothing to sign."""
        return ""

    def award_terms(self, *, order: Any) -> dict[str, Any]:
        """The signed terms the deadline's award opens the lease on (empty: none needed). Raises
        Conflict when the client has to sign and has not."""
        return {}

    @abstractmethod
    def demo_fund(self, *, client: User, provider_user: User, amount: int) -> str:
        """Give the demo client ``amount`` to spend; says where it is, for the seed's message."""

    def demo_signing_key(self) -> str | None:
        """The key the demo provider signs usage with, where the escrow's chain made one for it."""
        return None
