from django.db import models
from django.db.models import Q


class ChainTransaction(models.Model):
    """Every transaction the marketplace sends: what it was for, and what became of it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed (reverted)"
        REPLACED = "replaced", "Replaced by a higher fee"

    chain_id = models.PositiveBigIntegerField()
    sender = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=32, help_text="open_lease, settle, close_lease, deploy, …")
    reference = models.CharField(max_length=100, blank=True, db_index=True, help_text="e.g. lease:12")
    to = models.CharField(max_length=42, blank=True)
    tx_hash = models.CharField(max_length=66, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    gas_limit = models.PositiveBigIntegerField()
    max_fee_per_gas = models.DecimalField(max_digits=40, decimal_places=0)
    max_priority_fee_per_gas = models.DecimalField(max_digits=40, decimal_places=0)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces")
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["chain_id", "sender", "nonce"], name="chain_tx_sender_nonce")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="confirmed") | Q(block_number__isnull=False), name="chain_tx_confirmed_has_block"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.tx_hash} ({self.status})"


class NonceCursor(models.Model):
    """The next nonce of a sending account, locked while a transaction is signed and sent, so
    several processes never use the same nonce."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="nonce_cursor_unique")]

    def __str__(self) -> str:
        return f"{self.address}@{self.chain_id}: {self.next_nonce}"


class ContractDeployment(models.Model):
    """Where a contract lives on a chain (recorded by chain_deploy or the embedded start-up)."""

    chain_id = models.PositiveBigIntegerField()
    name = models.CharField(max_length=40)
    address = models.CharField(max_length=42)
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "name"], name="deployment_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} at {self.address} on {self.chain_id}"


class SiweChallenge(models.Model):
    """A Sign-In with Ethereum (EIP-4361) message, to be signed once: issued to a user to link the
    address, or to nobody (``user`` empty) to sign in to the account the address is linked to."""

    user = models.ForeignKey(
        "core.User", null=True, blank=True, on_delete=models.CASCADE, related_name="siwe_challenges"
    )
    nonce = models.CharField(max_length=32, unique=True)
    address = models.CharField(max_length=42)
    domain = models.CharField(max_length=255)
    message = models.TextField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"SIWE {self.nonce} for {self.address}"


class Wallet(models.Model):
    """An address a user proved it controls. The server never holds users' keys."""

    user = models.ForeignKey("core.User", on_delete=models.CASCADE, related_name="wallets")
    address = models.CharField(max_length=42, unique=True)
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["linked_at", "id"]

    def __str__(self) -> str:
        return f"{self.address} ({self.user_id})"


class ChainEvent(models.Model):
    """An event the escrow emitted, recorded once per (transaction, log index)."""

    chain_id = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=42)
    name = models.CharField(max_length=40, db_index=True)
    args = models.JSONField(help_text="Decoded arguments; integers beyond 2**53 as strings.")
    block_number = models.PositiveBigIntegerField(db_index=True)
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    indexed_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When the ledger took it into account.")

    class Meta:
        ordering = ["block_number", "log_index"]
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "tx_hash", "log_index"], name="chain_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.name} in {self.tx_hash}#{self.log_index}"


class IndexerCursor(models.Model):
    """The next block to read for one contract on one chain."""

    chain_id = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=42)
    next_block = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain_id", "contract"], name="indexer_cursor_unique")]

    def __str__(self) -> str:
        return f"{self.contract}@{self.chain_id} from block {self.next_block}"
