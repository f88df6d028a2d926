#!/usr/bin/env python3
"""The provider agent's attestation command on a host whose NVIDIA GPUs run in confidential-computing
mode: collects the GPUs' evidence with NVIDIA's attestation SDK, has NVIDIA's Remote Attestation
Service (NRAS) appraise it for the marketplace's nonce, and prints NRAS's answer.

    attestation_command: ["/opt/venv-attest/bin/python", "/opt/gpumarket/scripts/nvidia_attest.py"]

Needs, on that host only: NVIDIA's attestation SDK (the ``nv-attestation-sdk`` package, with the
verifier it depends on) in the Python that runs this, a driver and GPUs in CC mode, and access to
NRAS under NVIDIA's licence. The agent passes the nonce in ``GPUMARKET_ATTESTATION_NONCE``;
``NRAS_URL`` overrides the service's address.
"""

import json
import os
import sys

NRAS_URL = os.environ.get("NRAS_URL", "https://nras.attestation.nvidia.com/v3/attest/gpu")


def main() -> int:
    from nv_attestation_sdk import attestation  # only on the GPU host

    nonce = os.environ["GPUMARKET_ATTESTATION_NONCE"]
    client = attestation.Attestation()
    client.set_name("gpumarket")
    client.set_nonce(nonce)
    client.add_verifier(attestation.Devices.GPU, attestation.Environment.REMOTE, NRAS_URL, "")
    evidence = client.get_evidence()
    if not client.attest(evidence):
        print("the attestation service did not attest these GPUs", file=sys.stderr)
        return 1
    # the SDK's token wraps NRAS's answer; the marketplace reads either, this prints NRAS's own
    token = json.loads(client.get_token())
    remote = next(
        (part["REMOTE_GPU_CLAIMS"] for part in token if isinstance(part, dict) and "REMOTE_GPU_CLAIMS" in part), None
    )
    print(json.dumps(remote if remote is not None else token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
