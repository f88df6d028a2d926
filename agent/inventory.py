"""What this machine can rent out: GPUs through NVML, and the host's CPU, memory and disk.

GPU names are sent as NVML reports them (``NVIDIA H100 80GB HBM3``) with their memory; the
marketplace maps them to its catalog. A Docker host is one node of the report. A configured
``declared_inventory`` replaces discovery (a development or demo host without NVIDIA GPUs).
"""

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.config import DeclaredInventory


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    uuid: str
    memory_mib: int
    mig_mode: bool


@dataclass
class Inventory:
    gpus: list[GpuDevice] = field(default_factory=list)
    cpu_cores: int = 0
    memory_gib: int = 0
    storage_gib: int = 0
    driver: str = ""
    gpu_note: str = ""  # why no GPUs were found, when none were
    node: str = ""  # this host's name

    def report(
        self, *, busy_gpu_uuids: set[str] | None = None, reserved_cpu: int = 0, reserved_memory: int = 0
    ) -> dict:
        """The body of ``PUT /api/v1/providers/me/inventory/``: GPUs grouped by model, and this
        host as the report's one node."""
        busy = busy_gpu_uuids or set()
        lines: dict[tuple[str, int], dict] = {}
        for gpu in self.gpus:
            line = lines.setdefault((gpu.name, gpu.memory_mib), {"model": gpu.name, "total": 0, "free": 0})
            if gpu.memory_mib:
                line["memory_mib"] = gpu.memory_mib
            line["total"] += 1
            if gpu.uuid not in busy:
                line["free"] += 1
        host = {
            "cpu_cores": {"total": self.cpu_cores, "free": max(0, self.cpu_cores - reserved_cpu)},
            "memory_gib": {"total": self.memory_gib, "free": max(0, self.memory_gib - reserved_memory)},
            "storage_gib": {"total": self.storage_gib, "free": self.storage_gib},
        }
        node = {"name": self.node or "host", "gpus": [dict(line) for line in lines.values()], **host}
        return {"gpus": list(lines.values()), **host, "nodes": [node]}

    def as_dict(self) -> dict:
        return asdict(self)


def discover_gpus() -> tuple[list[GpuDevice], str, str]:
    """NVIDIA GPUs through NVML: (devices, driver version, note when there are none)."""
    try:
        import pynvml
    except ImportError:
        return [], "", "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], "", f"NVML is not available here ({exc}): no NVIDIA driver or GPU"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                current_mig, _ = pynvml.nvmlDeviceGetMigMode(handle)
                mig = bool(current_mig)
            except pynvml.NVMLError:
                mig = False
            devices.append(
                GpuDevice(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_mib=pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024),
                    mig_mode=mig,
                )
            )
        return devices, driver, "" if devices else "NVML found no GPUs"
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _memory_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // (1024 * 1024)
    except OSError:
        pass
    return 0


def discover(storage_path: str = "/") -> Inventory:
    gpus, driver, note = discover_gpus()
    return Inventory(
        gpus=gpus,
        cpu_cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        storage_gib=shutil.disk_usage(storage_path).free // (1024**3),
        driver=driver,
        gpu_note=note,
        node=socket.gethostname(),
    )


def declared(settings: DeclaredInventory) -> Inventory:
    """The configured inventory, as if it had been discovered (its GPUs get made-up UUIDs)."""
    gpus = [
        GpuDevice(index=index, name=line.model, uuid=f"declared-{index}", memory_mib=line.memory_mib, mig_mode=False)
        for index, line in enumerate(line for line in settings.gpus for _ in range(line.count))
    ]
    return Inventory(
        gpus=gpus,
        cpu_cores=settings.cpu_cores,
        memory_gib=settings.memory_gib,
        storage_gib=settings.storage_gib,
        gpu_note="declared in the configuration, not discovered",
        node=settings.node or socket.gethostname(),
    )


def source(declared_inventory: DeclaredInventory | None) -> Callable[[], Inventory]:
    """Where this host's inventory comes from: the configuration's declaration, else discovery."""
    if declared_inventory is None:
        return discover
    return lambda: declared(declared_inventory)


@dataclass(frozen=True)
class GpuMetrics:
    utilization_pct: float  # the mean over the GPUs, as NVML reads it now
    memory_mib: int  # in use, over the GPUs


def gpu_metrics(uuids: list[str]) -> GpuMetrics | None:
    """What the GPUs ``uuids`` are doing now (NVML), or None where NVML cannot say (no driver, no
    GPU of that UUID): a picture for the client, never a reason for a report to fail."""
    if not uuids:
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        utilization, memory = [], 0
        for uuid in uuids:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            utilization.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            memory += pynvml.nvmlDeviceGetMemoryInfo(handle).used // (1024 * 1024)
        return GpuMetrics(utilization_pct=sum(utilization) / len(utilization), memory_mib=memory)
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()
