from dataclasses import asdict

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import StrictCharField, StrictFloatField, StrictIntegerField, StrictModelSerializer
from core.selectors import ssh_keys_for
from core.validation import MAX_ID
from leases.models import Lease, LeaseTopUp, ShellSession, UsageReport
from leases.selectors import LeaseStatement, lease_accrued_now, lease_remaining_deposit, spot_check_terms
from leases.services import USAGE_BATCH_MAX, UsageOutcome
from leases.states import CLOSING_OR_CLOSED
from providers.api.serializers import GpuModelBriefSerializer, ProviderBriefSerializer


class CompensationSerializer(serializers.Serializer):
    check = serializers.IntegerField(source="gpu_check_id")
    since = serializers.DateTimeField()
    refund = serializers.IntegerField()
    penalty = serializers.IntegerField()
    paid = serializers.IntegerField()
    status = StrictCharField()


class SpotCheckTermsSerializer(serializers.Serializer):
    per_day = serializers.FloatField()
    seconds = serializers.FloatField()
    at_most_seconds = serializers.FloatField()


class LeaseSerializer(StrictModelSerializer):
    provider = ProviderBriefSerializer(read_only=True)
    gpu_model = GpuModelBriefSerializer(read_only=True)
    order = serializers.IntegerField(source="order_id", read_only=True)
    bid = serializers.IntegerField(source="bid_id", read_only=True)
    price_per_gpu_hour = serializers.SerializerMethodField()
    accrued = serializers.SerializerMethodField(help_text="Earned by the provider so far, micro-dollars.")
    remaining_deposit = serializers.SerializerMethodField()
    compensation = serializers.SerializerMethodField(
        help_text="When the provider's GPUs failed a proof-of-GPU check during the lease (null otherwise): "
        "what the lease paid since they last passed one (refund), the client's share of the provider's "
        "slashed stake (penalty), and what reached the client's balance so far (paid)."
    )

    spot_checks = serializers.SerializerMethodField(
        help_text="The lease's terms for proof-of-GPU spot checks on its GPUs: how many a day on average, at "
        "random times; how long each pauses the workload (seconds), and the most an honest answer may take."
    )

    class Meta:
        model = Lease
        fields = [
            "id",
            "order",
            "bid",
            "status",
            "provider",
            "gpu_model",
            "gpu_count",
            "cpu_cores",
            "memory_gib",
            "storage_gib",
            "price_per_hour",
            "price_per_gpu_hour",
            "bid_price_per_hour",
            "duration_hours",
            "deposit",
            "accrued",
            "remaining_deposit",
            "created_at",
            "started_at",
            "ends_at",
            "closed_at",
            "closed_by",
            "close_reason",
            "failure_cause",
            "paid_to_provider",
            "platform_fee_bps",
            "platform_fee",
            "refunded_to_client",
            "endpoints",
            "status_reason",
            "suspended_at",
            "grace_ends_at",
            "resumed_at",
            "auto_top_up_limit",
            "auto_topped_up",
            "open_tx_hash",
            "close_tx_hash",
            "compensation",
            "spot_checks",
        ]

    def get_price_per_gpu_hour(self, obj: Lease) -> int:
        return obj.price_per_hour // obj.gpu_count

    def _accrued(self, obj: Lease) -> int:
        """Accrual reads the lease's usage: once per lease, for both fields that need it."""
        if not hasattr(obj, "_accrued_now"):
            obj._accrued_now = lease_accrued_now(obj)  # type: ignore[attr-defined]  # kept on the lease for both fields
        return obj._accrued_now  # type: ignore[attr-defined]  # set just above, or by the other field

    def get_accrued(self, obj: Lease) -> int:
        return self._accrued(obj)

    def get_remaining_deposit(self, obj: Lease) -> int:
        return lease_remaining_deposit(obj, accrued=self._accrued(obj))

    @extend_schema_field(SpotCheckTermsSerializer)
    def get_spot_checks(self, obj: Lease) -> dict:
        return asdict(spot_check_terms())

    @extend_schema_field(CompensationSerializer(allow_null=True))
    def get_compensation(self, obj: Lease) -> dict | None:
        # the trust app's record, reached by its relation (the trust layer sits above this one)
        compensation = getattr(obj, "compensation", None) if obj.status in CLOSING_OR_CLOSED else None
        return CompensationSerializer(compensation).data if compensation is not None else None


class LeaseUpdateSerializer(serializers.Serializer):
    auto_top_up_limit = serializers.IntegerField(
        help_text="The most the marketplace may add from your balance on its own, in all (0: never). When the "
        "lease runs low it adds the deposit of the ordered duration, within this and your balance."
    )


class ShellSessionSerializer(StrictModelSerializer):
    """A shell opened into the lease: who, when, for how long (``seconds`` once it ended)."""

    lease = serializers.IntegerField(source="lease_id", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True)
    seconds = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ShellSession
        fields = ["id", "lease", "user", "started_at", "ended_at", "seconds", "end_reason"]


class LeaseTopUpSerializer(StrictModelSerializer):
    lease = serializers.IntegerField(source="lease_id", read_only=True)

    class Meta:
        model = LeaseTopUp
        fields = [
            "id",
            "lease",
            "amount",
            "source",
            "status",
            "failure_reason",
            "tx_hash",
            "created_at",
            "confirmed_at",
        ]


class LeaseTopUpWriteSerializer(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Micro-dollars from your balance; the lease runs amount/price longer.")


class LeaseCloseSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=200, required=False, allow_blank=True)


class AccountSerializer(serializers.Serializer):
    username = StrictCharField()
    roles = serializers.ListField(child=StrictCharField())
    currency = StrictCharField(default="USD")
    unit = StrictCharField(default="micro_usd", help_text="Amounts are integer micro-dollars.")
    balance = serializers.IntegerField(help_text="Free to spend on new leases.")
    in_escrow = serializers.IntegerField(help_text="Held for your active leases.")
    earnings = serializers.IntegerField(help_text="Paid to you as a provider.")


ENDPOINT = r"^[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}$"


class StatusReportSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["deploying", "running", "failed"])
    endpoints = serializers.ListField(
        child=serializers.RegexField(ENDPOINT, max_length=260), required=False, max_length=16
    )
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)
    cause = serializers.ChoiceField(
        choices=Lease.FailureCause.choices,
        required=False,
        help_text="Of a failure: `workload` when the client's image or command failed (an image that "
        "cannot be pulled, a command that exits at once), `provider` (the default) otherwise.",
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["status"] == "failed" and not attrs.get("reason"):
            raise serializers.ValidationError({"reason": ["Say why the lease failed: the client reads it."]})
        if "cause" in attrs and attrs["status"] != "failed":
            raise serializers.ValidationError({"cause": ["Only a failure has a cause."]})
        return attrs


class ManifestSerializer(serializers.Serializer):
    """Everything the agent needs to run the lease, secrets included (for its provider only)."""

    lease = serializers.IntegerField(source="pk")
    image = StrictCharField(source="order.image")
    command = serializers.ListField(source="order.command")
    args = serializers.ListField(source="order.args")
    env = serializers.SerializerMethodField()
    secret_env = serializers.SerializerMethodField(
        help_text="Of env's names, those the client marked secret: a runtime keeps their values as secrets "
        "(a Kubernetes Secret), never in a spec or a log."
    )
    ports = serializers.ListField(source="order.ports")
    volumes = serializers.ListField(
        source="order.volumes",
        help_text="Persistent volumes [{name, mount, size_gib, storage_class}]: kept across restarts for the "
        "lease's life, deleted when it ends.",
    )
    ssh_authorized_keys = serializers.SerializerMethodField(
        help_text="The client's SSH public keys now (authorized_keys lines): a runtime passes them as PUBLIC_KEY, "
        "newline-separated, where the workload does not set that variable itself, and writes them as the "
        "~/.ssh/authorized_keys of the user the image runs as (root's, on Kubernetes)."
    )
    gpu_model = StrictCharField(source="gpu_model_id")
    gpu_count = serializers.IntegerField()
    cpu_cores = serializers.IntegerField()
    memory_gib = serializers.IntegerField()
    storage_gib = serializers.IntegerField()
    shm_gib = serializers.IntegerField(
        source="order.shm_gib", help_text="Shared memory (/dev/shm) in GiB, out of memory_gib; 0: the runtime's own."
    )
    ends_at = serializers.DateTimeField()

    def get_env(self, obj: Lease) -> dict[str, str]:
        return {item["name"]: item["value"] for item in obj.order.env}

    def get_ssh_authorized_keys(self, obj: Lease) -> list[str]:
        return list(ssh_keys_for(user=obj.client_id).values_list("public_key", flat=True))

    def get_secret_env(self, obj: Lease) -> list[str]:
        return sorted(item["name"] for item in obj.order.env if item.get("secret"))


UNIX_SECONDS_MAX = 2**63 - 1


class UsageReportWriteSerializer(serializers.Serializer):
    """A usage report as the provider's agent signed it: an EIP-712 signature, by a wallet linked to
    the provider, over the lease, the period and what ran in it."""

    period_start = serializers.IntegerField(min_value=0, max_value=UNIX_SECONDS_MAX, help_text="Unix seconds.")
    period_end = serializers.IntegerField(min_value=0, max_value=UNIX_SECONDS_MAX, help_text="Unix seconds.")
    gpu_seconds = serializers.IntegerField(min_value=0, max_value=UNIX_SECONDS_MAX)
    run_seconds = serializers.IntegerField(min_value=0, max_value=UNIX_SECONDS_MAX)
    restarts = serializers.IntegerField(min_value=0, max_value=2**32 - 1)
    signature = serializers.RegexField(r"0x[0-9a-fA-F]{130}", help_text="65 bytes, hex.")
    # what the lease's GPUs were doing when the period ended (NVML): for the client's picture of
    # the lease, not signed and never paid by (the signed run time is)
    gpu_utilization_pct = StrictFloatField(min_value=0, max_value=100, required=False, allow_null=True)
    gpu_memory_mib = StrictIntegerField(min_value=0, max_value=10**9, required=False, allow_null=True)


class UsageBatchItemSerializer(UsageReportWriteSerializer):
    lease = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class UsageBatchSerializer(serializers.Serializer):
    """Many signed usage reports, of any of your leases, in one request."""

    reports = UsageBatchItemSerializer(many=True, allow_empty=False, max_length=USAGE_BATCH_MAX)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it


class UsageErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status the report alone would have got.")
    code = StrictCharField()
    message = StrictCharField()
    fields = serializers.DictField()  # type: ignore[assignment]  # an API field named as a Serializer attribute: DRF's metaclass takes it out of the class


class UsageOutcomeSerializer(serializers.Serializer):
    lease = serializers.IntegerField(source="lease_id")
    period_start = serializers.IntegerField()
    result = serializers.SerializerMethodField(help_text="created, duplicate (stored before) or rejected.")
    report = serializers.IntegerField(source="report.pk", allow_null=True, default=None)
    error = serializers.SerializerMethodField()

    def get_result(self, obj: UsageOutcome) -> str:
        if obj.error is not None:
            return "rejected"
        return "created" if obj.created else "duplicate"

    @extend_schema_field(UsageErrorSerializer(allow_null=True))
    def get_error(self, obj: UsageOutcome) -> dict | None:
        if obj.error is None:
            return None
        error = obj.error
        return {"status": error.status_code, "code": error.code, "message": error.message, "fields": error.fields}


class UsageBatchResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = UsageOutcomeSerializer(many=True, help_text="One per report, in the order sent.")


class UsageReportSerializer(StrictModelSerializer):
    lease = serializers.IntegerField(source="lease_id", read_only=True)

    class Meta:
        model = UsageReport
        fields = [
            "id",
            "lease",
            "period_start",
            "period_end",
            "gpu_seconds",
            "run_seconds",
            "restarts",
            "gpu_utilization_pct",
            "gpu_memory_mib",
            "signer",
            "signature",
            "received_at",
        ]


class StatementPeriodSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    run_seconds = serializers.IntegerField()
    gpu_seconds = serializers.IntegerField()
    amount = serializers.IntegerField(help_text="Micro-dollars the period's running time is worth.")
    gpu_utilization_pct = serializers.FloatField(
        allow_null=True, help_text="The GPUs' utilisation when the period ended, as the agent read it (NVML)."
    )
    gpu_memory_mib = serializers.IntegerField(
        allow_null=True, help_text="GPU memory in use when the period ended, as the agent read it (NVML)."
    )


class LeaseTermsSerializer(serializers.Serializer):
    """What the escrow holds a lease to. With the escrow on chain: the addresses the contract opened it
    with and the transaction; ``held_in_custody`` when the marketplace's custody account paid the
    deposit for a client without a wallet (the marketplace holds that money as a payment processor
    would). Empty addresses: the escrow is the marketplace's ledger."""

    price_per_hour = serializers.IntegerField()
    deposit = serializers.IntegerField()
    duration_hours = serializers.IntegerField()
    platform_fee_bps = serializers.IntegerField()
    payer = StrictCharField(source="escrow_payer")
    payee = StrictCharField(source="escrow_payee")
    held_in_custody = serializers.BooleanField()
    open_tx_hash = StrictCharField()


class LeaseStatementSerializer(serializers.Serializer):
    lease = serializers.IntegerField(source="lease.pk")
    gpu_model = StrictCharField(source="lease.gpu_model_id")
    gpu_count = serializers.IntegerField(source="lease.gpu_count")
    price_per_hour = serializers.IntegerField(source="lease.price_per_hour")
    status = StrictCharField(source="lease.status")
    started_at = serializers.DateTimeField(source="lease.started_at")
    closed_at = serializers.DateTimeField(source="lease.closed_at", allow_null=True)
    deposit = serializers.IntegerField(source="lease.deposit")
    periods = StatementPeriodSerializer(many=True)
    run_seconds = serializers.IntegerField()
    gpu_hours = serializers.SerializerMethodField()
    usage_amount = serializers.IntegerField()
    settled = serializers.IntegerField()
    paid_to_provider = serializers.IntegerField()
    platform_fee_bps = serializers.IntegerField(source="lease.platform_fee_bps")
    platform_fee = serializers.IntegerField(
        help_text="Of what the provider was paid, the platform's share (the provider gets the rest)."
    )
    refunded_to_client = serializers.IntegerField()
    terms = LeaseTermsSerializer(source="lease")

    def get_gpu_hours(self, obj: LeaseStatement) -> str:
        return f"{obj.gpu_seconds / 3600:.4f}"


class LeaseEarningSerializer(serializers.Serializer):
    lease = serializers.IntegerField(source="lease.pk")
    status = StrictCharField(source="lease.status")
    price_per_hour = serializers.IntegerField(source="lease.price_per_hour")
    started_at = serializers.DateTimeField(source="lease.started_at")
    closed_at = serializers.DateTimeField(source="lease.closed_at", allow_null=True)
    owed = serializers.IntegerField(help_text="Earned so far (closed: what it paid), before the platform fee.")
    settled = serializers.IntegerField(help_text="Of which already paid out of its escrow.")
    platform_fee_bps = serializers.IntegerField(source="lease.platform_fee_bps")
    platform_fee = serializers.IntegerField(
        source="lease.platform_fee", help_text="The platform's share of what was paid out so far."
    )


class ProviderEarningsSerializer(serializers.Serializer):
    accrued = serializers.IntegerField(help_text="Earned by active leases, not settled yet (before the platform fee).")
    earned = serializers.IntegerField(help_text="Paid into your earnings: settlements and closes, less platform fees.")
    platform_fees = serializers.IntegerField(help_text="The platform's share of what your leases paid out.")
    claimed = serializers.IntegerField(help_text="Sent to your wallets by the escrow contract.")
    claimable = serializers.IntegerField(help_text="Earned and not claimed yet.")
    leases = LeaseEarningSerializer(many=True)


class LeaseLogSerializer(serializers.Serializer):
    text = StrictCharField(allow_blank=True, trim_whitespace=False, help_text="The latest tail of the workload's log.")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
