"""The new-order form of the web UI. It builds the same workload spec the API takes and checks it
with the API's serializer, so the page and the API can never disagree on what is valid."""

import shlex
from typing import Any

from django import forms

from core.api.parsers import load_yaml
from core.forms import DollarsField
from marketplace.models import PricingRule, Verification
from marketplace.spec import OrderSpec, OrderSpecSerializer
from providers.selectors import gpu_models

# Starting points for the form; the client may change every field.
TEMPLATES: dict[str, dict[str, Any]] = {
    "pytorch-jupyter": {
        "label": "PyTorch + Jupyter",
        "image": "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime",
        "command": "jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root",
        "ports": "8888",
        "min_vram_gib": 24,
    },
    "inference": {
        "label": "Inference server (vLLM)",
        "image": "vllm/vllm-openai:v0.11.0",
        "command": "--model Qwen/Qwen2.5-7B-Instruct --port 8000",
        "ports": "8000",
        "min_vram_gib": 24,  # a 7B model in 16-bit weights, with room for its cache
    },
    "ssh": {
        "label": "Plain SSH box",
        "image": "linuxserver/openssh-server:latest",
        "command": "",
        "ports": "2222",
        "min_vram_gib": 16,
    },
}

# spec field path → form field, for errors the serializer finds
FIELD_OF = {
    "name": "name",
    "workload.image": "image",
    "workload.command": "command",
    "workload.args": "command",
    "workload.ports": "ports",
    "resources.gpu_count": "gpu_count",
    "resources.gpu_models": "gpu_models",
    "resources.min_vram_gib": "min_vram_gib",
    "resources.cpu_cores": "cpu_cores",
    "resources.memory_gib": "memory_gib",
    "resources.storage_gib": "storage_gib",
    "duration_hours": "duration_hours",
    "max_price_per_hour": "max_price_per_gpu_hour",
    "bid_window_seconds": "bid_window_seconds",
    "pricing_rule": "pricing_rule",
    "verification": "verification",
    "min_reputation": "min_reliability",
}


def _flatten(errors: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error tree as (dotted path, message) pairs."""
    if isinstance(errors, dict):
        pairs = []
        for key, value in errors.items():
            path = key if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            pairs += _flatten(value, path)
        return pairs
    if isinstance(errors, list):
        if all(not isinstance(e, dict | list) for e in errors):
            return [(prefix, str(e)) for e in errors]
        pairs = []
        for index, value in enumerate(errors):
            pairs += _flatten(value, f"{prefix}[{index}]" if prefix else str(index))
        return pairs
    return [(prefix, str(errors))]


# the lowest reliability (a tenth of the reputation, in percent) whose providers may bid
RELIABILITY_CHOICES = [(0, "Any"), (50, "At least 50 %"), (70, "At least 70 %"), (90, "At least 90 %")]


class OrderForm(forms.Form):
    mode = forms.ChoiceField(choices=[("form", "Form"), ("yaml", "Workload file")], initial="form", required=False)
    template = forms.ChoiceField(
        choices=[(key, t["label"]) for key, t in TEMPLATES.items()] + [("custom", "Custom")],
        initial="pytorch-jupyter",
        required=False,
    )
    name = forms.CharField(max_length=100, required=False, help_text="For you: shown in your lists.")
    image = forms.CharField(
        max_length=300,
        required=False,
        help_text="Any public image, e.g. pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime.",
    )
    command = forms.CharField(
        max_length=4000, required=False, help_text="Optional: what to run, as you would type it in a shell."
    )
    ports = forms.CharField(max_length=200, required=False, help_text="Ports to expose, comma-separated (e.g. 8888).")
    gpu_count = forms.IntegerField(min_value=1, max_value=64, initial=1, label="GPUs")
    gpu_models = forms.MultipleChoiceField(
        required=False, label="GPU models", help_text="Any of these; or none, and a minimum VRAM below."
    )
    min_vram_gib = forms.IntegerField(
        min_value=1, max_value=1024, required=False, label="Or any GPU with at least (GiB VRAM)"
    )
    cpu_cores = forms.IntegerField(min_value=1, max_value=512, initial=8, label="CPU cores")
    memory_gib = forms.IntegerField(min_value=1, max_value=4096, initial=32, label="Memory (GiB)")
    storage_gib = forms.IntegerField(min_value=1, max_value=100_000, initial=100, label="Storage (GiB)")
    duration_hours = forms.IntegerField(min_value=1, max_value=720, initial=4, label="Hours")
    max_price_per_gpu_hour = DollarsField(
        max_dollars=1_000_000,
        initial="3.00",
        label="Most you pay per GPU-hour ($)",
        help_text="Providers bid below this.",
        error_messages={
            "invalid": "A price in dollars, e.g. 2.50.",
            "not_positive": "A price above $0 and at most $1,000,000.",
            "too_large": "A price above $0 and at most $1,000,000.",
        },
    )
    bid_window_seconds = forms.IntegerField(
        min_value=10, max_value=3600, initial=120, label="Bid window (seconds)", help_text="How long providers bid."
    )
    pricing_rule = forms.ChoiceField(
        choices=PricingRule.choices,
        initial=PricingRule.FIRST_PRICE,
        help_text=(
            "What the winner is paid when the bid window ends without your choosing: its own bid "
            "(first price), or the next-lowest bid (second price: with a single bidder, your maximum). "
            "A bid you accept yourself is paid the price on its button."
        ),
    )
    verification = forms.ChoiceField(choices=Verification.choices, initial=Verification.NONE)
    min_reliability = forms.TypedChoiceField(
        choices=RELIABILITY_CHOICES,
        coerce=int,
        initial=0,
        label="Provider reliability",
        help_text="Providers below it cannot bid: it grows with passed GPU checks, uptime and completed leases.",
    )
    workload_file = forms.CharField(
        required=False, widget=forms.Textarea, label="Workload file (YAML)", help_text="See the workload file format."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = self.fields["gpu_models"]
        assert isinstance(models, forms.ChoiceField)
        models.choices = [(m.id, f"{m.name} ({m.vram_gib} GiB)") for m in gpu_models().only("id", "name", "vram_gib")]
        self.spec: OrderSpec | None = None
        if self.is_bound and self.data.get("mode") == "yaml":
            for name, field in self.fields.items():  # the file says it all
                if name not in ("mode", "workload_file", "template"):
                    field.required = False

    def spec_data(self) -> Any:
        """The order as the API would receive it."""
        data = self.cleaned_data
        if data.get("mode") == "yaml":
            try:
                loaded = load_yaml(data.get("workload_file") or "")
            except ValueError as exc:
                self.add_error("workload_file", str(exc)[:300])
                return None
            if loaded is None:  # empty, or comments only
                self.add_error(
                    "workload_file",
                    "The workload file is empty: write the order in YAML (workload, resources, duration_hours, "
                    "max_price_per_hour), or use the form.",
                )
            return loaded
        try:
            command = shlex.split(data.get("command") or "")
        except ValueError as exc:
            self.add_error("command", f"Cannot split the command: {exc}.")
            return None
        ports = []
        for part in (data.get("ports") or "").replace(" ", "").split(","):
            if part:
                if not part.isdigit():
                    self.add_error("ports", f"{part!r} is not a port number.")
                    return None
                ports.append({"port": int(part), "protocol": "tcp"})
        workload: dict[str, Any] = {"image": data.get("image") or "", "ports": ports}
        if command:
            workload["args" if command[0].startswith("-") else "command"] = command
        resources: dict[str, Any] = {
            "gpu_count": data["gpu_count"],
            "gpu_models": data.get("gpu_models") or [],
            "cpu_cores": data["cpu_cores"],
            "memory_gib": data["memory_gib"],
            "storage_gib": data["storage_gib"],
        }
        if data.get("min_vram_gib"):
            resources["min_vram_gib"] = data["min_vram_gib"]
        return {
            "name": data.get("name") or "",
            "workload": workload,
            "resources": resources,
            "duration_hours": data["duration_hours"],
            "max_price_per_hour": data["max_price_per_gpu_hour"] * data["gpu_count"],
            "bid_window_seconds": data["bid_window_seconds"],
            "pricing_rule": data["pricing_rule"],
            "verification": data["verification"],
            "min_reputation": (data.get("min_reliability") or 0) * 10,
        }

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        raw = self.spec_data()
        if raw is None:
            return cleaned
        serializer = OrderSpecSerializer(data=raw)
        if serializer.is_valid():
            self.spec = serializer.validated_data["spec"]
            return cleaned
        yaml_mode = cleaned.get("mode") == "yaml"
        for path, message in _flatten(serializer.errors):
            field = None if yaml_mode else FIELD_OF.get(path.split("[")[0])
            if field is None and yaml_mode:
                self.add_error("workload_file", f"{path}: {message}" if path != "non_field_errors" else message)
            else:
                self.add_error(field, message if field else f"{path}: {message}")
        return cleaned

    def problems(self) -> list[tuple[str, str]]:
        """Every error with the label of its field, for the summary above the submit button."""
        return [
            (
                str(self.fields[name].label or name.replace("_", " ").capitalize()) if name in self.fields else "",
                str(error),
            )
            for name, errors in self.errors.items()
            for error in errors
        ]

    def estimate(self) -> dict | None:
        """The most the order can cost (its deposit at the maximum price), for the page."""
        spec = self.spec
        if spec is None:
            return None
        return {
            "max_total": spec.max_price_per_hour * spec.duration_hours,
            "max_per_hour": spec.max_price_per_hour,
            "max_per_gpu_hour": spec.max_price_per_hour // spec.gpu_count,
            "hours": spec.duration_hours,
            "gpus": spec.gpu_count,
        }
