from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chain.adapter import escrow_client
from chain.indexer import index_events
from core.errors import DomainError
from leases.escrow.chain import reconcile
from ledger.deposits import chain_deposits_apply


class Command(BaseCommand):
    help = "Report every difference between the ledger and the escrow contract (exit 1 if any)."

    def handle(self, *args: object, **options: Any) -> None:
        try:
            client = escrow_client(start=False)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        index_events(client=client, confirmations=0)
        chain_deposits_apply()
        differences = reconcile()
        if differences:
            for line in differences:
                self.stdout.write(f"DIFFERENT  {line}")
            raise CommandError(f"{len(differences)} differences between the ledger and the chain")
        self.stdout.write("The ledger and the chain agree.")
