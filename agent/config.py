"""The agent's configuration: a YAML file, with environment variables overriding it."""

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

ENV_PREFIX = "GPUMARKET_AGENT_"
RUNTIMES = ("docker", "kubernetes")
PROVERS = ("auto", "cuda", "cpu", "off")  # what answers proof-of-GPU checks (agent.proving)


class ConfigError(ValueError):
    """The configuration is missing or invalid; the message says what to fix."""


@dataclass
class PricingPolicy:
    # micro-dollars per GPU-hour, by catalog id (e.g. "h100-sxm-80gb": 2400000)
    per_gpu_hour: dict[str, int] = field(default_factory=dict)
    floor_per_hour: int = 0
    max_duration_hours: int = 720
    # open-ended orders (as on Akash) run while their client funds them, with no end the order names
    open_ended: bool = True
    allowed_registries: list[str] = field(default_factory=list)
    denied_images: list[str] = field(default_factory=list)


@dataclass
class DockerSettings:
    network: str = "bridge"
    host_address: str = "0.0.0.0"  # noqa: S104 - where lease ports are published
    gpus: bool = True
    pull_images: bool = True
    name_prefix: str = "gpumarket-lease-"  # containers are <prefix><lease id>; the agent owns only those


@dataclass
class KubernetesSettings:
    kubeconfig: str = ""  # empty: the in-cluster service account, else this kubeconfig file
    context: str = ""
    service_type: str = "NodePort"  # or LoadBalancer
    node_address: str = ""  # the public address NodePort endpoints are reached at
    runtime_class: str = "nvidia"
    namespace_prefix: str = "gpumarket-lease-"
    # NVIDIA's DCGM exporter (the GPU Operator deploys it: http://nvidia-dcgm-exporter.gpu-operator:9400/metrics):
    # where the agent reads each lease's GPU utilisation and memory; empty: no readings
    gpu_metrics_url: str = ""
    # a lease volume's class (Akash's beta1, beta2, beta3) -> this cluster's StorageClass; unmapped: the default
    storage_classes: dict[str, str] = field(default_factory=dict)


@dataclass
class DeclaredGpus:
    model: str  # a catalog id (h100-sxm-80gb) or the name NVML reports
    count: int
    memory_mib: int = 0


@dataclass
class DeclaredInventory:
    """What to report instead of discovering it: for development and demos on a host without
    NVIDIA GPUs. The marketplace reserves what it awards, so free is reported as total."""

    gpus: list[DeclaredGpus] = field(default_factory=list)
    cpu_cores: int = 0
    memory_gib: int = 0
    storage_gib: int = 0
    node: str = ""  # the node's name; empty: this host's name


@dataclass
class AgentConfig:
    marketplace_url: str
    token: str
    runtime: str = "docker"
    signing_key_file: str = "signing-key.hex"
    heartbeat_seconds: int = 30
    usage_seconds: int = 60
    poll_seconds: int = 15  # order polling while the push socket is down
    deploy_timeout_seconds: int = 900
    state_dir: str = "agent-state"
    pricing: PricingPolicy = field(default_factory=PricingPolicy)
    docker: DockerSettings = field(default_factory=DockerSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    declared_inventory: DeclaredInventory | None = None
    # what answers proof-of-GPU checks: auto (CUDA PyTorch where installed), cuda, cpu, off
    prover: str = "auto"
    # hardware attestation: a command printing NVIDIA's attestation token for $GPUMARKET_ATTESTATION_NONCE
    attestation_command: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


_OVERRIDES = {
    "MARKETPLACE_URL": ("marketplace_url", str),
    "TOKEN": ("token", str),
    "RUNTIME": ("runtime", str),
    "SIGNING_KEY_FILE": ("signing_key_file", str),
    "HEARTBEAT_SECONDS": ("heartbeat_seconds", int),
    "USAGE_SECONDS": ("usage_seconds", int),
    "POLL_SECONDS": ("poll_seconds", int),
    "STATE_DIR": ("state_dir", str),
}


def load(path: str | Path | None, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read ``path`` (if given), apply ``GPUMARKET_AGENT_*`` overrides, and validate."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"No configuration at {path}: run `gpumarket-agent init` first.") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings.")
        data.update(loaded)
    for suffix, (key, kind) in _OVERRIDES.items():
        value = environ.get(ENV_PREFIX + suffix)
        if value is not None:
            try:
                data[key] = kind(value)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX + suffix} must be an integer.") from exc
    return validate(data)


def validate(data: dict[str, Any]) -> AgentConfig:
    known = set(AgentConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Unknown settings: {', '.join(unknown)}.")
    for required in ("marketplace_url", "token"):
        if not data.get(required):
            raise ConfigError(f"`{required}` is required (or {ENV_PREFIX}{required.upper()}).")
    url = urlparse(str(data["marketplace_url"]))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError("`marketplace_url` must be an http(s) URL, e.g. https://market.example.com.")
    if data.get("runtime", "docker") not in RUNTIMES:
        raise ConfigError(f"`runtime` must be one of: {', '.join(RUNTIMES)}.")
    for name, default, low, high in (
        # the marketplace counts a provider silent for 5 minutes as offline (and after 15 closes its
        # leases): heartbeats come well within that
        ("heartbeat_seconds", 30, 5, 240),
        # usage periods are counted in whole seconds: two is the shortest that always has one to sign
        ("usage_seconds", 60, 2, 3600),
        ("poll_seconds", 15, 1, 3600),
        ("deploy_timeout_seconds", 900, 30, 3600),
    ):
        value = data.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"`{name}` must be an integer from {low} to {high}.")
    pricing = data.get("pricing")
    pricing = {} if pricing is None else pricing
    if not isinstance(pricing, dict):
        raise ConfigError("`pricing` must be a mapping.")
    try:
        policy = PricingPolicy(**pricing)
    except TypeError as exc:
        raise ConfigError(f"`pricing`: {exc}") from exc
    if not isinstance(policy.open_ended, bool):
        raise ConfigError("`pricing.open_ended` must be true or false.")
    for model, price in policy.per_gpu_hour.items():
        if not isinstance(price, int) or isinstance(price, bool) or price <= 0:
            raise ConfigError(f"`pricing.per_gpu_hour.{model}` must be a positive integer (micro-dollars).")
    docker_data = data.get("docker")
    docker_data = {} if docker_data is None else docker_data
    if not isinstance(docker_data, dict):
        raise ConfigError("`docker` must be a mapping.")
    try:
        docker_settings = DockerSettings(**docker_data)
    except TypeError as exc:
        raise ConfigError(f"`docker`: {exc}") from exc
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}", str(docker_settings.name_prefix)):
        raise ConfigError("`docker.name_prefix` must start with a letter or digit; letters, digits, _ . - after.")
    network = str(docker_settings.network)
    if network in ("host", "default") or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}", network):
        # never the host's network (nor another container's): a tenant's container would reach
        # everything on the provider's own loopback and network (its agent, its Docker engine if
        # served on TCP, its services)
        raise ConfigError(
            "`docker.network` must be bridge, none, or the name of a network the provider created "
            "(not the host's own network, nor another container's)."
        )
    kube_data = data.get("kubernetes")
    kube_data = {} if kube_data is None else kube_data
    if not isinstance(kube_data, dict):
        raise ConfigError("`kubernetes` must be a mapping.")
    try:
        kube_settings = KubernetesSettings(**kube_data)
    except TypeError as exc:
        raise ConfigError(f"`kubernetes`: {exc}") from exc
    if kube_settings.service_type not in ("NodePort", "LoadBalancer"):
        raise ConfigError("`kubernetes.service_type` must be NodePort or LoadBalancer.")
    if kube_settings.gpu_metrics_url and not re.match(r"https?://[^/\s]+", str(kube_settings.gpu_metrics_url)):
        raise ConfigError("`kubernetes.gpu_metrics_url` must be an http(s) URL (the DCGM exporter's /metrics).")
    classes = kube_settings.storage_classes
    if not isinstance(classes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in classes.items()):
        raise ConfigError("`kubernetes.storage_classes` must map volume classes to StorageClass names.")
    command = data.get("attestation_command", [])
    if not isinstance(command, list) or not all(isinstance(part, str) and part for part in command):
        raise ConfigError("`attestation_command` must be a list of strings: the program and its arguments.")
    if data.get("prover", "auto") not in PROVERS:
        raise ConfigError(f"`prover` must be one of: {', '.join(PROVERS)}.")
    if data.get("declared_inventory") is not None and data.get("runtime", "docker") == "kubernetes":
        raise ConfigError("`declared_inventory` is for a Docker host: a cluster's nodes say what they have.")
    return AgentConfig(
        **{
            **data,
            "marketplace_url": str(data["marketplace_url"]).rstrip("/"),
            "pricing": policy,
            "docker": docker_settings,
            "kubernetes": kube_settings,
            "declared_inventory": _declared(data.get("declared_inventory")),
        }
    )


def _count(value: Any, name: str, *, low: int = 0, high: int = 10_000_000) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"`{name}` must be an integer from {low} to {high}.")
    return value


def _declared(data: Any) -> DeclaredInventory | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("`declared_inventory` must be a mapping.")
    unknown = sorted(set(data) - set(DeclaredInventory.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"`declared_inventory`: unknown settings: {', '.join(unknown)}.")
    lines = data.get("gpus") or []
    if not isinstance(lines, list):
        raise ConfigError("`declared_inventory.gpus` must be a list.")
    gpus = []
    for index, line in enumerate(lines):
        where = f"declared_inventory.gpus.{index}"
        if not isinstance(line, dict) or not isinstance(line.get("model"), str) or not line["model"].strip():
            raise ConfigError(f"`{where}` needs a `model` (a catalog id or an NVML name) and a `count`.")
        if set(line) - {"model", "count", "memory_mib"}:
            raise ConfigError(f"`{where}` takes only model, count and memory_mib.")
        gpus.append(
            DeclaredGpus(
                model=line["model"].strip(),
                count=_count(line.get("count"), f"{where}.count", low=1, high=100_000),
                memory_mib=_count(line.get("memory_mib", 0), f"{where}.memory_mib"),
            )
        )
    node = data.get("node", "")
    if not isinstance(node, str) or len(node) > 253:
        raise ConfigError("`declared_inventory.node` must be a name of at most 253 characters.")
    return DeclaredInventory(
        gpus=gpus,
        cpu_cores=_count(data.get("cpu_cores", 0), "declared_inventory.cpu_cores"),
        memory_gib=_count(data.get("memory_gib", 0), "declared_inventory.memory_gib"),
        storage_gib=_count(data.get("storage_gib", 0), "declared_inventory.storage_gib"),
        node=node,
    )
