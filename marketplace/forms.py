"""The new-order form of the web UI. It builds the same workload spec the API takes and checks it
with the API's serializer, so the page and the API can never disagree on what is valid."""

import re
import secrets
import shlex
from typing import Any

from django import forms

from core.api.parsers import load_yaml
from core.errors import ValidationFailed
from core.forms import DollarsField
from core.money import format_usd_short
from leases.selectors import JUPYTER_TOKEN
from marketplace.models import PricingRule, Verification
from marketplace.sdl import PRICE_HINT, looks_like_sdl
from marketplace.spec import (
    MAX_ENV,
    MAX_ENV_VALUE,
    OPEN_ENDED_DEPOSIT_HOURS,
    OrderSpec,
    OrderSpecSerializer,
    error_paths,
    order_spec,
)
from providers.models import ProviderGpu
from providers.selectors import OfferFilters, gpu_models, models_on_offer

# Starting points for the form; the client may change every field.
TEMPLATES: dict[str, dict[str, Any]] = {
    "pytorch-jupyter": {
        "label": "PyTorch + Jupyter",
        "image": "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime",
        # Jupyter takes its token from JUPYTER_TOKEN: the form fills a fresh one, and the lease page
        # links to Jupyter with it
        "command": "jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root",
        "ports": "8888",
        "min_vram_gib": 24,
        "jupyter": True,  # the page fills a JUPYTER_TOKEN row with a fresh token
    },
    "inference": {
        "label": "Inference server (vLLM)",
        "image": "vllm/vllm-openai:v0.11.0",
        "command": "--model Qwen/Qwen2.5-7B-Instruct --port 8000",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "ports": "8000",
        "min_vram_gib": 24,  # a 7B model in 16-bit weights, with room for its cache
    },
    "ssh": {
        # the image reads PUBLIC_KEY, which every lease receives from the client's account SSH keys
        "label": "Plain SSH box",
        "image": "linuxserver/openssh-server:latest",
        "command": "",
        "ports": "2222",
        "min_vram_gib": 16,
        "env": {"USER_NAME": "box"},  # the user it lets in: the lease page shows the ssh command
    },
    "byo": {
        "label": "Bring your own image",
        "image": "nvidia/cuda:12.8.1-base-ubuntu24.04",
        "command": "sleep infinity",
        "ports": "",
        "min_vram_gib": 16,
    },
}
# a model id on the Hugging Face Hub: an optional owner, then the name
HF_MODEL = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}", re.ASCII)


def with_model(command: list[str], model: str) -> list[str]:
    """The inference server's command serving ``model``: its ``--model`` value replaced, or added."""
    if "--model" in command[:-1]:
        at = command.index("--model")
        return [*command[: at + 1], model, *command[at + 2 :]]
    return ["--model", model, *command]


def template_initial(key: str) -> dict[str, Any]:
    """The new-order form as a template starts it (a Jupyter template with a fresh token)."""
    template = TEMPLATES[key]
    initial = {"template": key, **{k: v for k, v in template.items() if k not in ("label", "jupyter", "env")}}
    env = [{"name": name, "value": value, "secret": False} for name, value in template.get("env", {}).items()]
    if template.get("jupyter"):
        env.append({"name": JUPYTER_TOKEN, "value": secrets.token_urlsafe(24), "secret": False})
    if env:
        initial["env"] = env
    return initial


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


# the lowest reliability (a tenth of the reputation, in percent) whose providers may bid
RELIABILITY_CHOICES = [(0, "Any"), (50, "At least 50 %"), (70, "At least 70 %"), (90, "At least 90 %")]


class EnvVarForm(forms.Form):
    """One environment variable of the workload; a row left empty is no variable."""

    name = forms.CharField(max_length=128, required=False, strip=False)
    value = forms.CharField(max_length=MAX_ENV_VALUE, required=False, strip=False)
    secret = forms.BooleanField(required=False)

    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return not data.get("name") and not data.get("value")


EnvFormSet = forms.formset_factory(EnvVarForm, extra=1, max_num=MAX_ENV, absolute_max=MAX_ENV, validate_max=True)
ENV_PREFIX = "env"
ENV_ROW = re.compile(r"workload\.env\[(\d+)\]\.(name|value|secret)")


def gpu_model_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The catalog's models, those on offer now first, each with how many GPUs and from what price."""
    on_offer = models_on_offer()
    offered, others = [], []
    for model in gpu_models().only("id", "name", "vram_gib"):
        label = f"{model.name} ({model.vram_gib} GiB)"
        seen = on_offer.get(model.id)
        if seen is None:
            others.append((model.id, label))
            continue
        price = seen.lowest_price_per_gpu_hour
        offered.append(
            (model.id, f"{label}: {seen.gpus} on offer{f' from {format_usd_short(price)}/GPU-hour' if price else ''}")
        )
    groups = []
    if offered:
        groups.append(("On offer now", offered))
    if others:
        groups.append(("Not on offer now (providers who come online may bid)", others))
    return groups


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
    model = forms.CharField(
        max_length=200,
        required=False,
        label="Model to serve",
        help_text="For the inference server: the Hugging Face model it serves, e.g. Qwen/Qwen2.5-7B-Instruct.",
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
    open_ended = forms.BooleanField(
        required=False,
        label="Open-ended",
        help_text="Runs while you fund it, as on Akash: the hours above are what the first deposit pays for; "
        "top it up (or let it top up automatically) to keep it running.",
    )
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
        widget=forms.RadioSelect,  # its choices are sentences: a select cuts them off on narrow screens
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
        required=False,
        widget=forms.Textarea,
        label="Workload file (YAML)",
        help_text="Our workload file, or an Akash SDL file (deploy.yaml) as it is.",
    )
    # what an Akash SDL file does not say: how long, and a maximum in dollars where its price is in AKT
    sdl_duration_hours = forms.IntegerField(
        min_value=1,
        max_value=720,
        required=False,
        label="SDL file: how long (h)",
        help_text=f"Empty: open-ended, as on Akash: it runs while funded (the first deposit pays for "
        f"{OPEN_ENDED_DEPOSIT_HOURS} h).",
    )
    sdl_max_price_per_gpu_hour = DollarsField(
        max_dollars=1_000_000,
        required=False,
        label="SDL file: maximum per GPU-hour ($)",
        help_text="Needed when the file's price is in AKT; overrides the file's price when set.",
        error_messages={
            "invalid": "A price in dollars, e.g. 2.50.",
            "not_positive": "A price above $0 and at most $1,000,000.",
            "too_large": "A price above $0 and at most $1,000,000.",
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = self.fields["gpu_models"]
        assert isinstance(models, forms.ChoiceField)
        models.choices = gpu_model_choices()
        self.spec: OrderSpec | None = None
        # the rows of environment variables; a post without them (the API's shape, older pages) has none
        rows = self.data if self.is_bound and f"{ENV_PREFIX}-TOTAL_FORMS" in self.data else None
        self.env = EnvFormSet(rows, prefix=ENV_PREFIX, initial=None if rows else self.initial.get("env"))
        self.env_rows: list[EnvVarForm] = []  # those sent as the workload's env, in order
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
        model = (data.get("model") or "").strip()
        if data.get("template") == "inference" and model:
            if not HF_MODEL.fullmatch(model):
                self.add_error("model", "A Hugging Face model id, e.g. Qwen/Qwen2.5-7B-Instruct.")
                return None
            command = with_model(command, model)
        workload: dict[str, Any] = {"image": data.get("image") or "", "ports": ports}
        if self.env.is_bound:
            self.env_rows = [row for row in self.env.forms if row.is_valid() and not row.is_blank()]
            workload["env"] = [
                {
                    "name": row.cleaned_data["name"],
                    "value": row.cleaned_data["value"],
                    "secret": row.cleaned_data["secret"],
                }
                for row in self.env_rows
            ]
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
        hours = {"deposit_hours" if data.get("open_ended") else "duration_hours": data["duration_hours"]}
        return {
            "name": data.get("name") or "",
            "workload": workload,
            "resources": resources,
            **hours,
            "max_price_per_hour": data["max_price_per_gpu_hour"] * data["gpu_count"],
            "bid_window_seconds": data["bid_window_seconds"],
            "pricing_rule": data["pricing_rule"],
            "verification": data["verification"],
            "min_reputation": (data.get("min_reliability") or 0) * 10,
        }

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        if self.env.is_bound and cleaned.get("mode") != "yaml" and not self.env.is_valid():
            self.add_error(None, "Environment variables: fix the rows marked below.")
        if self.errors:
            return cleaned
        raw = self.spec_data()
        if raw is None:
            return cleaned
        if cleaned.get("mode") == "yaml" and looks_like_sdl(raw):
            self._read_sdl(raw, cleaned)
            return cleaned
        serializer = OrderSpecSerializer(data=raw)
        if serializer.is_valid():
            self.spec = serializer.validated_data["spec"]
            return cleaned
        yaml_mode = cleaned.get("mode") == "yaml"
        env_marked = False
        for path, message in error_paths(serializer.errors):
            row = None if yaml_mode else ENV_ROW.fullmatch(path)
            if row is not None:  # beside the row's field, and once above the button
                self.env_rows[int(row[1])].add_error(row[2], message)
                if not env_marked:
                    self.add_error(None, "Environment variables: fix the rows marked below.")
                    env_marked = True
                continue
            if path == "workload.env" and not yaml_mode:
                self.add_error(None, f"Environment variables: {message}")
                continue
            field = None if yaml_mode else FIELD_OF.get(path.split("[")[0])
            if field is None and yaml_mode:
                self.add_error("workload_file", f"{path}: {message}" if path != "non_field_errors" else message)
            else:
                self.add_error(field, message if field else f"{path}: {message}")
        return cleaned

    def _read_sdl(self, document: dict, cleaned: dict) -> None:
        """An Akash SDL file, with the hours and price given beside it; each problem at its path."""
        terms = {
            "duration_hours": cleaned.get("sdl_duration_hours"),
            "max_price_per_gpu_hour": cleaned.get("sdl_max_price_per_gpu_hour"),
        }
        try:
            self.spec = order_spec(document, terms=terms)
        except ValidationFailed as exc:
            for path, messages in exc.fields.items():
                if path == "max_price_per_hour" and not terms["max_price_per_gpu_hour"]:
                    self.add_error(
                        "sdl_max_price_per_gpu_hour", messages[0].removesuffix(PRICE_HINT) + ": give it here."
                    )
                else:
                    for message in messages:
                        self.add_error("workload_file", message if message.endswith(path) else f"{path}: {message}")

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
            "open_ended": spec.open_ended,
            "gpus": spec.gpu_count,
        }


class OfferFilterForm(forms.Form):
    """The offers page's filters. A value that is not valid filters nothing and says why beside its field."""

    gpu_model = forms.CharField(required=False, max_length=64)
    min_vram = forms.IntegerField(required=False, min_value=0, max_value=10_000, label="Min VRAM (GiB)")
    gpu_count = forms.IntegerField(required=False, min_value=1, max_value=64, label="GPUs free at least")
    region = forms.CharField(required=False, max_length=64)
    max_price = DollarsField(
        required=False,
        max_dollars=1_000_000,
        label="Max $ per GPU-hour",
        error_messages={"invalid": "A price in dollars, e.g. 1.50.", "precision": "At most six decimals."},
    )
    verified = forms.ChoiceField(required=False, choices=[("", "Either"), ("yes", "Verified"), ("no", "Not verified")])
    min_reliability = forms.TypedChoiceField(required=False, choices=RELIABILITY_CHOICES, coerce=int)
    sort = forms.ChoiceField(
        required=False,
        choices=[("price", "Price"), ("reliability", "Reliability"), ("vram", "VRAM"), ("available", "GPUs free")],
    )

    def filters(self) -> OfferFilters:
        """What the valid fields ask for (call after is_valid())."""
        data = getattr(self, "cleaned_data", {})
        return OfferFilters(
            gpu_model=data.get("gpu_model") or None,
            min_vram_gib=data.get("min_vram"),
            gpu_count=data.get("gpu_count"),
            region=(data.get("region") or "").strip() or None,
            verified={"yes": True, "no": False}.get(data.get("verified") or ""),
            max_price_per_gpu_hour=data.get("max_price"),
            min_reputation=int(data.get("min_reliability") or 0) * 10 or None,
        )

    def sort_key(self) -> str:
        return getattr(self, "cleaned_data", {}).get("sort") or "price"


def offer_order_initial(offer: ProviderGpu) -> dict[str, Any]:
    """The new-order form filled from an offer row: that model, and a maximum price just above its
    asking price (5 % more, rounded up to the cent) so that the provider can bid it."""
    initial: dict[str, Any] = {"gpu_models": [offer.gpu_model_id], "min_vram_gib": None}
    if offer.price_per_gpu_hour:
        above = -(-offer.price_per_gpu_hour * 105 // 100)  # micro-dollars, rounded up
        cents = -(-above // 10_000)
        initial["max_price_per_gpu_hour"] = f"{cents // 100}.{cents % 100:02d}"
    return initial
