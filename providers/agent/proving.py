"""Answering the marketplace's proof-of-GPU checks (``docs/PROOF_OF_GPU.md``) on this host's GPUs.

For each check it is asked: start it (the seed arrives, the marketplace's clock runs), compute
every row on a GPU of the claimed model, commit to the Merkle root, then open the rows the
marketplace drew. Checks it cannot answer (no GPU prover here, no GPU of that model) are left
alone: they expire without consequence.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from providers.agent.client import MarketplaceClient
from providers.catalog import normalize_gpu_name
from providers.proof import protocol
from providers.proof.work import Backend, NumpyBackend, TorchBackend

logger = logging.getLogger("gpumarket.agent")


@dataclass
class ProofSummary:
    answered: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0


def cuda_provers() -> Callable[[str], Backend | None] | None:
    """A prover per catalog model on this host's CUDA devices, or None without CUDA PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    devices: dict[str, str] = {}
    for index in range(torch.cuda.device_count()):
        model = normalize_gpu_name(torch.cuda.get_device_name(index))
        if model:
            devices.setdefault(model, f"cuda:{index}")
    return lambda model: TorchBackend(devices[model]) if model in devices else None


def provers(choice: str) -> Callable[[str], Backend | None] | None:
    """What answers checks, by the ``prover`` setting: ``auto`` and ``cuda`` use CUDA PyTorch
    (``make gpu``) where it is; ``cpu`` computes with NumPy (small challenges only: far too slow
    for a real GPU's time envelope); ``off`` answers nothing."""
    if choice == "off":
        return None
    if choice == "cpu":
        return lambda model: NumpyBackend()
    found = cuda_provers()
    if found is None:
        (logger.warning if choice == "cuda" else logger.info)(
            "proof-of-GPU checks are not answered here: no CUDA device answers through PyTorch "
            "(install the GPU prover with `make gpu` on a host with NVIDIA GPUs)"
        )
    return found


def answer_checks(client: MarketplaceClient, prover_for: Callable[[str], Backend | None]) -> ProofSummary:
    summary = ProofSummary()
    for check in client.gpu_checks():
        if check.get("status") != "issued":
            continue
        backend = prover_for(check["gpu_model"])
        if backend is None:
            summary.skipped += 1
            continue
        started = client.start_check(check["id"])
        params = protocol.Params.from_dict(started["params"])
        commitment = protocol.prove(bytes.fromhex(started["seed"]), params, backend)
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
                    "status": result["status"],
                    "failure": result.get("failure", ""),
                    "elapsed_seconds": result.get("elapsed_seconds"),
                    "measured_int8_tops": result.get("measured_int8_tops"),
                }
            },
        )
    return summary
