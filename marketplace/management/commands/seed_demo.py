from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from marketplace.demo import DEMO_ADMIN, demo_agent_config, seed_demo


class Command(BaseCommand):
    help = "Create the demo client, provider and admin (idempotent) and print fresh API tokens for the first two."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print only the export lines.")
        parser.add_argument(
            "--agent-config", type=Path, help="Also write the demo provider's agent configuration here."
        )
        parser.add_argument(
            "--marketplace-url", default="http://127.0.0.1:8000", help="Where the demo agent finds the marketplace."
        )
        parser.add_argument(
            "--docker-network",
            default="bridge",
            choices=["bridge", "none"],
            help="The demo agent's containers.",
        )

    def handle(self, *args: object, **options: Any) -> None:
        demo = seed_demo()
        if not options["quiet"]:
            self.stdout.write(self.style.SUCCESS("Demo data ready."))
            self.stdout.write(f"  demo client  : {demo.client.username} ({demo.funds})")
            self.stdout.write(f"  demo provider: {demo.provider.name}, {demo.provider.region}")
            self.stdout.write(f"  demo admin   : {DEMO_ADMIN} (the Django admin at /admin/)")
            self.stdout.write("Tokens (shown once; earlier demo tokens were revoked):")
        self.stdout.write(f"export CLIENT_TOKEN={demo.client_token}")
        self.stdout.write(f"export PROVIDER_TOKEN={demo.provider_token}")
        if options["agent_config"]:
            path = demo_agent_config(
                demo,
                path=options["agent_config"],
                marketplace_url=options["marketplace_url"],
                docker_network=options["docker_network"],
            )
            if not options["quiet"]:
                self.stdout.write(f"Demo provider agent configuration: {path}")
