"""The challenge's work: int8 matrices drawn from a seed, and rounds of exact integer products.

Every entry of every matrix is computed on its own from (seed, stream, index) by a counter-based
generator, so the verifier can rebuild any row without the rest. The arithmetic is written with the
operators NumPy arrays and PyTorch tensors share (``^ >> & * + -`` on int64, ``reshape``), so the
agent's GPU prover runs this same code on CUDA tensors; a ``Backend`` supplies the three things
that differ: making an index range, the exact conversion to int8, and the int8 product.

One row's path (``docs/PROOF_OF_GPU.md`` has the argument):
    X_0 = draw(seed, X, row)                  1 x k, int8
    X_r = q(X_{r-1} · B) for r = 1..R         B: k x k int8, products summed exactly in int32
    digest = X_R · V                          V: k x 2 int8, two int32 words
with q(a) = bits 8 to 15 of each sum, read as a two's-complement int8.
"""

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

M32 = 0xFFFFFFFF
STREAM_X, STREAM_B, STREAM_V = 1, 2, 3
DIGEST_WORDS = 2  # int32 words per row in the commitment
GOLDEN = 0x9E3779B9


class Backend(Protocol):
    """What differs between array libraries; everything else is shared arithmetic."""

    chunk: int  # how many entries to draw at a time
    block_leaves: int  # how many leaves' rows the prover takes through the rounds at once

    def arange(self, start: int, stop: int) -> Any:
        """A 1-D int64 array of start..stop-1."""

    def indices(self, values: list[int]) -> Any:
        """A 1-D int64 array of ``values``."""

    def int8(self, values: Any) -> Any:
        """``values`` (integers in -128..127) as an int8 array, exactly."""

    def matmul(self, a: Any, b: Any) -> Any:
        """The exact int32 product of two int8 matrices."""

    def concat(self, parts: list[Any]) -> Any:
        """Arrays joined along their first axis."""

    def host(self, values: Any) -> Any:
        """``values`` as a NumPy array in this process's memory."""

    def fetch(self, values: Any) -> Callable[[], Any]:
        """Start copying ``values`` to this process's memory, behind the work queued for them;
        what it returns waits for the copy and gives the NumPy array. Meanwhile the caller may
        queue more work (the prover's next block)."""


class NumpyBackend:
    """The CPU backend (the verifier, and the agent where there is no GPU)."""

    chunk = 1 << 16
    block_leaves = 4

    def __init__(self) -> None:
        import numpy

        self.np = numpy

    def arange(self, start: int, stop: int) -> Any:
        return self.np.arange(start, stop, dtype=self.np.int64)

    def indices(self, values: list[int]) -> Any:
        return self.np.asarray(values, dtype=self.np.int64)

    def int8(self, values: Any) -> Any:
        return values.astype(self.np.int8)

    def matmul(self, a: Any, b: Any) -> Any:
        # float64 products and sums are exact here (|sum| <= k * 128 * 128, far below 2**53),
        # and BLAS is many times faster than NumPy's integer matmul
        np = self.np
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int32)

    def concat(self, parts: list[Any]) -> Any:
        return self.np.concatenate(parts)

    def host(self, values: Any) -> Any:
        return values

    def fetch(self, values: Any) -> Callable[[], Any]:
        return lambda: values


class TorchBackend:
    """PyTorch on a CUDA device (the agent's GPU prover), or on the CPU (to check it agrees with
    NumPy where there is no GPU). Needs ``torch``, which the marketplace itself does not."""

    def __init__(self, device: str = "cuda", *, fused: bool | None = None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.chunk = 1 << 26 if self.cuda else 1 << 16
        # On a GPU a block is a few kernels a round whatever its size: blocks of 16,384 rows (at
        # the default shape) keep those launches and the copy to the host small next to the work
        self.block_leaves = 64 if self.cuda else 4
        # The generator's tables and the requantization each in one Triton kernel (``kernels``),
        # on a card by default, where Triton is installed (it comes with CUDA PyTorch); without
        # it, array operations
        if fused is None:
            fused = self.cuda and importlib.util.find_spec("triton") is not None
        self.fused = fused
        if fused:
            from protocol.proof import kernels

            self.table = lambda key, stream, rows, columns: kernels.draw_table(torch, key, stream, rows, columns)
            self.requantize = lambda sums: kernels.requantize(torch, sums)  # type: ignore[method-assign]  # fused: one kernel instead of the two passes
        if self.cuda and str(self.device) not in _WARM:
            self.warm_up()

    def warm_up(self) -> None:
        """Set up now what a card's first use sets up (the CUDA context, the int8 product's
        library, the fused kernels' compilation, page-locked memory for the copies: seconds, once
        a process): the agent makes its backends before it starts a check, so none of it falls in
        a check's timed window. A block's whole path, through the copy to the host, as a check
        takes it (waiting for the copy waits for the work before it)."""
        self.fetch(digests(self, inputs(self, bytes(16), 64), self.arange(0, 32), width=64, rounds=1))()
        if self.cuda:
            _WARM.add(str(self.device))

    def arange(self, start: int, stop: int) -> Any:
        return self.torch.arange(start, stop, dtype=self.torch.int64, device=self.device)

    def indices(self, values: list[int]) -> Any:
        return self.torch.tensor(values, dtype=self.torch.int64, device=self.device)

    def int8(self, values: Any) -> Any:
        return values.to(self.torch.int8)

    def matmul(self, a: Any, b: Any) -> Any:
        torch = self.torch
        if not self.cuda:
            return a.to(torch.int32) @ b.to(torch.int32)
        # int8 tensor cores (cuBLASLt) want more than 16 rows and columns in multiples of 8
        rows, columns = a.shape[0], b.shape[1]
        if rows <= 16:
            a = torch.cat([a, a.new_zeros((17 - rows, a.shape[1]))])
        if columns % 8:
            b = torch.cat([b, b.new_zeros((b.shape[0], 8 - columns % 8))], dim=1)
        return torch._int_mm(a, b)[:rows, :columns]

    def requantize(self, sums: Any) -> Any:
        """``work.requantize`` in two passes: the shift, then the int8 conversion, which keeps the
        low byte (``tests/protocol/test_proof_torch.py`` checks it against the masks, on the CPU
        and on the card). Fused, one kernel does both (``kernels.requantize``)."""
        return (sums >> 8).to(self.torch.int8)

    def concat(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts)

    def host(self, values: Any) -> Any:
        return values.cpu().numpy()

    def fetch(self, values: Any) -> Callable[[], Any]:
        if not self.cuda:
            return lambda: values.numpy()
        torch = self.torch
        # into page-locked memory, so the copy runs on the card's stream without blocking this
        # thread; the event marks when it is done (the work before it on the stream too)
        landing = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        landing.copy_(values, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(self.device))

        def wait() -> Any:
            copied.synchronize()
            return landing.numpy()

        return wait


_WARM: set[str] = set()  # the CUDA devices this process has warmed up


def key_words(seed: bytes) -> tuple[int, int, int]:
    """The generator's key: three 32-bit words derived from the challenge's 16-byte seed."""
    if len(seed) != 16:
        raise ValueError("a seed is 16 bytes")
    digest = hashlib.sha256(b"gpuproof/1 key" + seed).digest()
    a, b, c = (int.from_bytes(digest[i : i + 4], "little") for i in range(0, 12, 4))
    return a, b, c


def mix32(x: Any) -> Any:
    """A 32-bit integer hash with full avalanche (``lowbias32``), on int64 arrays whose values
    are in 0..2**32-1. Products may wrap past 2**63; masking keeps the low 32 bits exact."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def draw(key: tuple[int, int, int], stream: int, index: Any) -> Any:
    """Entry ``index`` (int64 array, 0 <= index < 2**62) of ``stream``, as integers in -128..127."""
    lo, hi = index & M32, index >> 32
    h = mix32(lo ^ key[0])
    h = mix32(h ^ hi ^ key[1] ^ ((stream * GOLDEN) & M32))
    h = mix32(h ^ key[2])
    return (h >> 24) - 128


def table(backend: Backend, key: tuple[int, int, int], stream: int, rows: Any, columns: int) -> Any:
    """Rows ``rows`` (a 1-D int64 array) of a ``stream``'s matrix with ``columns`` columns: entry
    (row, column) is ``draw(stream, row * columns + column)``. Drawn ``backend.chunk`` entries at
    a time, which keeps a CPU's intermediate arrays in its cache; a backend with a fused kernel
    for it (the GPU prover's ``kernels.draw_table``) draws it itself."""
    own = getattr(backend, "table", None)
    if own is not None:
        return own(key, stream, rows, columns)
    step = max(1, backend.chunk // columns)
    across = backend.arange(0, columns).reshape(1, columns)
    return backend.concat(
        [
            backend.int8(draw(key, stream, rows[start : start + step].reshape(-1, 1) * columns + across))
            for start in range(0, len(rows), step)
        ]
    )


def matrix_b(backend: Backend, key: tuple[int, int, int], width: int) -> Any:
    return table(backend, key, STREAM_B, backend.arange(0, width), width)


def digest_vectors(backend: Backend, key: tuple[int, int, int], width: int) -> Any:
    return table(backend, key, STREAM_V, backend.arange(0, width), DIGEST_WORDS)


def start_rows(backend: Backend, key: tuple[int, int, int], rows: Any, width: int) -> Any:
    """X_0 for the rows numbered ``rows`` (a 1-D int64 array)."""
    return table(backend, key, STREAM_X, rows, width)


def requantize(backend: Backend, sums: Any) -> Any:
    """q: bits 8 to 15 of each int32 sum, read as a two's-complement int8. Written out with masks,
    which every array library computes alike; a backend with a wrapping conversion gives it
    itself (PyTorch: ``(sums >> 8).to(int8)``, two passes over the sums instead of five)."""
    own = getattr(backend, "requantize", None)
    if own is not None:
        return own(sums)
    return backend.int8((((sums >> 8) + 128) & 0xFF) - 128)


@dataclass(frozen=True)
class Inputs:
    """What every row's computation shares: the key, B and V (built once per challenge)."""

    key: tuple[int, int, int]
    b: Any
    v: Any


def inputs(backend: Backend, seed: bytes, width: int) -> Inputs:
    key = key_words(seed)
    return Inputs(key=key, b=matrix_b(backend, key, width), v=digest_vectors(backend, key, width))


def digests(backend: Backend, shared: Inputs, rows: Any, *, width: int, rounds: int) -> Any:
    """The int32 digests (len(rows) x 2) of the rows numbered ``rows``."""
    x = start_rows(backend, shared.key, rows, width)
    for _ in range(rounds):
        x = requantize(backend, backend.matmul(x, shared.b))
    return backend.matmul(x, shared.v)
