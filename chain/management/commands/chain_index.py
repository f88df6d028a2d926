from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain.adapter import escrow_client
from chain.indexer import index_events
from core.errors import DomainError


class Command(BaseCommand):
    help = "Read the escrow's events up to the confirmed head into the database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--confirmations", type=int, default=1)

    def handle(self, *args: object, **options: Any) -> None:
        try:
            client = escrow_client(start=False)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        created = index_events(client=client, confirmations=int(options["confirmations"]))
        self.stdout.write(f"{created} new events")
