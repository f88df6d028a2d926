"""The agent's GPU prover (PyTorch) computes the same bits as the verifier (NumPy): the generator,
every round, the digests and the commitment. Runs where PyTorch is installed (``make gpu``): on
the CPU, and on a CUDA device too where there is one."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protocol.proof import protocol, work

torch = pytest.importorskip("torch")

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
SEED = bytes(range(100, 116))


@pytest.mark.parametrize("device", DEVICES)
def test_the_generator_gives_the_same_entries_on_tensors_as_on_arrays(device: str) -> None:
    key = work.key_words(SEED)
    index = np.concatenate(
        [
            np.array([0, 1, 2**31, 2**32 - 1, 2**32, 2**62 - 1], dtype=np.int64),
            np.random.default_rng(3).integers(0, 2**62, 100_000, dtype=np.int64),
        ]
    )
    for stream in (work.STREAM_X, work.STREAM_B, work.STREAM_V):
        on_tensors = work.draw(key, stream, torch.from_numpy(index).to(device)).cpu().numpy()
        assert np.array_equal(on_tensors, work.draw(key, stream, index))


@pytest.mark.parametrize("device", DEVICES)
def test_rows_digests_and_commitments_agree_bit_for_bit(device: str) -> None:
    tensors, arrays = work.TorchBackend(device), work.NumpyBackend()
    tensors.chunk = 1000  # pieces that split rows, as on the CPU
    for width, rounds in ((64, 3), (256, 2)):
        rows = random.Random(width).sample(range(1 << 30), 40)
        got = [
            backend.host(
                work.digests(
                    backend, work.inputs(backend, SEED, width), backend.indices(rows), width=width, rounds=rounds
                )
            )
            for backend in (tensors, arrays)
        ]
        assert np.array_equal(got[0], got[1])
    params = protocol.Params(rows=1024, width=64, rounds=3, leaf_rows=64, checks=30)
    assert protocol.prove(SEED, params, tensors).root == protocol.prove(SEED, params, arrays).root


def requantizes_as_the_masks_do(backend: work.TorchBackend) -> None:
    """The backend's requantization is the protocol's q: every int32 sum's bits 8 to 15 as a
    two's-complement int8, the extremes included, whatever the tensor's shape."""
    extremes = torch.tensor([-(2**31), -(2**31) + 255, -32768, -129, -1, 0, 127, 128, 32767, 2**31 - 1])
    sums = torch.cat([extremes, torch.randint(-(2**31), 2**31 - 1, (100_006,))]).to(torch.int32)
    sums = sums.reshape(-1, 8)[:, :6].to(backend.device)  # a matrix, and not contiguous
    on_device = work.requantize(backend, sums).cpu().numpy()
    masked = work.requantize(work.NumpyBackend(), sums.cpu().numpy().astype(np.int64))
    assert on_device.dtype == np.int8 and on_device.shape == masked.shape and np.array_equal(on_device, masked)


@pytest.mark.parametrize("device", DEVICES)
def test_the_two_pass_requantization_keeps_the_bits_the_masks_keep(device: str) -> None:
    """The GPU prover's ``(sums >> 8).to(int8)`` without Triton, on this device."""
    requantizes_as_the_masks_do(work.TorchBackend(device, fused=False))


@pytest.mark.parametrize("device", DEVICES)
def test_a_block_fetched_while_more_work_is_queued_is_the_block_computed(device: str) -> None:
    """The prover copies a block's digests to the host while the device computes the next: what
    the fetch gives is the block as it was computed, whatever the device did after."""
    backend = work.TorchBackend(device, fused=False)
    shared = work.inputs(backend, SEED, 64)
    blocks = [backend.arange(i * 512, (i + 1) * 512) for i in range(3)]
    fetched = []
    for rows in blocks:
        fetched.append(backend.fetch(work.digests(backend, shared, rows, width=64, rounds=3)))
    arrays = work.NumpyBackend()
    for rows, wait in zip(blocks, fetched, strict=True):
        want = work.digests(arrays, work.inputs(arrays, SEED, 64), rows.cpu().numpy(), width=64, rounds=3)
        assert np.array_equal(wait(), want)


def fused_agrees(device: str) -> None:
    """The fused kernels' tables and requantization, and a whole commitment, are the array
    operations' own."""
    fused, arrays = work.TorchBackend(device, fused=True), work.NumpyBackend()
    fused.warm_up()  # what a card does once, before its first check
    key = work.key_words(SEED)
    rows = [0, 1, 2**31 // 64, 2**32 + 5, 2**40 - 1, *random.Random(1).sample(range(1 << 30), 50)]
    for stream in (work.STREAM_X, work.STREAM_B, work.STREAM_V):
        for columns in (2, 64, 300):
            got = work.table(fused, key, stream, fused.indices(rows), columns).cpu().numpy()
            want = work.table(arrays, key, stream, arrays.indices(rows), columns)
            assert got.dtype == np.int8 and np.array_equal(got, want), (stream, columns)
    assert work.table(fused, key, work.STREAM_X, fused.indices([]), 8).shape == (0, 8)
    requantizes_as_the_masks_do(fused)
    assert work.requantize(fused, fused.arange(0, 0).to(torch.int32)).shape == (0,)
    params = protocol.Params(rows=1024, width=64, rounds=3, leaf_rows=64, checks=30)
    assert protocol.prove(SEED, params, fused).root == protocol.prove(SEED, params, arrays).root


def test_the_fused_kernels_compute_what_the_array_operations_compute() -> None:
    """On the CPU through Triton's interpreter (the same typing rules as on a card), in a process
    of its own since the interpreter is chosen when Triton loads; on the card directly."""
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    program = "from tests.protocol.test_proof_torch import fused_agrees; fused_agrees('cpu')"
    run = subprocess.run(
        [sys.executable, "-c", program],
        cwd=root,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    if torch.cuda.is_available():
        assert work.TorchBackend("cuda").fused  # by default on a card
        fused_agrees("cuda")
