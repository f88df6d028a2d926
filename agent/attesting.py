"""Hardware attestation (NVIDIA confidential computing) from the agent's side: for each GPU model
this host lists, ask the marketplace for a nonce, have the operator's attestation command produce
NVIDIA's attestation token for it, and send the token back (``docs/PROOF_OF_GPU.md``).

The command is the operator's, because collecting GPU evidence needs NVIDIA's attestation SDK on
a host whose GPUs run in confidential-computing mode. It gets the nonce in
``GPUMARKET_ATTESTATION_NONCE`` (and the catalog model in ``GPUMARKET_GPU_MODEL``) and prints the
attestation service's answer on standard output. ``scripts/nvidia_attest.py`` is one.
"""

import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.client import MarketplaceClient

logger = logging.getLogger("gpumarket.agent")
RENEW_BEFORE = timedelta(days=1)  # attest again a day before the attestation runs out
RETRY_AFTER = timedelta(hours=1)  # after a rejection or a failed command
COMMAND_TIMEOUT_SECONDS = 300
MAX_TOKEN_BYTES = 256 * 1024


@dataclass
class AttestSummary:
    attested: int = 0
    rejected: int = 0
    failed: int = 0  # the command did not produce a token


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def due(latest: dict | None, now: datetime) -> bool:
    """Whether a model needs attesting now, given its latest attestation."""
    if latest is None:
        return True
    if latest["status"] == "attested":
        until = _when(latest.get("valid_until"))
        return until is None or until - now < RENEW_BEFORE
    if latest["status"] == "issued":
        return True  # an unanswered nonce (a crash meanwhile): ask for a fresh one
    finished = _when(latest.get("finished_at")) or now
    return now - finished >= RETRY_AFTER


def attest(
    client: MarketplaceClient, command: list[str], models: list[str], now: datetime | None = None
) -> AttestSummary:
    now = now or datetime.now(UTC)
    summary = AttestSummary()
    latest: dict[str, dict] = {}
    for record in client.attestations():  # newest first
        latest.setdefault(record["gpu_model"], record)
    for model in models:
        if not due(latest.get(model), now):
            continue
        issued = client.request_attestation(model)
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                command,
                env={**os.environ, "GPUMARKET_ATTESTATION_NONCE": issued["nonce"], "GPUMARKET_GPU_MODEL": model},
                capture_output=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            summary.failed += 1
            logger.warning("attestation command failed", extra={"fields": {"gpu_model": model, "error": str(exc)}})
            continue
        if done.returncode != 0 or not done.stdout.strip() or len(done.stdout) > MAX_TOKEN_BYTES:
            summary.failed += 1
            logger.warning(
                "attestation command produced no token",
                extra={
                    "fields": {
                        "gpu_model": model,
                        "exit_code": done.returncode,
                        "stderr": done.stderr.decode(errors="replace")[-500:],
                    }
                },
            )
            continue
        result = client.send_attestation(issued["id"], done.stdout.decode(errors="replace").strip())
        if result["status"] == "attested":
            summary.attested += 1
        else:
            summary.rejected += 1
        logger.info(
            "gpu attestation answered",
            extra={
                "fields": {
                    "gpu_model": model,
                    "status": result["status"],
                    "failure": result.get("failure", ""),
                    "detail": result.get("detail", ""),
                }
            },
        )
    return summary
