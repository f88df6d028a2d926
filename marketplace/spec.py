"""The workload spec: one format, accepted as JSON or as a YAML workload file.

See docs/WORKLOAD_SPEC.md for the format with an example. Validation here is about shape and
limits; the services check what needs the database (known GPU models) and the rules.
"""

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import StrictCharField, StrictIntegerField
from core.errors import ValidationFailed
from core.validation import display_name_problem
from marketplace import sdl
from marketplace.models import PricingRule, Verification

MAX_PRICE_PER_HOUR = 10**12  # one million dollars an hour: beyond is a typo
MAX_ENV = 64
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_TOTAL = 64 * 1024
MAX_ARGV = 64
MAX_ARG_LENGTH = 4096
MAX_PORTS = 16
MAX_GPU_MODELS = 32
MAX_PLACEMENT = 16
OPEN_ENDED_DEPOSIT_HOURS = 24  # an open-ended order's first deposit, unless it says deposit_hours

# The OCI / Docker distribution reference grammar.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
MAX_IMAGE_NAME = 255

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def image_problem(value: str) -> str | None:
    match = IMAGE_REFERENCE.fullmatch(value)
    if not match:
        return "Not a valid image reference (e.g. registry.example.com/team/trainer:1.4 or pytorch/pytorch@sha256:…)."
    if len(match.group("name")) > MAX_IMAGE_NAME:
        return f"Image names are limited to {MAX_IMAGE_NAME} characters."
    return None


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a typo is an error instead of a silent default."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(map(str, data)) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string", "description": "One item."}]}
)
class ArgvField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=StrictCharField(max_length=MAX_ARG_LENGTH, allow_blank=True, trim_whitespace=False),
            max_length=MAX_ARGV,
            required=False,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):  # `command: python` in a workload file
            data = [data]
        values = super().to_internal_value(data)
        for index, value in enumerate(values):
            if "\x00" in value:
                raise serializers.ValidationError({str(index): ["NUL characters are not allowed."]})
        return values


class EnvVarSerializer(StrictSerializer):
    name = StrictCharField(max_length=128, trim_whitespace=False)
    value = StrictCharField(max_length=MAX_ENV_VALUE, allow_blank=True, trim_whitespace=False)
    secret = serializers.BooleanField(default=False)

    def validate_name(self, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            raise serializers.ValidationError("Letters, digits and underscores, not starting with a digit.")
        return value

    def validate_value(self, value: str) -> str:
        if _CONTROL.search(value):
            raise serializers.ValidationError("Control characters are not allowed (tabs and newlines are).")
        return value


class PortSerializer(StrictSerializer):
    """A port the workload listens on: a number (TCP), or a port and its protocol."""

    port = StrictIntegerField(min_value=1, max_value=65535)
    protocol = serializers.ChoiceField(choices=["tcp", "udp"], default="tcp")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"port": data}
        return super().to_internal_value(data)


class PortSchema(OpenApiSerializerExtension):
    """The port shorthand in the schema: ``ports: [8888]`` is as valid as ``[{port: 8888}]``."""

    target_class = PortSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict:
        return {
            "description": "A port the workload listens on: a number (TCP), or a port and its protocol.",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {
                    "type": "object",
                    "properties": {
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "protocol": {"type": "string", "enum": ["tcp", "udp"], "default": "tcp"},
                    },
                    "required": ["port"],
                    "additionalProperties": False,
                },
            ],
        }


VOLUME_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", re.ASCII)
MAX_VOLUMES = 8
_SYSTEM_PATHS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/usr")


class VolumeSerializer(StrictSerializer):
    """A persistent volume: kept across the container's restarts for the lease's life, deleted when
    it ends. Its size is part of ``resources.storage_gib``."""

    name = StrictCharField(max_length=32, help_text="Lowercase letters, digits and dashes.")
    mount = StrictCharField(max_length=256, help_text="An absolute path in the container, e.g. /data.")
    size_gib = StrictIntegerField(min_value=1, max_value=1_000_000)
    storage_class = StrictCharField(
        max_length=32,
        required=False,
        default="",
        help_text="The provider's class of storage (Akash's beta1, beta2, beta3); empty: its default.",
    )

    def validate_name(self, value: str) -> str:
        if not VOLUME_NAME.fullmatch(value):
            raise serializers.ValidationError("Lowercase letters, digits and dashes, at most 32.")
        return value

    def validate_mount(self, value: str) -> str:
        normal = posixpath.normpath(value)
        if not value.startswith("/") or normal != value or "\x00" in value:
            raise serializers.ValidationError("An absolute path, written plainly (e.g. /data).")
        if normal == "/" or any(normal == p or normal.startswith(p + "/") for p in _SYSTEM_PATHS):
            raise serializers.ValidationError("Not the root or a system directory: mount it at e.g. /data.")
        return value

    def validate_storage_class(self, value: str) -> str:
        if value and not VOLUME_NAME.fullmatch(value):
            raise serializers.ValidationError("Lowercase letters, digits and dashes.")
        return value


class WorkloadSerializer(StrictSerializer):
    image = StrictCharField(max_length=512, trim_whitespace=False)
    command = ArgvField()
    args = ArgvField()
    env = EnvVarSerializer(many=True, required=False, max_length=MAX_ENV)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it
    ports = PortSerializer(many=True, required=False, max_length=MAX_PORTS)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it
    volumes = VolumeSerializer(many=True, required=False, max_length=MAX_VOLUMES)  # type: ignore[call-arg]  # many=True hands max_length to the list: the stubs miss it

    def validate_image(self, value: str) -> str:
        problem = image_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_env(self, value: list[dict]) -> list[dict]:
        names = [item["name"] for item in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate names: {', '.join(duplicates)}.")
        total = sum(len(item["name"]) + len(item["value"]) for item in value)
        if total > MAX_ENV_TOTAL:
            raise serializers.ValidationError(f"Environment is limited to {MAX_ENV_TOTAL} characters in all.")
        return value

    def validate_ports(self, value: list[dict]) -> list[dict]:
        keys = [(item["port"], item["protocol"]) for item in value]
        if len(set(keys)) != len(keys):
            raise serializers.ValidationError("Each port and protocol may appear once.")
        return value

    def validate_volumes(self, value: list[dict]) -> list[dict]:
        for key in ("name", "mount"):
            seen = [item[key] for item in value]
            if len(set(seen)) != len(seen):
                raise serializers.ValidationError(f"Each volume's {key} may appear once.")
        return value

    def validate(self, attrs: dict) -> dict:
        argv = attrs.get("command", []) + attrs.get("args", [])
        if sum(len(a) for a in argv) > MAX_ENV_TOTAL:
            raise serializers.ValidationError(
                {"args": [f"command and args are limited to {MAX_ENV_TOTAL} characters."]}
            )
        return attrs


class ResourcesSerializer(StrictSerializer):
    gpu_count = StrictIntegerField(min_value=1, max_value=64)
    gpu_models = serializers.ListField(
        child=StrictCharField(max_length=40),
        required=False,
        allow_null=True,
        max_length=MAX_GPU_MODELS,
        allow_empty=True,  # none named: any model with at least min_vram_gib (validate says one is needed)
    )
    min_vram_gib = StrictIntegerField(min_value=1, max_value=1024, required=False, allow_null=True)
    cpu_cores = StrictIntegerField(min_value=1, max_value=512, default=4)
    memory_gib = StrictIntegerField(min_value=1, max_value=8192, default=16)
    storage_gib = StrictIntegerField(min_value=1, max_value=1_000_000, default=50)
    shm_gib = StrictIntegerField(
        min_value=0,
        max_value=8192,
        default=0,
        help_text="Shared memory (/dev/shm) in GiB, counted in memory_gib (PyTorch's data loaders and NCCL use it); "
        "0 (default): the runtime's own (64 MiB on Docker).",
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("gpu_models") and attrs.get("min_vram_gib") is None:
            raise serializers.ValidationError({"gpu_models": ["Name acceptable GPU models, or set min_vram_gib."]})
        if attrs.get("shm_gib", 0) > attrs.get("memory_gib", 16):
            raise serializers.ValidationError({"shm_gib": ["Shared memory is part of memory_gib: at most that."]})
        return attrs


class OrderSpecSerializer(StrictSerializer):
    """An order: the workload, what it needs, how long, and the auction's terms."""

    version = serializers.ChoiceField(choices=["1"], required=False, help_text='Workload files: "1".')
    name = StrictCharField(max_length=100, required=False, allow_blank=True, trim_whitespace=False)
    workload = WorkloadSerializer()
    resources = ResourcesSerializer()
    duration_hours = StrictIntegerField(
        min_value=1,
        max_value=720,
        required=False,
        help_text="How long it runs. Left out: open-ended, as on Akash: the lease runs while its deposit lasts, "
        "topped up by you (or automatically), with the low-funds warning and grace of every lease.",
    )
    deposit_hours = StrictIntegerField(
        min_value=1,
        max_value=720,
        required=False,
        help_text=f"Open-ended orders only: the hours the first deposit pays for (default {OPEN_ENDED_DEPOSIT_HOURS}).",
    )
    max_price_per_hour = StrictIntegerField(
        min_value=1, max_value=MAX_PRICE_PER_HOUR, help_text="Micro-dollars per hour for the whole order."
    )
    bid_window_seconds = StrictIntegerField(min_value=10, max_value=3600, default=120)
    placement = serializers.DictField(
        child=StrictCharField(max_length=128, allow_blank=True),
        required=False,
        help_text="Provider attributes a bidder must have, e.g. {region: eu-west}: `region` is the provider's "
        "region, any other key one of its attributes.",
    )
    pricing_rule = serializers.ChoiceField(choices=PricingRule.choices, default=PricingRule.FIRST_PRICE)
    verification = serializers.ChoiceField(choices=Verification.choices, default=Verification.NONE)
    min_reputation = StrictIntegerField(
        min_value=0,
        max_value=1000,
        default=0,
        help_text="Only providers whose reputation (0 to 1000; shown as reliability, a tenth of it in percent) "
        "is at least this may bid.",
    )

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected an object (a JSON object or a YAML mapping)."]}
            )
        return super().to_internal_value(data)

    def validate_name(self, value: str) -> str:
        problem = display_name_problem(value, allow_empty=True)
        if problem:
            raise serializers.ValidationError(problem)
        return value.strip()

    def validate_placement(self, value: dict) -> dict:
        if len(value) > MAX_PLACEMENT:
            raise serializers.ValidationError(f"At most {MAX_PLACEMENT} attributes.")
        for key in value:
            problem = display_name_problem(str(key))
            if problem or len(str(key)) > 64:
                raise serializers.ValidationError(f"{key!r}: {problem or 'at most 64 characters.'}")
        return dict(value)

    def validate(self, attrs: dict) -> dict:
        volumes = sum(v["size_gib"] for v in attrs["workload"].get("volumes", []))
        if volumes > attrs["resources"]["storage_gib"]:
            raise serializers.ValidationError(
                {
                    "workload": {
                        "volumes": [f"{volumes} GiB of volumes: more than resources.storage_gib, which holds them."]
                    }
                }
            )
        if "duration_hours" in attrs and "deposit_hours" in attrs:
            raise serializers.ValidationError(
                {"deposit_hours": ["Only for an open-ended order: one with a duration pays for all of it."]}
            )
        return {"spec": OrderSpec.from_validated(attrs)}


@dataclass(frozen=True)
class OrderSpec:
    image: str
    gpu_count: int
    duration_hours: int
    max_price_per_hour: int
    name: str = ""
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: list[dict] = field(default_factory=list)
    ports: list[dict] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)
    gpu_models: list[str] = field(default_factory=list)
    min_vram_gib: int | None = None
    cpu_cores: int = 4
    memory_gib: int = 16
    storage_gib: int = 50
    shm_gib: int = 0
    bid_window_seconds: int = 120
    pricing_rule: str = PricingRule.FIRST_PRICE
    verification: str = Verification.NONE
    min_reputation: int = 0
    placement: dict[str, str] = field(default_factory=dict)
    workload_file: dict = field(default_factory=dict)  # an SDL file it came from (sdl.Translation.record)
    open_ended: bool = False  # runs while funded: duration_hours is then what the first deposit pays for

    @classmethod
    def from_validated(cls, attrs: dict) -> "OrderSpec":
        workload, resources = attrs["workload"], attrs["resources"]
        return cls(
            name=attrs.get("name", ""),
            image=workload["image"],
            command=workload.get("command", []),
            args=workload.get("args", []),
            env=[dict(item) for item in workload.get("env", [])],
            ports=[dict(item) for item in workload.get("ports", [])],
            volumes=[dict(item) for item in workload.get("volumes", [])],
            gpu_count=resources["gpu_count"],
            gpu_models=list(dict.fromkeys(resources.get("gpu_models") or [])),
            min_vram_gib=resources.get("min_vram_gib"),
            cpu_cores=resources["cpu_cores"],
            memory_gib=resources["memory_gib"],
            storage_gib=resources["storage_gib"],
            shm_gib=resources.get("shm_gib", 0),
            duration_hours=attrs.get("duration_hours") or attrs.get("deposit_hours") or OPEN_ENDED_DEPOSIT_HOURS,
            open_ended="duration_hours" not in attrs,
            max_price_per_hour=attrs["max_price_per_hour"],
            bid_window_seconds=attrs["bid_window_seconds"],
            pricing_rule=attrs["pricing_rule"],
            verification=attrs["verification"],
            min_reputation=attrs["min_reputation"],
            placement=attrs.get("placement") or {},
        )


class SdlTermsSerializer(serializers.Serializer):
    """What an Akash SDL file does not say, given beside it (the API's query parameters)."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    duration_hours = serializers.IntegerField(min_value=1, max_value=720, required=False)
    deposit_hours = serializers.IntegerField(min_value=1, max_value=720, required=False)
    max_price_per_hour = serializers.IntegerField(min_value=1, max_value=MAX_PRICE_PER_HOUR, required=False)
    max_price_per_gpu_hour = serializers.IntegerField(min_value=1, max_value=MAX_PRICE_PER_HOUR, required=False)
    bid_window_seconds = serializers.IntegerField(min_value=10, max_value=3600, required=False)
    pricing_rule = serializers.ChoiceField(choices=PricingRule.choices, required=False)
    verification = serializers.ChoiceField(choices=Verification.choices, required=False)
    min_reputation = serializers.IntegerField(min_value=0, max_value=1000, required=False)


def error_paths(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error tree as (dotted path, message) pairs."""
    if isinstance(errors, dict):
        pairs = []
        for key, value in errors.items():
            if key == "non_field_errors":
                path = key
            elif str(key).isdigit():  # a list's item, as DRF reports it by index
                path = f"{prefix}[{key}]" if prefix else str(key)
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            pairs += error_paths(value, path)
        return pairs
    if isinstance(errors, list):
        if all(not isinstance(e, dict | list) for e in errors):
            return [(prefix, str(e)) for e in errors]
        pairs = []
        for index, value in enumerate(errors):
            pairs += error_paths(value, f"{prefix}[{index}]" if prefix else str(index))
        return pairs
    return [(prefix, str(errors))]


def order_spec(data: Any, *, terms: Mapping[str, Any] | None = None) -> OrderSpec:
    """The order a document asks for: our spec (JSON or a workload file), or an Akash SDL file
    with ``terms`` beside it (what SDL does not say). Raises ValidationFailed; an SDL file's
    problems are named at their paths in the file."""
    if not sdl.looks_like_sdl(data):
        serializer = OrderSpecSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["spec"]
    translation = sdl.translate(data, dict(terms or {}))
    serializer = OrderSpecSerializer(data=translation.order)
    if not serializer.is_valid():
        fields: dict[str, list[str]] = {}
        for path, message in error_paths(serializer.errors):
            fields.setdefault(translation.where(path), []).append(message)
        first, messages = next(iter(fields.items()))
        raise ValidationFailed(
            f"The SDL file cannot be ordered as it is. {first}: {messages[0]}", code="sdl_invalid", fields=fields
        )
    return replace(serializer.validated_data["spec"], workload_file=translation.record())
