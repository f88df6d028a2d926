"""The books: accounts, balanced transactions and their legs.

The tables keep the names they had when the ledger lived in the leases app. An escrow account and a
transaction name their lease by a foreign key (``"leases.Lease"``) for integrity; the ledger's code
never imports the leases app, which sits above it.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class LedgerAccount(models.Model):
    """A place money sits. Balances are cached here and always equal the sum of entries."""

    class Kind(models.TextChoices):
        CLIENT_BALANCE = "client_balance", "Client balance"
        PROVIDER_EARNINGS = "provider_earnings", "Provider earnings"
        LEASE_ESCROW = "lease_escrow", "Lease escrow"
        # Where money enters or leaves the books (card top-ups, chain deposits, the demo faucet).
        EXTERNAL = "external", "External"
        # The platform's share of settlements (one account; on chain, claimable by the fee recipient).
        PLATFORM_FEES = "platform_fees", "Platform fees"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    lease = models.OneToOneField(
        "leases.Lease", null=True, blank=True, on_delete=models.PROTECT, related_name="escrow_account"
    )
    name = models.CharField(max_length=64, blank=True, help_text="For external accounts: the source.")
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "leases_ledgeraccount"  # its name from before the ledger had an app of its own
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "owner"],
                condition=Q(kind__in=["client_balance", "provider_earnings"]),
                name="ledger_one_user_account_per_kind",
            ),
            models.UniqueConstraint(fields=["name"], condition=Q(kind="external"), name="ledger_unique_external_name"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(kind="platform_fees"), name="ledger_one_platform_fees_account"
            ),
            models.CheckConstraint(
                condition=Q(kind="external") | Q(balance__gte=0), name="ledger_internal_balance_nonnegative"
            ),
            models.CheckConstraint(
                condition=(Q(kind="lease_escrow") & Q(lease__isnull=False))
                | (Q(kind__in=["client_balance", "provider_earnings"]) & Q(owner__isnull=False))
                | (Q(kind="external") & ~Q(name=""))
                | (Q(kind="platform_fees") & Q(owner__isnull=True) & Q(lease__isnull=True)),
                name="ledger_account_kind_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.owner_id or self.lease_id or self.name}"


class LedgerTransaction(models.Model):
    """One balanced movement of money. The idempotency key makes every posting happen once."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        WITHDRAWAL = "withdrawal", "Withdrawal"
        LEASE_FUND = "lease_fund", "Lease funded"
        LEASE_TOP_UP = "lease_top_up", "Lease topped up"
        LEASE_PAYOUT = "lease_payout", "Paid to provider"
        LEASE_REFUND = "lease_refund", "Refunded to client"
        COMPENSATION = "compensation", "Compensation for a failed GPU check"

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    lease = models.ForeignKey(
        "leases.Lease", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions"
    )
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "leases_ledgertransaction"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class LedgerEntry(models.Model):
    """One leg of a transaction: a signed amount on one account (the legs sum to zero)."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "leases_ledgerentry"
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_nonzero")]
        indexes = [models.Index(fields=["account", "-id"], name="ledger_entry_account")]

    def __str__(self) -> str:
        return f"{self.amount:+d} on {self.account_id}"
