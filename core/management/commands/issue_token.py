from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import services
from core.errors import DomainError
from core.models import TokenScope, User


class Command(BaseCommand):
    help = "Print a new API token for USERNAME (the only time it is shown)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            required=True,
            choices=["client", "provider", "read-only"],
            help="The token's scope. client/provider also grant that role with --create.",
        )
        parser.add_argument("--create", action="store_true", help="Create the user if missing.")
        parser.add_argument("--name", default="cli", help="A label for the token.")

    def handle(self, *args: object, **options: Any) -> None:
        username = str(options["username"])
        role = str(options["role"])
        scope = TokenScope.READ_ONLY if role == "read-only" else role
        try:
            user = User.objects.filter(username=username).first()
            if user is None:
                if not options["create"]:
                    raise CommandError(f"No user {username!r}; pass --create to create it.")
                user = services.user_create(
                    username=username, is_client=role == "client", is_provider=role == "provider"
                )
            elif options["create"] and scope != TokenScope.READ_ONLY:
                services.user_grant_role(user=user, role=scope)
            issued = services.token_issue(user=user, name=str(options["name"]), scope=scope)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.secret)
