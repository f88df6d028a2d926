from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from leases.ledger import format_usd
from marketplace.demo import DEMO_BALANCE, seed_demo


class Command(BaseCommand):
    help = "Create the demo client and provider (idempotent) and print fresh API tokens for them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print only the export lines.")

    def handle(self, *args: object, **options: object) -> None:
        demo = seed_demo()
        if not options["quiet"]:
            self.stdout.write(self.style.SUCCESS("Demo data ready."))
            if settings.ESCROW_BACKEND == "chain":
                funds = format_usd(settings.CHAIN_EMBEDDED_DEMO_FUNDS)
                self.stdout.write(f"  demo client  : {demo.client.username} ({funds} deposited in the escrow contract)")
            else:
                balance = format_usd(DEMO_BALANCE)
                self.stdout.write(f"  demo client  : {demo.client.username} (balance topped up to {balance})")
            self.stdout.write(f"  demo provider: {demo.provider.name}, {demo.provider.region}")
            self.stdout.write("Tokens (shown once; earlier demo tokens were revoked):")
        self.stdout.write(f"export CLIENT_TOKEN={demo.client_token}")
        self.stdout.write(f"export PROVIDER_TOKEN={demo.provider_token}")
