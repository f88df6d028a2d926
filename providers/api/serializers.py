from django.conf import settings
from rest_framework import serializers

from core.api.fields import StrictCharField, StrictModelSerializer
from protocol import usage
from providers.models import GpuModel, Provider, ProviderGpu
from providers.selectors import provider_is_online

MAX_GPU_LINES = 64
MAX_NODES = 1000
BIG = 10**6  # an upper bound that keeps absurd numbers out of the database


class GpuModelSerializer(StrictModelSerializer):
    class Meta:
        model = GpuModel
        fields = [
            "id",
            "name",
            "vendor",
            "architecture",
            "vram_gib",
            "memory_type",
            "interface",
            "memory_bandwidth_gbps",
            "int8_tops",
            "bf16_tflops",
        ]


# Plain serializers for the small nested shapes: they are built on every bid and lease, and
# ModelSerializer's field introspection would cost more than the rest of the response.
class GpuModelBriefSerializer(serializers.Serializer):
    id = StrictCharField(read_only=True)
    name = StrictCharField(read_only=True)
    vram_gib = serializers.IntegerField(read_only=True)


class ProviderBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = StrictCharField(read_only=True)
    region = StrictCharField(read_only=True)
    reputation = serializers.IntegerField(read_only=True)


class ProviderGpuSerializer(StrictModelSerializer):
    gpu_model = GpuModelBriefSerializer(read_only=True)
    available = serializers.IntegerField(read_only=True)

    class Meta:
        model = ProviderGpu
        fields = [
            "gpu_model",
            "total",
            "free",
            "reserved",
            "available",
            "price_per_gpu_hour",
            "verified",
            "verified_at",
        ]


class HostResourceSerializer(serializers.Serializer):
    total = serializers.IntegerField(min_value=0, max_value=BIG)
    free = serializers.IntegerField(min_value=0, max_value=BIG)


class ProviderSerializer(StrictModelSerializer):
    gpus = ProviderGpuSerializer(many=True, read_only=True)
    online = serializers.SerializerMethodField()
    cpu_cores = serializers.SerializerMethodField()
    memory_gib = serializers.SerializerMethodField()
    storage_gib = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "region",
            "attributes",
            "status",
            "reputation",
            "online",
            "last_heartbeat_at",
            "cpu_cores",
            "memory_gib",
            "storage_gib",
            "gpus",
            "created_at",
        ]

    def get_online(self, obj: Provider) -> bool:
        return provider_is_online(obj)

    def _host(self, obj: Provider, name: str) -> dict[str, int]:
        return {
            "total": getattr(obj, f"{name}_total"),
            "free": getattr(obj, f"{name}_free"),
            "reserved": getattr(obj, f"{name}_reserved"),
        }

    def get_cpu_cores(self, obj: Provider) -> dict[str, int]:
        return self._host(obj, "cpu_cores")

    def get_memory_gib(self, obj: Provider) -> dict[str, int]:
        return self._host(obj, "memory_gib")

    def get_storage_gib(self, obj: Provider) -> dict[str, int]:
        return self._host(obj, "storage_gib")


class ProviderMeSerializer(ProviderSerializer):
    """Your own profile: what the listing shows, your inventory by node, and what your agent needs
    to sign usage reports."""

    usage_signing_domain = serializers.SerializerMethodField(help_text="The EIP-712 domain of usage reports.")
    nodes = serializers.JSONField(read_only=True, help_text="The last inventory report by node (catalog ids).")

    class Meta(ProviderSerializer.Meta):
        fields = [*ProviderSerializer.Meta.fields, "nodes", "usage_signing_domain"]

    def get_usage_signing_domain(self, obj: Provider) -> dict:
        return usage.domain(settings.USAGE_SIGNING_CHAIN_ID)


class ProviderWriteSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100, trim_whitespace=False)
    region = StrictCharField(max_length=64, trim_whitespace=False)
    attributes = serializers.DictField(child=StrictCharField(max_length=128, allow_blank=True), required=False)


class NodeGpuLineSerializer(serializers.Serializer):
    model = StrictCharField(
        max_length=200, help_text="A catalog id (h100-sxm-80gb) or the name NVML or Kubernetes labels report."
    )
    total = serializers.IntegerField(min_value=0, max_value=100_000)
    free = serializers.IntegerField(min_value=0, max_value=100_000)
    memory_mib = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False, allow_null=True)


class GpuLineSerializer(NodeGpuLineSerializer):
    price_per_gpu_hour = serializers.IntegerField(
        min_value=1, max_value=10**12, required=False, allow_null=True, help_text="Asking price, micro-dollars."
    )


class NodeSerializer(serializers.Serializer):
    name = StrictCharField(max_length=253, help_text="The host's or Kubernetes node's name.")
    gpus = NodeGpuLineSerializer(many=True, max_length=MAX_GPU_LINES)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it
    cpu_cores = HostResourceSerializer()
    memory_gib = HostResourceSerializer()
    storage_gib = HostResourceSerializer()


class InventorySerializer(serializers.Serializer):
    gpus = GpuLineSerializer(many=True, max_length=MAX_GPU_LINES)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it
    cpu_cores = HostResourceSerializer()
    memory_gib = HostResourceSerializer()
    storage_gib = HostResourceSerializer()
    nodes = NodeSerializer(  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it
        many=True,
        max_length=MAX_NODES,
        required=False,
        help_text="Where the GPUs are: per node, adding up to the totals above.",
    )
    prices = serializers.DictField(
        child=serializers.IntegerField(min_value=1, max_value=10**12),
        required=False,
        help_text="Asking price per GPU-hour by catalog id, micro-dollars, for lines that carry none.",
    )

    def validate_prices(self, value: dict) -> dict:
        if len(value) > MAX_GPU_LINES:
            raise serializers.ValidationError(f"At most {MAX_GPU_LINES} prices.")
        return value


class OfferSerializer(StrictModelSerializer):
    provider = ProviderBriefSerializer(read_only=True)
    gpu_model = GpuModelBriefSerializer(read_only=True)
    available = serializers.IntegerField(source="available_count", read_only=True)
    last_heartbeat_at = serializers.DateTimeField(source="provider.last_heartbeat_at", read_only=True)
    attested = serializers.BooleanField(
        read_only=True,
        help_text="The GPUs proved their identity by hardware attestation (NVIDIA confidential computing).",
    )

    class Meta:
        model = ProviderGpu
        fields = [
            "provider",
            "gpu_model",
            "available",
            "total",
            "price_per_gpu_hour",
            "verified",
            "verified_int8_tops",
            "attested",
            "attested_until",
            "last_heartbeat_at",
        ]
