from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import StrictCharField, StrictIntegerField, StrictModelSerializer
from core.validation import MAX_ID
from marketplace.models import Bid, Order
from marketplace.selectors import bid_gpu_verified
from marketplace.spec import StrictSerializer
from providers.api.serializers import GpuModelBriefSerializer, ProviderBriefSerializer

MAX_PRICE = 10**12


class OrderSerializer(StrictModelSerializer):
    workload = serializers.SerializerMethodField()
    resources = serializers.SerializerMethodField()
    max_price_per_gpu_hour = serializers.SerializerMethodField()
    lease = serializers.SerializerMethodField()
    bid_count = serializers.SerializerMethodField(help_text="Open bids; shown to the order's owner only.")
    my_bid = serializers.SerializerMethodField(help_text="Your open bid (provider order feed only).")
    placement = serializers.DictField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Provider attributes a bidder must have (region, and any other of its attributes).",
    )
    workload_file = serializers.DictField(
        read_only=True,
        help_text="The Akash SDL file the order came from: format, version, text (secret values hidden) and "
        "notes (what was made of it). Empty when the order was not an SDL file.",
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "name",
            "status",
            "status_reason",
            "workload",
            "resources",
            "duration_hours",
            "open_ended",
            "max_price_per_hour",
            "max_price_per_gpu_hour",
            "pricing_rule",
            "verification",
            "min_reputation",
            "placement",
            "workload_file",
            "bid_window_seconds",
            "created_at",
            "deadline",
            "closed_at",
            "lease",
            "bid_count",
            "my_bid",
        ]

    def _is_owner(self, obj: Order) -> bool:
        request = self.context.get("request")
        return bool(request and obj.client_id == request.user.pk)

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "image": {"type": "string"},
                "command": {"type": "array", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "value": {"type": "string", "nullable": True, "description": "null for a secret."},
                            "secret": {"type": "boolean"},
                        },
                    },
                },
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "enum": ["tcp", "udp"]},
                        },
                    },
                },
                "volumes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "mount": {"type": "string"},
                            "size_gib": {"type": "integer"},
                            "storage_class": {"type": "string"},
                        },
                    },
                },
            },
        }
    )
    def get_workload(self, obj: Order) -> dict[str, Any]:
        env = [
            {"name": e["name"], "value": None if e.get("secret") else e["value"], "secret": bool(e.get("secret"))}
            for e in obj.env
        ]
        return {
            "image": obj.image,
            "command": obj.command,
            "args": obj.args,
            "env": env,
            "ports": obj.ports,
            "volumes": obj.volumes,
        }

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "gpu_count": {"type": "integer"},
                "gpu_models": {"type": "array", "items": {"type": "string"}, "description": "Catalog ids."},
                "min_vram_gib": {"type": "integer", "nullable": True},
                "cpu_cores": {"type": "integer"},
                "memory_gib": {"type": "integer"},
                "storage_gib": {"type": "integer"},
                "shm_gib": {"type": "integer", "description": "Shared memory (/dev/shm), out of memory_gib."},
            },
        }
    )
    def get_resources(self, obj: Order) -> dict[str, Any]:
        return {
            "gpu_count": obj.gpu_count,
            "gpu_models": sorted(m.id for m in obj.gpu_models.all()),
            "min_vram_gib": obj.min_vram_gib,
            "cpu_cores": obj.cpu_cores,
            "memory_gib": obj.memory_gib,
            "storage_gib": obj.storage_gib,
            "shm_gib": obj.shm_gib,
        }

    def get_max_price_per_gpu_hour(self, obj: Order) -> int:
        return obj.max_price_per_hour // obj.gpu_count

    def get_lease(self, obj: Order) -> int | None:
        if obj.status != Order.Status.AWARDED:
            return None
        lease = getattr(obj, "lease", None)
        if lease is None:
            return None
        request = self.context.get("request")
        if self._is_owner(obj) or (request and lease.provider.user_id == request.user.pk):
            return lease.pk
        return None

    def get_bid_count(self, obj: Order) -> int | None:
        if not self._is_owner(obj):
            return None
        count = getattr(obj, "open_bid_count", None)
        return count if count is not None else obj.bids.filter(status=Bid.Status.OPEN).count()

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"id": {"type": "integer"}, "price_per_hour": {"type": "integer"}},
        }
    )
    def get_my_bid(self, obj: Order) -> dict | None:
        bid_id = getattr(obj, "my_bid_id", None)
        if bid_id is None:
            return None
        return {"id": bid_id, "price_per_hour": obj.my_bid_price}  # type: ignore[attr-defined]  # annotated by the provider feed's query, with my_bid_id


class BidSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    order = serializers.IntegerField(source="order_id", read_only=True)
    provider = ProviderBriefSerializer(read_only=True)
    gpu_model = GpuModelBriefSerializer(read_only=True)
    gpu_count = serializers.IntegerField(source="order.gpu_count", read_only=True)
    price_per_hour = serializers.IntegerField(read_only=True)
    price_per_gpu_hour = serializers.SerializerMethodField()
    gpu_verified = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=Bid.Status.choices, read_only=True)
    status_reason = StrictCharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_price_per_gpu_hour(self, obj: Bid) -> int:
        return obj.price_per_hour // obj.order.gpu_count

    def get_gpu_verified(self, obj: Bid) -> bool:
        """Whether the bidder's GPUs of this model passed a proof-of-GPU check."""
        return bid_gpu_verified(obj)


class BidCreateSerializer(StrictSerializer):
    price_per_hour = StrictIntegerField(
        min_value=1, max_value=MAX_PRICE, help_text="Micro-dollars per hour, whole order."
    )
    gpu_model = StrictCharField(max_length=40, required=False, help_text="Which of your GPU models (optional).")


class BidUpdateSerializer(StrictSerializer):
    price_per_hour = StrictIntegerField(min_value=1, max_value=MAX_PRICE)


SIGNATURE = r"^0x[0-9a-fA-F]{130}$"
MAX_TIMESTAMP = 2**40  # Unix seconds: far beyond any deadline, within every integer column and JSON number


class AcceptSerializer(StrictSerializer):
    bid = StrictIntegerField(min_value=1, max_value=MAX_ID)
    signature = serializers.RegexField(
        SIGNATURE,
        required=False,
        help_text="With the escrow on chain, a client with a wallet signs the terms it accepts: its "
        "wallet's EIP-712 signature of the bid's terms (GET `/orders/{id}/bids/{bid}/terms/`), 65 bytes, hex.",
    )
    deadline = StrictIntegerField(
        min_value=0, max_value=MAX_TIMESTAMP, required=False, help_text="The deadline the signed terms name."
    )


class SignedTermsSerializer(serializers.Serializer):
    typed_data = serializers.JSONField(
        allow_null=True,
        help_text="The EIP-712 message for the wallet to sign (`eth_signTypedData_v4`), or null when "
        "there is nothing to sign: the escrow is the marketplace's ledger, or the marketplace signs as "
        "the custodian of an account without a wallet.",
    )


class AuthorizeSerializer(StrictSerializer):
    signature = serializers.RegexField(
        SIGNATURE, help_text="The wallet's EIP-712 signature of the order's standing authorization, hex."
    )
    expiry = StrictIntegerField(min_value=0, max_value=MAX_TIMESTAMP, help_text="The expiry it names.")


class AuthorizationSerializer(serializers.Serializer):
    signer = StrictCharField()
    max_price_per_hour = serializers.IntegerField()
    max_deposit = serializers.IntegerField()
    expiry = serializers.IntegerField()
