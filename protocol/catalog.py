"""The GPU catalog: real models with their datasheet numbers, and a name normalizer.

Throughput figures are dense (no structured sparsity) tensor-core peaks from NVIDIA's datasheets
and architecture whitepapers; bf16 on GeForce cards is with FP32 accumulate. Memory in GiB as
marketed (the marketing "GB" of HBM/GDDR capacity), bandwidth in GB/s.

The normalizer maps what NVML (``nvmlDeviceGetName``) and GPU Feature Discovery labels
(``nvidia.com/gpu.product``) report to catalog ids. Both encode the same product names with
different separators, e.g. ``NVIDIA H100 80GB HBM3`` and ``NVIDIA-H100-80GB-HBM3``.
"""

import re
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    vendor: str
    architecture: str
    family: str  # the product family token the normalizer looks for
    form: str  # "sxm", "pcie" or "nvl"
    vram_gib: int
    memory_type: str
    interface: str
    memory_bandwidth_gbps: int
    int8_tops: Decimal
    bf16_tflops: Decimal


def _e(
    id: str,
    name: str,
    vendor: str,
    architecture: str,
    family: str,
    form: str,
    vram_gib: int,
    memory_type: str,
    interface: str,
    memory_bandwidth_gbps: int,
    int8: float,
    bf16: float,
) -> CatalogEntry:
    """A catalog row as the table below writes it (the throughputs as numbers, kept exact)."""
    return CatalogEntry(
        id,
        name,
        vendor,
        architecture,
        family,
        form,
        vram_gib,
        memory_type,
        interface,
        memory_bandwidth_gbps,
        int8_tops=Decimal(str(int8)),
        bf16_tflops=Decimal(str(bf16)),
    )


NVIDIA = "NVIDIA"

GPU_CATALOG: tuple[CatalogEntry, ...] = (
    _e("h200-sxm-141gb", "H200 SXM 141GB", NVIDIA, "Hopper", "h200", "sxm", 141, "HBM3e", "SXM5", 4800, 1979, 989),
    _e("h100-sxm-80gb", "H100 SXM 80GB", NVIDIA, "Hopper", "h100", "sxm", 80, "HBM3", "SXM5", 3350, 1979, 989),
    _e("h100-nvl-94gb", "H100 NVL 94GB", NVIDIA, "Hopper", "h100", "nvl", 94, "HBM3", "PCIe 5.0", 3900, 1671, 835),
    _e("h100-pcie-80gb", "H100 PCIe 80GB", NVIDIA, "Hopper", "h100", "pcie", 80, "HBM2e", "PCIe 5.0", 2000, 1513, 756),
    _e("a100-sxm-80gb", "A100 SXM 80GB", NVIDIA, "Ampere", "a100", "sxm", 80, "HBM2e", "SXM4", 2039, 624, 312),
    _e("a100-sxm-40gb", "A100 SXM 40GB", NVIDIA, "Ampere", "a100", "sxm", 40, "HBM2", "SXM4", 1555, 624, 312),
    _e("a100-pcie-80gb", "A100 PCIe 80GB", NVIDIA, "Ampere", "a100", "pcie", 80, "HBM2e", "PCIe 4.0", 1935, 624, 312),
    _e("a100-pcie-40gb", "A100 PCIe 40GB", NVIDIA, "Ampere", "a100", "pcie", 40, "HBM2", "PCIe 4.0", 1555, 624, 312),
    _e("l40s-48gb", "L40S", NVIDIA, "Ada Lovelace", "l40s", "pcie", 48, "GDDR6", "PCIe 4.0", 864, 733, 362),
    _e("l40-48gb", "L40", NVIDIA, "Ada Lovelace", "l40", "pcie", 48, "GDDR6", "PCIe 4.0", 864, 362, 181),
    _e(
        "rtx-6000-ada-48gb",
        "RTX 6000 Ada",
        NVIDIA,
        "Ada Lovelace",
        "rtx6000ada",
        "pcie",
        48,
        "GDDR6",
        "PCIe 4.0",
        960,
        728.5,
        364.2,
    ),
    _e("rtx-a6000-48gb", "RTX A6000", NVIDIA, "Ampere", "a6000", "pcie", 48, "GDDR6", "PCIe 4.0", 768, 309.7, 154.8),
    _e("l4-24gb", "L4", NVIDIA, "Ada Lovelace", "l4", "pcie", 24, "GDDR6", "PCIe 4.0", 300, 242.5, 121),
    _e("a10-24gb", "A10", NVIDIA, "Ampere", "a10", "pcie", 24, "GDDR6", "PCIe 4.0", 600, 250, 125),
    _e(
        "rtx-4090-24gb",
        "GeForce RTX 4090",
        NVIDIA,
        "Ada Lovelace",
        "rtx4090",
        "pcie",
        24,
        "GDDR6X",
        "PCIe 4.0",
        1008,
        660.6,
        165.2,
    ),
    _e(
        "rtx-3090-24gb", "GeForce RTX 3090", NVIDIA, "Ampere", "rtx3090", "pcie", 24, "GDDR6X", "PCIe 4.0", 936, 284, 71
    ),
)

CATALOG_BY_ID = {entry.id: entry for entry in GPU_CATALOG}

_NOISE = {"nvidia", "geforce", "tesla", "generation", "gpu", "graphics", "card"}
_FORM_WORDS = {"sxm": "sxm", "sxm4": "sxm", "sxm5": "sxm", "hbm3": "sxm", "pcie": "pcie", "nvl": "nvl"}
_MEMORY_TOKEN = re.compile(r"^(\d{2,3})gb$")


def _tokens(raw: str) -> list[str]:
    canon = re.sub(r"[^a-z0-9]+", " ", raw.lower())
    return [t for t in canon.split() if t not in _NOISE]


def _family(tokens: list[str]) -> str | None:
    joined = " ".join(tokens)
    if re.search(r"\brtx 6000 ada\b", joined):
        return "rtx6000ada"
    match = re.search(r"\brtx (\d{4})\b", joined)
    if match:
        return f"rtx{match.group(1)}"
    families = {entry.family for entry in GPU_CATALOG}
    for token in tokens:
        if token in families:
            return token
    return None


def normalize_gpu_name(raw: str, memory_mib: int | None = None) -> str | None:
    """The catalog id for a GPU name as NVML or Kubernetes labels report it, or None.

    ``memory_mib`` (NVML's total memory, or the ``nvidia.com/gpu.memory`` label) settles names
    that do not say their memory, such as ``NVIDIA A100-PCIE``.
    """
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    tokens = _tokens(raw)
    family = _family(tokens)
    if family is None:
        return None
    candidates = [e for e in GPU_CATALOG if e.family == family]
    # H200 NVL (PCIe) and other variants we do not list must not fall back to the SXM part.
    forms = {_FORM_WORDS[t] for t in tokens if t in _FORM_WORDS}
    unknown_variant = {"nvl"} & set(tokens) and not any(e.form == "nvl" for e in candidates)
    if unknown_variant:
        return None
    if forms:
        candidates = [e for e in candidates if e.form in forms]
    memory_gib: float | None = None
    for token in tokens:
        match = _MEMORY_TOKEN.match(token)
        if match:
            memory_gib = float(match.group(1))
    if memory_gib is None and memory_mib:
        memory_gib = memory_mib / 1024
    if memory_gib is not None and len(candidates) > 1:
        nearest = min(candidates, key=lambda e: abs(e.vram_gib - memory_gib))
        if abs(nearest.vram_gib - memory_gib) <= 0.15 * nearest.vram_gib:
            candidates = [nearest]
    if len(candidates) > 1:
        # A bare "H100 80GB" without a form word is the SXM part (the PCIe one says "PCIe").
        sxm = [e for e in candidates if e.form == "sxm"]
        if not forms and len(sxm) == 1 and memory_gib is not None:
            candidates = sxm
    return candidates[0].id if len(candidates) == 1 else None
