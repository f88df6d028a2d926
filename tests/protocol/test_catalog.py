import pytest

from protocol.catalog import CATALOG_BY_ID, GPU_CATALOG, normalize_gpu_name
from providers.models import GpuModel


@pytest.mark.parametrize(
    ("raw", "memory_mib", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", None, "h100-sxm-80gb"),
        ("NVIDIA-H100-80GB-HBM3", None, "h100-sxm-80gb"),
        ("NVIDIA H100 PCIe", None, "h100-pcie-80gb"),
        ("NVIDIA-H100-PCIe", 81559, "h100-pcie-80gb"),
        ("NVIDIA H100 NVL", None, "h100-nvl-94gb"),
        ("NVIDIA H200", None, "h200-sxm-141gb"),
        ("NVIDIA-H200", 143771, "h200-sxm-141gb"),
        ("NVIDIA A100-SXM4-80GB", None, "a100-sxm-80gb"),
        ("NVIDIA-A100-SXM4-40GB", None, "a100-sxm-40gb"),
        ("NVIDIA A100-PCIE-40GB", None, "a100-pcie-40gb"),
        ("NVIDIA A100 80GB PCIe", None, "a100-pcie-80gb"),
        ("NVIDIA A100-PCIE", 40960, "a100-pcie-40gb"),
        ("NVIDIA L40S", None, "l40s-48gb"),
        ("NVIDIA-L40S", None, "l40s-48gb"),
        ("NVIDIA L40", None, "l40-48gb"),
        ("NVIDIA L4", None, "l4-24gb"),
        ("NVIDIA A10", None, "a10-24gb"),
        ("NVIDIA GeForce RTX 4090", None, "rtx-4090-24gb"),
        ("NVIDIA-GeForce-RTX-4090", None, "rtx-4090-24gb"),
        ("NVIDIA GeForce RTX 3090", None, "rtx-3090-24gb"),
        ("NVIDIA RTX A6000", None, "rtx-a6000-48gb"),
        ("NVIDIA RTX 6000 Ada Generation", None, "rtx-6000-ada-48gb"),
    ],
)
def test_normalizer_maps_nvml_and_kubernetes_names(raw: str, memory_mib: int | None, expected: str) -> None:
    assert normalize_gpu_name(raw, memory_mib) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "NVIDIA H100",
        "NVIDIA A100-PCIE",
        "NVIDIA H200 NVL",
        "NVIDIA A10G",
        "Tesla V100-SXM2-16GB",
        "AMD MI300X",
        "x" * 500,
    ],
)
def test_normalizer_refuses_to_guess(raw: str) -> None:
    assert normalize_gpu_name(raw) is None


def test_catalog_has_the_models_clients_ask_for() -> None:
    for model_id in [
        "h200-sxm-141gb",
        "h100-sxm-80gb",
        "h100-pcie-80gb",
        "a100-sxm-80gb",
        "a100-pcie-40gb",
        "l40s-48gb",
        "l4-24gb",
        "a10-24gb",
        "rtx-4090-24gb",
        "rtx-3090-24gb",
    ]:
        entry = CATALOG_BY_ID[model_id]
        assert entry.vram_gib > 0 and entry.int8_tops > 0 and entry.bf16_tflops > 0 and entry.memory_bandwidth_gbps > 0
    # the H100 SXM is faster than its PCIe sibling, which is faster than an A100
    assert CATALOG_BY_ID["h100-sxm-80gb"].bf16_tflops > CATALOG_BY_ID["h100-pcie-80gb"].bf16_tflops
    assert CATALOG_BY_ID["h100-pcie-80gb"].bf16_tflops > CATALOG_BY_ID["a100-sxm-80gb"].bf16_tflops


@pytest.mark.django_db
def test_catalog_is_in_the_database_after_migrate() -> None:
    assert set(GpuModel.objects.values_list("id", flat=True)) == {e.id for e in GPU_CATALOG}
