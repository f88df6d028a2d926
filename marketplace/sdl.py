"""Akash SDL (``deploy.yaml``, versions "2.0" and "2.1") read as an order.

A document with ``services`` and ``profiles`` or ``deployment`` at its top is an SDL file: it is
translated to our order's shape (``marketplace.spec``), checked by the same rules, and every
problem is reported at its path in the file. What the file asks and we cannot honour is refused by
name (``"`endpoints` (IP leases) is not supported: services.web.expose[0].to[0].ip"``), never
ignored. docs/SDL.md is the table of what maps to what.

What the SDL does not say comes beside the file (the API's query parameters,
``spec.SdlTermsSerializer``; fields on the form): a duration (without one the order is open-ended,
as on Akash) and a maximum in dollars where the file's price is in a currency without a dollar rate
here. The order keeps the file, with the values of secret-looking variables hidden.
"""

import copy
import difflib
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from core.errors import ValidationFailed
from core.money import format_usd_short
from core.validation import storable_json
from protocol.catalog import GPU_CATALOG, CatalogEntry

VERSIONS = ("2.0", "2.1")
SDL_FORMAT = "akash-sdl"
# Akash prices a lease per block; its consoles turn that into hours at this average block time.
BLOCK_SECONDS = Decimal("6.098")
# Denominations worth a micro-dollar each: ACT (Akash's dollar-pegged compute credit) and USDC,
# by name and as the IBC denomination Akash lists for USDC.
DOLLAR_DENOMS = frozenset({"uact", "uusdc", "ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71E56F2F1"})
# Variables whose names say they hold a secret are kept as secrets (never shown again).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH", re.I)
HIDDEN = "(secret: hidden)"
# Akash's GPU model names (its provider GPU database's) that are not our catalog family tokens.
GPU_ALIASES = {
    "rtxa6000": "a6000",
    "a6000ada": "rtx6000ada",
    "rtx6000-ada": "rtx6000ada",
    "6000ada": "rtx6000ada",
    "4090": "rtx4090",
    "3090": "rtx3090",
}
INTERFACES = {"pcie": {"pcie", "nvl"}, "sxm": {"sxm"}, "sxm4": {"sxm"}, "sxm5": {"sxm"}}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpPeE]i?)?[bB]?\s*$")
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
GIB = 1024**3
# What the API says beside its refusal of a file without a price in dollars (the form asks in a field).
PRICE_HINT = ". Send max_price_per_hour (micro-dollars an hour for the order) beside the file."


def looks_like_sdl(data: Any) -> bool:
    return isinstance(data, dict) and "services" in data and ("profiles" in data or "deployment" in data)


@dataclass
class Translation:
    """The order the file asks for (our spec's shape), where each part came from, and what was
    made of the file, for the client."""

    order: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)  # our field's path -> its path in the file
    notes: list[str] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)  # the file, secret values hidden
    denomination: str = ""  # the file's price's, where it has no dollar rate here
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # volume -> (mount, its path in the file)
    ram_volumes: dict[str, str] = field(default_factory=dict)  # volume -> its path in the file
    persistent: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # volume -> (GiB, class, path)

    def where(self, path: str) -> str:
        """The file's path for one of our field paths (the longest origin that holds it)."""
        best = ""
        for ours in self.origins:
            if (path == ours or path.startswith((ours + ".", ours + "["))) and len(ours) > len(best):
                best = ours
        return self.origins[best] + path[len(best) :] if best else path

    def record(self) -> dict[str, Any]:
        """What the order keeps: the file as YAML (its values of secrets hidden) and the notes."""
        text = yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True, width=100)
        return storable_json(
            {"format": SDL_FORMAT, "version": str(self.document.get("version")), "text": text, "notes": self.notes}
        )


class _Problems:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}
        self.unsupported = False

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path or "non_field_errors", []).append(message)

    def not_supported(self, feature: str, path: str, *, yet: bool = False) -> None:
        self.unsupported = True
        self.add(path, f"{feature} is not supported{' yet' if yet else ''}: {path}")

    def raise_if_any(self) -> None:
        if not self.fields:
            return
        first_path, messages = next(iter(self.fields.items()))
        message = messages[0] if messages[0].endswith(first_path) else f"{first_path}: {messages[0]}"
        raise ValidationFailed(
            f"The SDL file cannot be ordered as it is. {message}",
            code="sdl_not_supported" if self.unsupported else "sdl_invalid",
            fields=self.fields,
        )


def _known(data: dict, allowed: set[str], path: str, problems: _Problems, *, features: dict[str, str]) -> None:
    """Keys the SDL has that we cannot honour, by name; keys SDL does not have, as such."""
    for key in data:
        where = f"{path}.{key}" if path else str(key)
        if key in allowed:
            continue
        if key in features:
            problems.not_supported(features[key], where)
        else:
            problems.add(where, f"Not an SDL field: {where}")


def _mapping(value: Any, path: str, problems: _Problems) -> dict:
    if isinstance(value, dict):
        return value
    if value is not None:
        problems.add(path, f"Expected a mapping at {path}.")
    return {}


def cpu_units(value: Any) -> Decimal | None:
    """``2``, ``0.5``, ``"0.5"`` or ``"100m"`` as CPUs; None when it is none of them."""
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    try:
        units = Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        return None
    return units if units.is_finite() and units > 0 else None


def quantity_bytes(value: Any) -> int | None:
    """``512Mi``, ``2Gi``, ``1G``, ``1.5Gi`` or a number of bytes; None when it is none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    match = _QUANTITY.match(str(value))
    if not match:
        return None
    number, unit = Decimal(match.group(1)), match.group(2) or ""
    if unit:
        base = 1024 if unit.endswith("i") else 1000
        number *= Decimal(base) ** _POWERS[unit[0].lower()]
    result = int(number.to_integral_value(rounding="ROUND_CEILING"))
    return result if result > 0 else None


def gpu_candidates(name: str, *, ram_gib: int | None = None, interface: str | None = None) -> list[CatalogEntry]:
    """The catalog's models an Akash GPU name (``h100``, ``a100`` with ``ram: 80Gi``, ``rtx4090``)
    stands for: every model of that family, narrowed by memory and interface where given."""
    token = re.sub(r"[\s_]+", "", name.lower())
    token = GPU_ALIASES.get(token, token)
    candidates = [entry for entry in GPU_CATALOG if entry.family == token or entry.id == token]
    if ram_gib is not None:
        candidates = [entry for entry in candidates if entry.vram_gib == ram_gib]
    if interface is not None:
        forms = INTERFACES.get(interface.lower(), {interface.lower()})
        candidates = [entry for entry in candidates if entry.form in forms]
    return candidates


def known_gpu_names() -> list[str]:
    return sorted({entry.family for entry in GPU_CATALOG} | set(GPU_ALIASES))


def translate(data: dict, terms: dict[str, Any]) -> Translation:
    """The order an SDL file asks for, with ``terms`` (what the file does not say: its duration,
    a maximum in dollars, the auction's terms). Raises ValidationFailed naming each problem's path."""
    problems = _Problems()
    _known(
        data,
        {"version", "services", "profiles", "deployment"},
        "",
        problems,
        features={"endpoints": "`endpoints` (IP leases)"},
    )
    version = str(data.get("version", ""))
    if version not in VERSIONS:
        problems.add("version", f'SDL versions "2.0" and "2.1" are read here; this file says {version!r}.')
    services = _mapping(data.get("services"), "services", problems)
    profiles = _mapping(data.get("profiles"), "profiles", problems)
    deployment = _mapping(data.get("deployment"), "deployment", problems)
    _known(profiles, {"compute", "placement"}, "profiles", problems, features={})
    compute = _mapping(profiles.get("compute"), "profiles.compute", problems)
    placements = _mapping(profiles.get("placement"), "profiles.placement", problems)
    problems.raise_if_any()

    if not services:
        problems.add("services", "The file names no service.")
    elif len(services) > 1:
        problems.not_supported(
            f"A deployment of several services ({', '.join(map(str, services))})", "services", yet=True
        )
    if len(placements) > 1:
        problems.not_supported("A deployment over several placement groups", "profiles.placement", yet=True)
    problems.raise_if_any()

    service_name = str(next(iter(services)))
    service_path = f"services.{service_name}"
    service = _mapping(services[service_name], service_path, problems)
    placed = _mapping(deployment.get(service_name), f"deployment.{service_name}", problems)
    if not placed:
        problems.add(
            f"deployment.{service_name}", f"The service {service_name} is not deployed: deployment.{service_name}"
        )
        problems.raise_if_any()
    group_name = str(next(iter(placed)))
    if len(placed) > 1:
        problems.not_supported("A service placed in several groups", f"deployment.{service_name}", yet=True)
    placed_path = f"deployment.{service_name}.{group_name}"
    placement_entry = _mapping(placed[group_name], placed_path, problems)
    _known(placement_entry, {"profile", "count"}, placed_path, problems, features={})
    profile_name = str(placement_entry.get("profile", ""))
    count = placement_entry.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        problems.add(f"{placed_path}.count", f"A whole number of at least 1: {placed_path}.count")
    elif count > 1:
        problems.not_supported(f"`count: {count}` (replicas)", f"{placed_path}.count", yet=True)
    if profile_name not in compute:
        problems.add(f"{placed_path}.profile", f"No compute profile named {profile_name!r}: {placed_path}.profile")
    if group_name not in placements:
        problems.add(placed_path, f"No placement group named {group_name!r} in profiles.placement: {placed_path}")
    problems.raise_if_any()

    translation = Translation(order={}, document=_hidden(data, service_name))
    workload = _workload(service, service_path, problems, translation)
    resources = _resources(compute[profile_name], f"profiles.compute.{profile_name}", problems, translation)
    workload["volumes"] = _volumes(problems, translation)
    group_path = f"profiles.placement.{group_name}"
    group = _mapping(placements[group_name], group_path, problems)
    order: dict[str, Any] = {"name": service_name, "workload": workload, "resources": resources}
    _placement(group, group_path, profile_name, problems, translation, order)
    problems.raise_if_any()
    _terms(terms, order, translation, problems)
    problems.raise_if_any()
    translation.order = order
    return translation


def _volumes(problems: _Problems, translation: Translation) -> list[dict[str, Any]]:
    """The service's mounts joined to the profile's volumes: shared memory at /dev/shm (already
    ``shm_gib``), persistent volumes as the workload's; a volume without its other half refused."""
    volumes: list[dict[str, Any]] = []
    for volume, (mount, where) in translation.mounts.items():
        if volume in translation.ram_volumes and mount == "/dev/shm":  # noqa: S108 - in the container
            continue
        if volume not in translation.persistent:
            problems.add(where, f"No persistent or shared-memory volume named {volume!r} in the profile: {where}")
            continue
        size_gib, storage_class, _ = translation.persistent[volume]
        translation.origins[f"workload.volumes[{len(volumes)}]"] = where
        volumes.append({"name": volume, "mount": mount, "size_gib": size_gib, "storage_class": storage_class})
        translation.notes.append(
            f"Volume {volume} ({size_gib} GiB{', class ' + storage_class if storage_class else ''}) at {mount}: kept "
            "across restarts for the lease's life, deleted when it ends."
        )
    for volume, (_, _, where) in translation.persistent.items():
        if volume not in translation.mounts:
            problems.add(
                where, f"A persistent volume is mounted through the service's params.storage.{volume}: {where}"
            )
    return volumes


def _hidden(data: dict, service_name: str) -> dict:
    """The file with the values of secret-looking variables replaced."""
    document = copy.deepcopy(data)
    service = (document.get("services") or {}).get(service_name)
    if isinstance(service, dict) and isinstance(service.get("env"), list):
        hidden = []
        for item in service["env"]:
            name, _, _ = str(item).partition("=")
            hidden.append(f"{name}={HIDDEN}" if SECRET_NAME.search(name) and "=" in str(item) else item)
        service["env"] = hidden
    return document


def _workload(service: dict, path: str, problems: _Problems, translation: Translation) -> dict[str, Any]:
    _known(
        service,
        {"image", "command", "args", "env", "expose", "dependencies", "params"},
        path,
        problems,
        features={"credentials": "`credentials` (images from private registries)"},
    )
    params = _mapping(service.get("params"), f"{path}.params", problems)
    _known(params, {"storage"}, f"{path}.params", problems, features={"permissions": "`params.permissions`"})
    for name, mount in _mapping(params.get("storage"), f"{path}.params.storage", problems).items():
        where = f"{path}.params.storage.{name}"
        mount = _mapping(mount, where, problems)
        _known(mount, {"mount", "readOnly"}, where, problems, features={})
        if mount.get("readOnly") in (True, "true"):
            problems.not_supported("A read-only mount", f"{where}.readOnly", yet=True)
        translation.mounts[str(name)] = (str(mount.get("mount", "")), where)
    workload: dict[str, Any] = {"image": service.get("image")}
    translation.origins["workload.image"] = f"{path}.image"
    for part in ("command", "args"):
        if part in service and service[part] is not None:
            workload[part] = service[part]
            translation.origins[f"workload.{part}"] = f"{path}.{part}"
    env = service.get("env") or []
    if not isinstance(env, list):
        problems.add(f"{path}.env", f"A list of NAME=value lines: {path}.env")
        env = []
    variables, secrets = [], []
    for index, item in enumerate(env):
        where = f"{path}.env[{index}]"
        if not isinstance(item, str):
            problems.add(where, f"A NAME=value line: {where}")
            continue
        name, _, value = item.partition("=")
        secret = bool(SECRET_NAME.search(name))
        variables.append({"name": name, "value": value, "secret": secret})
        translation.origins[f"workload.env[{len(variables) - 1}]"] = where
        if secret:
            secrets.append(name)
    if variables:
        workload["env"] = variables
        translation.origins["workload.env"] = f"{path}.env"
    if secrets:
        translation.notes.append(
            f"Kept as secrets (never shown again; only the lease's provider receives them): {', '.join(secrets)}."
        )
    workload["ports"] = _ports(service.get("expose") or [], f"{path}.expose", problems, translation)
    return workload


def _ports(expose: Any, path: str, problems: _Problems, translation: Translation) -> list[dict]:
    if not isinstance(expose, list):
        problems.add(path, f"A list of exposed ports: {path}")
        return []
    ports: list[dict] = []
    for index, entry in enumerate(expose):
        where = f"{path}[{index}]"
        if not isinstance(entry, dict):
            problems.add(where, f"A mapping with a port: {where}")
            continue
        _known(
            entry,
            {"port", "as", "proto", "to", "http_options"},
            where,
            problems,
            features={"accept": "`accept` (hostnames of your own)"},
        )
        published_as = entry.get("as", entry.get("port"))
        if not isinstance(published_as, int) or isinstance(published_as, bool) or not 1 <= published_as <= 65535:
            problems.add(f"{where}.as", f"A port, 1 to 65535: {where}.as")
            continue
        protocol = str(entry.get("proto", "tcp")).lower()
        if protocol not in ("tcp", "udp"):
            problems.add(f"{where}.proto", f"tcp or udp: {where}.proto")
        public = False
        for target_index, target in enumerate(entry.get("to") or []):
            target_path = f"{where}.to[{target_index}]"
            if not isinstance(target, dict):
                problems.add(target_path, f"A mapping (global, service or ip): {target_path}")
                continue
            _known(target, {"global", "service"}, target_path, problems, features={"ip": "`endpoints` (IP leases)"})
            public = public or target.get("global") is True
        if not public:  # only other services of the deployment reach it: one service has none
            translation.notes.append(
                f"{where}: port {entry.get('port')} is not exposed globally, so it is not published."
            )
            continue
        translation.origins[f"workload.ports[{len(ports)}]"] = where
        ports.append({"port": entry.get("port"), "protocol": protocol})
        if "as" in entry and entry["as"] != entry.get("port"):
            translation.notes.append(
                f"{where}: port {entry.get('port')} is published where the provider can (the lease page shows the "
                f"address); `as: {entry['as']}` cannot be promised."
            )
    if ports:
        translation.origins["workload.ports"] = path
    return ports


def _resources(profile: Any, path: str, problems: _Problems, translation: Translation) -> dict[str, Any]:
    profile = _mapping(profile, path, problems)
    _known(profile, {"resources"}, path, problems, features={})
    path = f"{path}.resources"
    resources_in = _mapping(profile.get("resources"), path, problems)
    _known(resources_in, {"cpu", "memory", "storage", "gpu"}, path, problems, features={})
    resources: dict[str, Any] = {}

    cpu = _mapping(resources_in.get("cpu"), f"{path}.cpu", problems)
    units = cpu_units(cpu.get("units"))
    if units is None:
        problems.add(f"{path}.cpu.units", f"CPUs such as 2, 0.5 or 100m: {path}.cpu.units")
    else:
        resources["cpu_cores"] = max(1, math.ceil(units))
        translation.origins["resources.cpu_cores"] = f"{path}.cpu.units"
        if units != resources["cpu_cores"]:
            translation.notes.append(f"CPU {cpu.get('units')} → {resources['cpu_cores']} (orders are in whole cores).")

    memory = _mapping(resources_in.get("memory"), f"{path}.memory", problems)
    size = quantity_bytes(memory.get("size"))
    if size is None:
        problems.add(f"{path}.memory.size", f"A size such as 512Mi or 16Gi: {path}.memory.size")
    else:
        resources["memory_gib"] = -(-size // GIB)
        translation.origins["resources.memory_gib"] = f"{path}.memory.size"
        if size % GIB:
            translation.notes.append(
                f"Memory {memory.get('size')} → {resources['memory_gib']} GiB (orders are in whole GiB)."
            )

    storage = resources_in.get("storage")
    volumes = storage if isinstance(storage, list) else [storage]
    total = 0
    for index, volume in enumerate(volumes):
        where = f"{path}.storage[{index}]" if isinstance(storage, list) else f"{path}.storage"
        volume = _mapping(volume, where, problems)
        _known(volume, {"name", "size", "attributes"}, where, problems, features={})
        attributes = _mapping(volume.get("attributes"), f"{where}.attributes", problems)
        ram = attributes.get("class") == "ram"
        persistent = not ram and (
            attributes.get("persistent") in (True, "true") or attributes.get("class") not in (None, "ephemeral")
        )
        amount = quantity_bytes(volume.get("size"))
        if amount is None:
            problems.add(f"{where}.size", f"A size such as 1Gi or 100Gi: {where}.size")
            continue
        if ram:  # shared memory: the container's /dev/shm, out of its memory
            if resources.get("shm_gib"):
                problems.not_supported("A second shared-memory volume", where)
                continue
            resources["shm_gib"] = -(-amount // GIB)
            translation.origins["resources.shm_gib"] = f"{where}.size"
            translation.ram_volumes[str(volume.get("name", ""))] = where
            translation.notes.append(f"Shared memory ({volume.get('size')}) → /dev/shm of {resources['shm_gib']} GiB.")
            continue
        if persistent:  # a volume of the lease's own: mounted through the service's params.storage
            storage_class = str(attributes.get("class") or "")
            translation.persistent[str(volume.get("name", ""))] = (-(-amount // GIB), storage_class, where)
        total += amount  # persistent volumes are part of the order's storage, as ephemeral storage is
    if total:
        resources["storage_gib"] = -(-total // GIB)
        translation.origins["resources.storage_gib"] = f"{path}.storage"

    _gpu(_mapping(resources_in.get("gpu"), f"{path}.gpu", problems), f"{path}.gpu", problems, translation, resources)
    return resources


def _gpu(gpu: dict, path: str, problems: _Problems, translation: Translation, resources: dict[str, Any]) -> None:
    _known(gpu, {"units", "attributes"}, path, problems, features={})
    units = gpu.get("units", 0)
    if isinstance(units, str) and units.isdigit():
        units = int(units)
    if not isinstance(units, int) or isinstance(units, bool) or units < 1:
        problems.add(
            f"{path}.units",
            f"This market rents GPUs: give the service at least one (gpu: units: 1, attributes: vendor: nvidia): "
            f"{path}.units",
        )
        return
    resources["gpu_count"] = units
    translation.origins["resources.gpu_count"] = f"{path}.units"
    vendors = _mapping(
        _mapping(gpu.get("attributes"), f"{path}.attributes", problems).get("vendor"),
        f"{path}.attributes.vendor",
        problems,
    )
    for vendor in vendors:
        if vendor != "nvidia":
            problems.not_supported(
                f"`{vendor}` GPUs (only NVIDIA GPUs are offered)", f"{path}.attributes.vendor.{vendor}"
            )
    wanted = vendors.get("nvidia") or []
    nvidia_path = f"{path}.attributes.vendor.nvidia"
    translation.origins["resources.gpu_models"] = nvidia_path
    translation.origins["resources.min_vram_gib"] = nvidia_path
    if not isinstance(wanted, list):
        problems.add(nvidia_path, f"A list of models: {nvidia_path}")
        return
    if not wanted:  # any NVIDIA GPU
        resources["gpu_models"], resources["min_vram_gib"] = [], 1
        translation.notes.append("Any NVIDIA GPU: the file names no model.")
        return
    models: list[str] = []
    for index, item in enumerate(wanted):
        where = f"{nvidia_path}[{index}]"
        item = _mapping(item, where, problems)
        _known(item, {"model", "ram", "interface"}, where, problems, features={})
        name = str(item.get("model", "")).strip()
        ram_gib = None
        if item.get("ram") is not None:
            ram = quantity_bytes(item["ram"])
            ram_gib = round(ram / GIB) if ram else None
            if ram_gib is None:
                problems.add(f"{where}.ram", f"A size such as 80Gi: {where}.ram")
                continue
        interface = str(item["interface"]) if item.get("interface") is not None else None
        if not name or name == "*":
            found = [e for e in GPU_CATALOG if ram_gib is None or e.vram_gib == ram_gib]
        else:
            found = gpu_candidates(name, ram_gib=ram_gib, interface=interface)
        if not found:
            close = difflib.get_close_matches(name.lower(), known_gpu_names(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            said = " ".join(filter(None, [name, f"ram {item.get('ram')}" if ram_gib else "", interface or ""]))
            problems.add(
                f"{where}.model",
                f"No GPU in the catalog is {said!r}.{hint} Known names: {', '.join(known_gpu_names())}: {where}.model",
            )
            continue
        if len(found) > 1:
            translation.notes.append(f"GPU {name or 'any'} → any of {', '.join(e.name for e in found)}.")
        models += [entry.id for entry in found if entry.id not in models]
    resources["gpu_models"] = models


def _placement(
    group: dict, path: str, profile_name: str, problems: _Problems, translation: Translation, order: dict[str, Any]
) -> None:
    _known(group, {"attributes", "signedBy", "pricing"}, path, problems, features={})
    attributes = _mapping(group.get("attributes"), f"{path}.attributes", problems)
    if attributes:
        order["placement"] = {str(k): str(v) for k, v in attributes.items()}
        translation.origins["placement"] = f"{path}.attributes"
        translation.notes.append(
            "Only providers with "
            + ", ".join(f"{k}={v}" for k, v in order["placement"].items())
            + " may bid (a provider's region and attributes)."
        )
    signed = _mapping(group.get("signedBy"), f"{path}.signedBy", problems)
    _known(signed, {"anyOf", "allOf"}, f"{path}.signedBy", problems, features={})
    if signed.get("anyOf") or signed.get("allOf"):
        order["verification"] = "verified"
        translation.origins["verification"] = f"{path}.signedBy"
        translation.notes.append(
            "signedBy (Akash auditors) → only providers whose GPUs passed this market's own checks may bid; "
            "Akash auditors' signatures are not read here."
        )
    pricing = _mapping(group.get("pricing"), f"{path}.pricing", problems)
    price = _mapping(pricing.get(profile_name), f"{path}.pricing.{profile_name}", problems)
    if not price:
        return
    price_path = f"{path}.pricing.{profile_name}"
    _known(price, {"denom", "amount"}, price_path, problems, features={})
    denom = str(price.get("denom", ""))
    try:
        amount = Decimal(str(price.get("amount")))
    except InvalidOperation:
        problems.add(f"{price_path}.amount", f"A number: {price_path}.amount")
        return
    if not amount.is_finite() or amount <= 0:
        problems.add(f"{price_path}.amount", f"A number above 0: {price_path}.amount")
        return
    if denom in DOLLAR_DENOMS:
        per_hour = int((amount * 3600 / BLOCK_SECONDS).to_integral_value(rounding="ROUND_FLOOR"))
        order["max_price_per_hour"] = per_hour
        translation.origins["max_price_per_hour"] = f"{price_path}.amount"
        translation.notes.append(
            f"Price {price['amount']} {denom} a block → at most {format_usd_short(per_hour)} an hour "
            f"(blocks of {BLOCK_SECONDS} s)."
        )
    else:
        translation.origins["max_price_per_hour"] = f"{price_path}.denom"
        translation.denomination = denom


def _terms(terms: dict[str, Any], order: dict[str, Any], translation: Translation, problems: _Problems) -> None:
    for name, value in terms.items():  # checked beside the file (spec.SdlTermsSerializer, the form's fields)
        if value is None or value == "":
            continue
        if name == "max_price_per_gpu_hour":
            order["max_price_per_hour"] = value * order["resources"].get("gpu_count", 1)
            translation.origins["max_price_per_hour"] = name
            continue
        if name == "max_price_per_hour":
            translation.origins["max_price_per_hour"] = name
        order[name] = value
    if "max_price_per_hour" not in order:
        denomination = translation.denomination
        said = f"{denomination} has no dollar rate here" if denomination else "the file has no pricing for its profile"
        problems.add(
            "max_price_per_hour",
            f"Give the most you pay: {said}{PRICE_HINT}",
        )
