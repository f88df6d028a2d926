from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q


class User(AbstractUser):
    """A person or an integration. One user may be a client, a provider, or both."""

    is_client = models.BooleanField(default=False)
    is_provider = models.BooleanField(default=False)

    @property
    def roles(self) -> list[str]:
        return [role for role, on in (("client", self.is_client), ("provider", self.is_provider)) if on]


class TokenScope(models.TextChoices):
    CLIENT = "client", "Client"
    PROVIDER = "provider", "Provider"
    READ_ONLY = "read_only", "Read only"


class ApiToken(models.Model):
    """A named bearer token. Only a SHA-256 digest is stored; the secret is shown once.

    Tokens look like ``gpm_<prefix>_<secret>``: the prefix finds the row, the digest of the
    whole string proves it. The secret has 256 bits of entropy, so a fast hash is enough.
    """

    PREFIX_LENGTH = 10

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=TokenScope.choices)
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, gpm_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an ``Idempotency-Key``, replayed on retries."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        DONE = "done"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_user_key"),
            models.CheckConstraint(
                condition=Q(state="in_progress") | Q(response_status__isnull=False),
                name="idempotency_done_has_response",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class SshKey(models.Model):
    """A public key of the account's: leases receive them, so that the client can log into its box."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField(help_text='"<type> <base64>", as it goes into authorized_keys.')
    kind = models.CharField(max_length=40)
    fingerprint = models.CharField(max_length=60, help_text="SHA256:…, as ssh-keygen -l prints it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "fingerprint"], name="ssh_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"
