"""Proof of GPU on the CPU: the verifier's time per challenge, and the prover's hashing.

    .venv/bin/python benchmarks/proof.py [--challenges 20] [--rows 8388608]

The verifier runs on one core (BLAS held to one thread). Per challenge it parses the opening,
checks every Merkle path, rebuilds B and V from the seed and recomputes the chosen rows through
every round: all of ``parse_opening`` and ``check``. The commitment it checks holds the true
digests of the chosen rows (so every check passes, the most work) and random bytes elsewhere: the
verifier's cost does not depend on the other rows. The prover's CPU part is hashing the digests
into the Merkle tree (``Commitment``), timed on the same sizes. The GPU prover's own time is
measured on a GPU (section "Proof of GPU" in ``benchmarks/RESULTS.md``).
"""

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads BLAS: one core
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from protocol.proof import protocol, work  # noqa: E402


def challenge(params: protocol.Params) -> dict:
    seed, rows = protocol.new_seed(), protocol.choose_rows(params)
    backend = work.NumpyBackend()
    true = work.digests(
        backend,
        work.inputs(backend, seed, params.width),
        backend.indices(rows),
        width=params.width,
        rounds=params.rounds,
    )
    data = bytearray(os.urandom(params.rows * work.DIGEST_WORDS * 4))
    size = work.DIGEST_WORDS * 4
    for n, row in enumerate(rows):
        data[row * size : (row + 1) * size] = protocol.leaf_bytes(true[n : n + 1])
    began = time.process_time()
    commitment = protocol.Commitment(
        [bytes(data[i : i + params.leaf_bytes]) for i in range(0, len(data), params.leaf_bytes)]
    )
    hashing = time.process_time() - began
    wire = commitment.open(rows, params.leaf_rows)
    began = time.process_time()
    opened = protocol.parse_opening(wire, params, rows)
    verdict = protocol.check(seed, params, protocol.parse_root(commitment.root.hex()), rows, opened)
    verifying = time.process_time() - began
    assert verdict.passed, verdict
    return {"verifier_s": verifying, "prover_hashing_s": hashing, "opening_bytes": len(json.dumps(wire))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--challenges", type=int, default=20)
    parser.add_argument("--rows", type=int, default=8 * 1024 * 1024, help="rows per challenge")
    args = parser.parse_args()
    params = protocol.Params(
        rows=args.rows,
        width=protocol.DEFAULT_WIDTH,
        rounds=protocol.DEFAULT_ROUNDS,
        leaf_rows=protocol.DEFAULT_LEAF_ROWS,
    )
    runs = [challenge(params) for _ in range(args.challenges)]
    verifier = sorted(r["verifier_s"] for r in runs)
    hashing = sorted(r["prover_hashing_s"] for r in runs)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "params": params.as_dict(),
        "digest_megabytes": params.rows * work.DIGEST_WORDS * 4 / 2**20,
        "verifier_s": {"median": statistics.median(verifier), "max": verifier[-1]},
        "prover_hashing_s": {"median": statistics.median(hashing), "max": hashing[-1]},
        "opening_kib": max(r["opening_bytes"] for r in runs) / 1024,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "proof.json").write_text(json.dumps(result, indent=2))
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| verifier CPU time per challenge, one core ({params.checks} rows, k={params.width}, R={params.rounds}) "
        f"| median {result['verifier_s']['median']:.2f} s, max {result['verifier_s']['max']:.2f} s | ≤ 1 s |"
    )
    print(
        f"| prover: hashing {result['digest_megabytes']:.0f} MiB of digests ({params.rows:,} rows) into the tree "
        f"| median {result['prover_hashing_s']['median']:.2f} s | |"
    )
    print(f"| opening on the wire (JSON) | at most {result['opening_kib']:.0f} KiB | |")


if __name__ == "__main__":
    main()
