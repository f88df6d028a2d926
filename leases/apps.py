from django.apps import AppConfig


class LeasesConfig(AppConfig):
    name = "leases"
    verbose_name = "Leases"

    def ready(self) -> None:
        from chain.wallets import first_wallet_linking
        from leases.receivers import refuse_wallet_while_in_custody

        first_wallet_linking.connect(refuse_wallet_while_in_custody, dispatch_uid="leases.custody_wallet_guard")
