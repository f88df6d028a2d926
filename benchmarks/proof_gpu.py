"""Proof of GPU on a real card: calibrate a model's envelope, then run honest challenges against it.

    python3 benchmarks/proof_gpu.py [--model ID] [--runs 100] [--target-seconds 3]

On a host with an NVIDIA GPU and CUDA PyTorch (the agent's GPU prover, ``make gpu``). Pure: it
needs only NumPy, PyTorch and ``protocol.proof``, no Django and no marketplace.

1. **The card**: its name (and the catalog model it normalizes to, unless ``--model`` says), the
   driver, CUDA and PyTorch versions.
2. **Calibration**: the agent's prover (``protocol.prove`` on ``TorchBackend``, as the agent calls
   it) on growing sizes until one run takes ``--calibrate-seconds``, then three runs at that size;
   the median rate, in rows per second at the marketplace's default shape, is what
   ``protocol.CALIBRATED_ROWS_PER_SECOND`` holds for the model. Then the same size with other
   block sizes (``--sweep-block-leaves``), to tell whether the agent's own suits the card.
3. **Acceptance**: ``--runs`` challenges, each sized as the marketplace sizes one from that rate
   (``protocol.fit`` for ``--target-seconds``) with a fresh seed: the prover's time from start to
   commitment (its GPU work, copying the digests to the host and the Merkle tree) against the
   envelope (``protocol.envelope`` with ``--margin`` and ``--allowance``), then the verifier opens
   90 random rows and checks them on the CPU. An honest card must pass every one.
4. **The datasheet estimate** the marketplace uses until a model is calibrated: a few challenges
   sized from it, to show whether an honest card passed before calibration.

It prints a Markdown table for ``benchmarks/RESULTS.md`` and the calibration line, and writes
everything to ``benchmarks/out/proof_gpu.json`` (or ``--out``), after each step too, so a run
stopped from outside keeps what it measured; ``--budget-seconds`` stops it starting challenges
after that long, and the report says how many ran. ``--backend numpy`` runs the same
on the CPU at small sizes, to try the script where there is no GPU.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol.catalog import CATALOG_BY_ID, normalize_gpu_name  # noqa: E402
from protocol.proof import protocol, work  # noqa: E402


def describe(backend_name: str, device: str) -> dict[str, Any]:
    """What the run was measured on."""
    info: dict[str, Any] = {
        "host": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "numpy": numpy.__version__,
    }
    if backend_name != "torch":
        info["device"] = "CPU (NumPy)"
        return info
    import torch

    info["torch"] = torch.__version__
    if torch.device(device).type != "cuda":
        info["device"] = "CPU (PyTorch)"
        return info
    index = torch.device(device).index or 0
    info.update(
        device=torch.cuda.get_device_name(index),
        cuda=torch.version.cuda,
        multiprocessors=torch.cuda.get_device_properties(index).multi_processor_count,
    )
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    info["driver"] = driver
    return info


def make_backend(name: str, device: str, *, unfused: bool = False) -> work.Backend:
    if name == "numpy":
        return work.NumpyBackend()
    # a CUDA device ("cpu" tries the script without one); with the fused kernels unless asked
    return work.TorchBackend(device, fused=False if unfused else None)


def timed_prove(seed: bytes, params: protocol.Params, backend: work.Backend, block_leaves: int) -> tuple[Any, float]:
    """The agent's prover, timed from start to commitment (the GPU's work finished: the digests
    are on the host and hashed)."""
    began = time.perf_counter()
    commitment = protocol.prove(seed, params, backend, block_leaves=block_leaves)
    return commitment, time.perf_counter() - began


def measure_rate(params: protocol.Params, backend: work.Backend, block_leaves: int) -> float:
    """Rows per second of one run of the prover with a fresh seed."""
    return params.rows / timed_prove(protocol.new_seed(), params, backend, block_leaves)[1]


def shape(args: argparse.Namespace, rows: int) -> protocol.Params:
    leaves = max(math.ceil(protocol.CHECKS / args.leaf_rows), rows // args.leaf_rows)  # room for the checks
    return protocol.Params(rows=leaves * args.leaf_rows, width=args.width, rounds=args.rounds, leaf_rows=args.leaf_rows)


def calibrate(args: argparse.Namespace, backend: work.Backend) -> dict[str, Any]:
    """Rows per second on this card: grow the size until a run takes ``calibrate_seconds``,
    then the median of three runs at that size."""
    rows = args.leaf_rows * args.block_leaves
    timed_prove(protocol.new_seed(), shape(args, rows), backend, args.block_leaves)  # warm up: kernels, tables
    while True:
        params = shape(args, rows)
        _, elapsed = timed_prove(protocol.new_seed(), params, backend, args.block_leaves)
        if elapsed >= args.calibrate_seconds or params.rows >= protocol.MAX_ROWS:
            break
        grow = min(16.0, max(2.0, 1.2 * args.calibrate_seconds / max(elapsed, 1e-3)))
        rows = min(protocol.MAX_ROWS, int(params.rows * grow))
    rates = [measure_rate(params, backend, args.block_leaves) for _ in range(3)]
    return {"rows": params.rows, "rates": rates, "rows_per_second": statistics.median(rates)}


def sweep(args: argparse.Namespace, backend: work.Backend, rows: int) -> dict[int, float]:
    """Rows per second at each block size of ``--sweep-block-leaves`` (the best of two runs of
    ``rows`` rows each): whether the agent's own block size suits this card."""
    params = shape(args, rows)
    return {block: max(measure_rate(params, backend, block) for _ in range(2)) for block in args.sweep_block_leaves}


def challenge(args: argparse.Namespace, backend: work.Backend, rate: float) -> dict[str, Any]:
    """One challenge as the marketplace issues and checks it, at ``rate`` rows per second."""
    params = protocol.fit(rate, args.target_seconds, width=args.width, rounds=args.rounds, leaf_rows=args.leaf_rows)
    expected = params.rows / rate
    deadline = protocol.envelope(expected, margin=args.margin, allowance=args.allowance)
    seed = protocol.new_seed()
    commitment, elapsed = timed_prove(seed, params, backend, args.block_leaves)
    rows = protocol.choose_rows(params)
    wire = json.loads(json.dumps(commitment.open(rows, params.leaf_rows)))  # as it travels
    began = time.process_time()
    opened = protocol.parse_opening(wire, params, rows)
    verdict = protocol.check(seed, params, protocol.parse_root(commitment.root.hex()), rows, opened)
    verifier = time.process_time() - began
    return {
        "rows": params.rows,
        "prover_s": elapsed,
        "deadline_s": deadline,
        "in_time": elapsed <= deadline,
        "verdict": verdict.reason,
        "passed": verdict.passed and elapsed <= deadline,
        "int8_tops": 2 * params.multiply_accumulates / elapsed / 1e12,
        "verifier_cpu_s": verifier,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(r["prover_s"] for r in runs)
    tops = sorted(r["int8_tops"] for r in runs)
    verifier = sorted(r["verifier_cpu_s"] for r in runs)
    return {
        "runs": len(runs),
        "passed": sum(r["passed"] for r in runs),
        "failures": [r for r in runs if not r["passed"]][:5],
        "rows": runs[0]["rows"] if runs else 0,
        "deadline_s": runs[0]["deadline_s"] if runs else 0,
        "prover_s": {"p50": statistics.median(times), "p99": _quantile(times, 0.99), "max": times[-1]},
        "int8_tops": {"p50": statistics.median(tops), "min": tops[0]},
        "verifier_cpu_s": {"p50": statistics.median(verifier), "max": verifier[-1]},
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="catalog id (default: the card's own name, normalized)")
    parser.add_argument("--backend", choices=["torch", "numpy"], default="torch")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--runs", type=int, default=100, help="honest challenges at the calibrated size")
    parser.add_argument("--estimate-runs", type=int, default=5, help="challenges sized from the datasheet")
    parser.add_argument("--target-seconds", type=float, default=3.0, help="PROOF_TARGET_SECONDS")
    parser.add_argument("--margin", type=float, default=0.25, help="PROOF_MARGIN")
    parser.add_argument("--allowance", type=float, default=1.0, help="PROOF_ALLOWANCE_SECONDS")
    parser.add_argument("--calibrate-seconds", type=float, default=2.0)
    parser.add_argument("--width", type=int, default=protocol.DEFAULT_WIDTH, help="PROOF_WIDTH")
    parser.add_argument("--rounds", type=int, default=protocol.DEFAULT_ROUNDS, help="PROOF_ROUNDS")
    parser.add_argument("--leaf-rows", type=int, default=protocol.DEFAULT_LEAF_ROWS, help="PROOF_LEAF_ROWS")
    parser.add_argument("--block-leaves", type=int, help="leaves the prover computes at once (the backend's own)")
    parser.add_argument(
        "--sweep-block-leaves",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[16, 32, 64, 128],
        help="block sizes to compare after the calibration, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        help="stop starting challenges after this long (the runs so far are reported, marked stopped early)",
    )
    parser.add_argument("--unfused", action="store_true", help="array operations only, no Triton kernels")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "proof_gpu.json")
    args = parser.parse_args(argv)

    began = time.monotonic()
    backend = make_backend(args.backend, args.device, unfused=args.unfused)
    args.block_leaves = args.block_leaves or backend.block_leaves
    machine = describe(args.backend, args.device)
    model = args.model or normalize_gpu_name(str(machine["device"]))
    entry = CATALOG_BY_ID.get(model or "")
    print(f"# {machine['device']} ({model or 'not in the catalog'}), {json.dumps(machine)}", flush=True)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine,
        "model": model,
        "shape": {"width": args.width, "rounds": args.rounds, "leaf_rows": args.leaf_rows},
        "block_leaves": args.block_leaves,
        "fused_kernels": bool(getattr(backend, "fused", False)),
        "envelope": {"target_s": args.target_seconds, "margin": args.margin, "allowance_s": args.allowance},
    }

    def save() -> None:  # after each step: a run stopped from outside keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    def time_left() -> bool:
        return args.budget_seconds is None or time.monotonic() - began < args.budget_seconds

    result["calibration"] = calibration = calibrate(args, backend)
    rate = calibration["rows_per_second"]
    print(f"calibrated: {rate:,.0f} rows/s (runs of {calibration['rows']:,} rows)", flush=True)
    save()
    result["block_sweep"] = {str(block): speed for block, speed in sweep(args, backend, calibration["rows"]).items()}
    for block, speed in result["block_sweep"].items():
        print(f"  {block} leaves a block: {speed:,.0f} rows/s", flush=True)
    runs: list[dict[str, Any]] = []
    while len(runs) < args.runs and (not runs or time_left()):  # one at least
        runs.append(challenge(args, backend, rate))
        if len(runs) % 10 == 0 or not runs[-1]["passed"]:
            last = runs[-1]
            print(f"  {len(runs)}/{args.runs}: {last['prover_s']:.2f} s of {last['deadline_s']:.2f}, {last['verdict']}")
            result["calibrated"] = summary(runs)
            save()
    result["calibrated"] = summary(runs)
    result["stopped_early"] = len(runs) < args.runs  # out of --budget-seconds
    if entry is not None and args.estimate_runs:
        estimate = protocol.estimated_rows_per_second(
            float(entry.int8_tops), entry.memory_bandwidth_gbps, width=args.width, rounds=args.rounds
        )
        result["datasheet_rows_per_second"] = estimate
        if estimate <= 3 * rate and time_left():
            result["datasheet"] = summary([challenge(args, backend, estimate) for _ in range(args.estimate_runs)])
        # else not run: every challenge sized from it fails, after up to a multiple of the target
    save()
    report(result)
    return result


def report(result: dict[str, Any]) -> None:
    machine, honest = result["machine"], result["calibrated"]
    print()
    print(
        f"{machine['device']}, driver {machine.get('driver', '-')}, CUDA {machine.get('cuda', '-')}, "
        f"PyTorch {machine.get('torch', '-')}; {result['date']}"
    )
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    form = result["shape"]
    print(
        f"| rows per second, calibrated (k = {form['width']}, R = {form['rounds']}, {form['leaf_rows']} rows a leaf, "
        f"{result['block_leaves']} leaves a block) | {result['calibration']['rows_per_second']:,.0f} | |"
    )
    print(
        f"| prover, start to commitment ({honest['rows']:,} rows) | p50 {honest['prover_s']['p50']:.2f} s, "
        f"p99 {honest['prover_s']['p99']:.2f} s, max {honest['prover_s']['max']:.2f} s "
        f"(envelope {honest['deadline_s']:.2f} s) | ≤ 10 s |"
    )
    if result["block_sweep"]:
        sizes = ", ".join(f"{block}: {rate:,.0f}" for block, rate in result["block_sweep"].items())
        print(f"| rows per second by leaves a block | {sizes} | |")
    print(f"| int8 throughput of the prover | p50 {honest['int8_tops']['p50']:.1f} TOPS | |")
    early = " (stopped early: out of time)" if result["stopped_early"] else ""
    print(f"| honest challenges passed | {honest['passed']} of {honest['runs']}{early} | all |")
    print(
        f"| verifier CPU time per challenge | p50 {honest['verifier_cpu_s']['p50']:.2f} s, "
        f"max {honest['verifier_cpu_s']['max']:.2f} s | ≤ 1 s |"
    )
    if "datasheet_rows_per_second" in result and "datasheet" not in result:
        ratio = result["datasheet_rows_per_second"] / result["calibration"]["rows_per_second"]
        print(
            f"| sized from the datasheet ({result['datasheet_rows_per_second']:,.0f} rows/s) | not run: "
            f"{ratio:.1f} times this card's speed, every challenge would be too slow | |"
        )
    if "datasheet" in result:
        sheet = result["datasheet"]
        print(
            f"| sized from the datasheet ({result['datasheet_rows_per_second']:,.0f} rows/s) | "
            f"{sheet['passed']} of {sheet['runs']} passed, p50 {sheet['prover_s']['p50']:.2f} s "
            f"of {sheet['deadline_s']:.2f} s | |"
        )
    print()
    rate = result["calibration"]["rows_per_second"]
    print(f'CALIBRATED_ROWS_PER_SECOND["{result["model"]}"] = {rate:.0f}  # measured on {machine["device"]}')
    if result["block_sweep"]:
        best = max(result["block_sweep"], key=result["block_sweep"].get)
        gain = result["block_sweep"][best] / rate - 1
        if int(best) != result["block_leaves"] and gain > 0.05:
            print(
                f"# {best} leaves a block did {gain:.0%} better than {result['block_leaves']}: make it the "
                "backend's own (work.TorchBackend.block_leaves), then calibrate again"
            )


if __name__ == "__main__":
    main()
