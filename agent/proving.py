"""Answering the marketplace's proof-of-GPU checks (``docs/PROOF_OF_GPU.md``) on this host's GPUs.

For each check it is asked: start it (the seed arrives, the marketplace's clock runs), compute
every row on as many GPUs of the claimed model as the check names (each card its share of the
rows; a lease's spot check on that lease's cards), commit to the Merkle root, then open the rows
the marketplace drew. Checks it cannot answer (no GPU prover here, not enough GPUs of that model
free) are left alone: they expire without consequence.
"""

import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from agent.client import MarketplaceClient
from agent.runtimes.base import Runtime
from protocol.catalog import normalize_gpu_name
from protocol.proof import protocol
from protocol.proof.work import Backend, NumpyBackend, TorchBackend

logger = logging.getLogger("gpumarket.agent")


@dataclass
class ProofSummary:
    answered: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0


# What proves a check: (GPU model, cards, the cards' UUIDs where they are fixed: a lease's) → one
# backend per card, or None where this host cannot answer.
ProverFor = Callable[[str, int, list[str] | None], list[Backend] | None]


@dataclass(frozen=True)
class CudaDevice:
    model: str  # catalog id
    uuid: str  # as NVML and Docker name it: GPU-xxxxxxxx-...
    name: str  # as PyTorch names it: cuda:N


NVIDIA_CONTROL_DEVICE = Path("/dev/nvidiactl")  # there whenever NVIDIA's driver is loaded (in containers too)


def cuda_devices() -> list[CudaDevice] | None:
    """This host's CUDA devices of catalog models, or None without CUDA PyTorch. A Linux host
    without NVIDIA's driver has none, and is not made to import PyTorch (seconds at every start)
    to find that out."""
    if sys.platform.startswith("linux") and not NVIDIA_CONTROL_DEVICE.exists():
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    devices = []
    for index in range(torch.cuda.device_count()):
        model = normalize_gpu_name(torch.cuda.get_device_name(index))
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
        if model:
            devices.append(CudaDevice(model, uuid if uuid.startswith("GPU-") else f"GPU-{uuid}", f"cuda:{index}"))
    return devices


def cuda_provers(
    devices: list[CudaDevice], busy: Callable[[], set[str]], backend: Callable[[str], Backend] = TorchBackend
) -> ProverFor:
    """Checks of a lease's GPUs run on exactly those cards; other checks on as many free cards of
    the model as they ask (``busy``: the UUIDs leases hold)."""

    def prover_for(model: str, cards: int, uuids: list[str] | None) -> list[Backend] | None:
        if uuids is not None:
            chosen = [d for d in devices if d.uuid in uuids and d.model == model]
        else:
            held = busy()
            chosen = [d for d in devices if d.model == model and d.uuid not in held][:cards]
        if len(chosen) != cards:
            return None
        return [backend(d.name) for d in chosen]

    return prover_for


def provers(choice: str, busy: Callable[[], set[str]] = set) -> ProverFor | None:
    """What answers checks, by the ``prover`` setting: ``auto`` and ``cuda`` use CUDA PyTorch
    (``make gpu``) where it is; ``cpu`` computes with NumPy (small challenges only: far too slow
    for a real GPU's time envelope); ``off`` answers nothing."""
    if choice == "off":
        return None
    if choice == "cpu":
        return lambda model, cards, uuids: [NumpyBackend() for _ in range(cards)]
    devices = cuda_devices()
    if devices is None:
        (logger.warning if choice == "cuda" else logger.info)(
            "proof-of-GPU checks are not answered here: no CUDA device answers through PyTorch "
            "(install the GPU prover with `make gpu` on a host with NVIDIA GPUs)"
        )
        return None
    return cuda_provers(devices, busy)


def answer_checks(client: MarketplaceClient, prover_for: ProverFor, runtime: Runtime | None = None) -> ProofSummary:
    """Answer every issued check this host can. A spot check of a lease runs on the lease's own
    cards, its workload paused meanwhile where the runtime can pause it."""
    summary = ProofSummary()
    for check in client.gpu_checks():
        if check.get("status") != "issued":
            continue
        lease = check.get("lease")
        # a lease's cards (none known: the GPU prover cannot answer), or any free ones
        uuids = (runtime.lease_gpus(lease) if runtime is not None else []) if lease else None
        backends = prover_for(check["gpu_model"], int(check.get("cards") or 1), uuids)
        if backends is None:
            summary.skipped += 1
            continue
        with runtime.paused(lease) if lease and runtime is not None else nullcontext():
            started = client.start_check(check["id"])
            params = protocol.Params.from_dict(started["params"])
            commitment = protocol.prove(bytes.fromhex(started["seed"]), params, backends)
            result = client.commit_check(check["id"], commitment.root.hex())
        if result["status"] == "committed":
            result = client.open_check(check["id"], commitment.open(result["rows"], params.leaf_rows))
        summary.answered += 1
        if result["status"] == "passed":
            summary.passed += 1
        else:
            summary.failed += 1
        logger.info(
            "gpu check answered",
            extra={
                "fields": {
                    "check": check["id"],
                    "gpu_model": check["gpu_model"],
                    "cards": len(backends),
                    "lease": lease,
                    "status": result["status"],
                    "failure": result.get("failure", ""),
                    "elapsed_seconds": result.get("elapsed_seconds"),
                    "measured_int8_tops": result.get("measured_int8_tops"),
                }
            },
        )
    return summary
