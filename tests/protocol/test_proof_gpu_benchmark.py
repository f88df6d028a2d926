"""The GPU calibration and acceptance run (``benchmarks/proof_gpu.py``), tried on the CPU at a
small shape: it calibrates, sizes challenges from the rate as the marketplace does, and the
honest prover passes them all, with the verifier's checks."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "proof_gpu.py"


@pytest.fixture
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("proof_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


SMALL = ["--backend", "numpy", "--width", "64", "--rounds", "2", "--leaf-rows", "16"]


def test_an_honest_prover_passes_every_challenge_sized_from_its_calibration(bench, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "proof_gpu.json"
    argv = [*SMALL, "--runs", "4", "--target-seconds", "0.1", "--calibrate-seconds", "0.1"]
    argv += ["--sweep-block-leaves", "1,8"]
    result = bench.main([*argv, "--model", "h100-sxm-80gb", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["calibration"]["rows_per_second"] > 0
    honest = result["calibrated"]
    assert (honest["runs"], honest["passed"]) == (4, 4)
    assert honest["prover_s"]["max"] <= honest["deadline_s"]
    # the datasheet's H100 is far beyond a CPU: not run, and the table says why
    assert (
        "datasheet" not in result and result["datasheet_rows_per_second"] > 3 * result["calibration"]["rows_per_second"]
    )
    assert set(result["block_sweep"]) == {"1", "8"} and min(result["block_sweep"].values()) > 0
    printed = capsys.readouterr().out
    assert "| rows per second by leaves a block | 1: " in printed
    assert "| honest challenges passed | 4 of 4 | all |" in printed
    assert "every challenge would be too slow" in printed
    assert 'CALIBRATED_ROWS_PER_SECOND["h100-sxm-80gb"] = ' in printed


def test_a_card_slower_than_its_calibration_fails_the_envelope(bench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Challenges sized for a rate four times what the prover does: every one is too slow."""
    args = bench.argparse.Namespace(
        target_seconds=0.1, margin=0.25, allowance=0.0, width=64, rounds=2, leaf_rows=16, block_leaves=4
    )
    backend = bench.work.NumpyBackend()
    rate = bench.calibrate(bench.argparse.Namespace(**vars(args), calibrate_seconds=0.1), backend)["rows_per_second"]
    run = bench.challenge(args, backend, 4 * rate)
    assert run["verdict"] == "passed" and not run["in_time"] and not run["passed"]


def test_a_run_out_of_time_keeps_what_it_measured(bench, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """``--budget-seconds``: no new challenge after that long; the report says how many ran, and the
    file holds them (it is written after every step, for a run stopped from outside)."""
    out = tmp_path / "proof_gpu.json"
    argv = [*SMALL, "--runs", "50", "--target-seconds", "0.1", "--calibrate-seconds", "0.1", "--budget-seconds", "0"]
    result = bench.main([*argv, "--sweep-block-leaves", "", "--estimate-runs", "0", "--out", str(out)])
    assert result["stopped_early"] and result["calibrated"]["runs"] == 1 and result["block_sweep"] == {}
    assert json.loads(out.read_text())["calibrated"]["runs"] == 1
    assert "| honest challenges passed | 1 of 1 (stopped early: out of time) | all |" in capsys.readouterr().out
