"""Print the lease state machine (``leases.states``) as a Mermaid diagram, for docs/ARCHITECTURE.md."""

from typing import Any

from django.core.management.base import BaseCommand

from leases.states import diagram


class Command(BaseCommand):
    help = "Print the lease state machine as a Mermaid state diagram (docs/ARCHITECTURE.md embeds it)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(diagram())
