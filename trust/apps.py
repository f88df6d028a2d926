from django.apps import AppConfig


class TrustConfig(AppConfig):
    name = "trust"
    verbose_name = "Trust"
    default_auto_field = "django.db.models.BigAutoField"
