from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_catalog(sender: AppConfig, **kwargs: object) -> None:
    # Reference data, not business logic: keep the GPU catalog table equal to the code's
    # catalog after every migrate (and after test database flushes).
    from providers.services import gpu_catalog_sync

    gpu_catalog_sync()


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and GPU catalog"

    def ready(self) -> None:
        post_migrate.connect(_sync_catalog, sender=self, dispatch_uid="providers.sync_catalog")
