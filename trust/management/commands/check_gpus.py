from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from providers.models import Provider, ProviderGpu
from trust import services
from trust.models import GpuCheck


class Command(BaseCommand):
    help = "Issue proof-of-GPU checks of a provider's GPUs now (all its models, or one); its agent answers them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", type=int, help="The provider's id.")
        parser.add_argument("--model", help="Only this catalog model (e.g. h100-sxm-80gb).")

    def handle(self, *args: object, **options: Any) -> None:
        provider = Provider.objects.filter(pk=options["provider"]).first()
        if provider is None:
            raise CommandError(f"No provider {options['provider']}.")
        models = ProviderGpu.objects.filter(provider=provider, total__gt=0).values_list("gpu_model_id", flat=True)
        if options["model"]:
            models = models.filter(gpu_model_id=options["model"])
        if not models:
            raise CommandError("The provider lists no such GPUs.")
        for model in models:
            try:
                check = services.check_issue(provider=provider, gpu_model_id=model, reason=GpuCheck.Reason.ADMIN)
            except DomainError as exc:
                self.stdout.write(f"{model}: {exc.message}")
                continue
            self.stdout.write(f"{model}: check {check.pk} issued, {check.params['rows']:,} rows")
