from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chain import compiler


class Command(BaseCommand):
    help = "Compile the Vyper contracts into chain/artifacts (or --check that they match)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="Fail if an artifact differs from its source.")

    def handle(self, *args: object, **options: Any) -> None:
        if options["check"]:
            drifted = compiler.drifted_artifacts()
            if drifted:
                raise CommandError(f"Artifacts out of date: {', '.join(drifted)}. Run manage.py chain_compile.")
            self.stdout.write("Artifacts match their sources.")
            return
        for path in compiler.write_artifacts():
            self.stdout.write(f"wrote {path.relative_to(compiler.CHAIN_DIR.parent)}")
