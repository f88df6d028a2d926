"""The database ledger as the escrow (``ESCROW_BACKEND=ledger``): the deposit is held the moment a
lease opens, and closing, top-ups, settlements and compensations are booked at once."""

import uuid
from datetime import datetime

from django.db import transaction

from core.models import User
from core.money import format_usd
from leases import books
from leases.escrow.base import Escrow, Paid
from leases.models import Lease, LeaseTopUp
from leases.states import SETTLING
from ledger import services as ledger
from ledger.models import LedgerAccount


class LedgerEscrow(Escrow):
    opening_status = Lease.Status.FUNDED

    def fund(self, lease: Lease) -> None:
        return  # the deposit moved into the lease's escrow account when it opened

    def close(self, lease: Lease, *, earned: int, now: datetime) -> Lease:
        refunded = lease.deposit - lease.settled_amount - earned
        return books.post_close(lease=lease, paid=earned, refunded=refunded, now=now)

    def top_up(self, top_up: LeaseTopUp, lease: Lease, *, now: datetime) -> None:
        books.top_up_confirm(top_up=top_up, lease=lease, now=now)

    def settlements_catch_up(self) -> bool:
        return True  # nothing settles but the ticks

    def settle(self, due: dict[int, tuple[int, int]], *, batch_size: int) -> int:
        """In batches, idempotent per (lease, amount owed)."""
        paid, ids = 0, sorted(due)
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                batch = ids[start : start + batch_size]
                # under the lock: closed meanwhile (closing paid it) or already settled are left out
                settled = dict(
                    Lease.objects.select_for_update()
                    .filter(pk__in=batch, status__in=SETTLING)
                    .order_by("pk")
                    .values_list("pk", "settled_amount")
                )
                paid += books.settlements_book(
                    [
                        (
                            lease_id,
                            due[lease_id][0] - settled[lease_id],
                            f"lease:{lease_id}:settle:{due[lease_id][0]}",
                            f"Settlement of lease {lease_id} up to {ledger.format_usd(due[lease_id][0])}",
                        )
                        for lease_id in batch
                        if lease_id in settled
                    ]
                )
        return paid

    def compensation_plan(self, leases: list[Lease], *, refunds: list[int], penalty_bps: int) -> list[int]:
        return list(refunds)  # the ledger holds no stake: the refunds alone, from what the leases paid

    def compensate(self, lease: Lease, *, amount: int, key: str, since: datetime, paid: Paid) -> None:
        """Back from the provider's earnings and the platform's fee, as far as their balances go."""
        with transaction.atomic():
            given = books.compensate_from_earnings(
                lease=lease,
                amount=amount,
                key=key,
                memo=f"back for the time since {since:%Y-%m-%d %H:%M} UTC (failed GPU check)",
            )
            paid(given, "")

    def demo_fund(self, *, client: User, provider_user: User, amount: int) -> str:
        balance = ledger.user_account(user=client, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        if balance.balance < amount:
            ledger.deposit(
                user=client, amount=amount - balance.balance, key=f"demo:topup:{uuid.uuid4()}", memo="Demo balance"
            )
        return f"balance topped up to {format_usd(amount)}"
