"""The GPU prover's fused kernels (Triton): the generator's tables, and the requantization, each
in one pass.

``work.table`` written with array operations makes PyTorch run some twenty kernels one after
another over int64 temporaries, about 740 bytes of memory traffic for each int8 entry it draws:
for the rows' starting vectors that is several times the traffic of all the rounds together.
Here one kernel computes each entry from its index in registers (the same ``draw``, in unsigned
32-bit arithmetic, where multiplication wraps as the masks do) and writes one byte.

A round's requantization is memory traffic only: PyTorch's ``(sums >> 8).to(int8)`` is two
kernels, which write the shifted int32 sums out and read them back (13 bytes an entry). Here one
kernel reads each sum once and writes its byte (5 bytes an entry). With the product writing its
int32 sums, a round moves about 10 bytes an entry, where the datasheet estimate allows 17.

Exactly what ``work.table`` and ``work.requantize`` compute: ``tests/protocol/test_proof_torch.py``
compares them on the card, and on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from contextlib import nullcontext
from typing import Any

import triton
import triton.language as tl

from protocol.proof.work import GOLDEN, M32

BLOCK = 1024  # entries a program draws


@triton.jit
def _mix32(x):
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


# Triton compiles a kernel again for each new "signature" of its integer arguments (their type,
# whether one equals 1 or divides by 16): for the random key words that would be a compilation in
# the middle of a timed check now and then. So none of them is specialized, and the keys always
# travel as signed 32-bit integers (``_i32``); the kernel reads their bits back as unsigned.
@triton.jit(do_not_specialize=["total", "columns", "key0", "key1", "key2"])
def _draw_table(rows_ptr, out_ptr, total, columns, key0, key1, key2, BLOCK: tl.constexpr):  # noqa: N803
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < total
    row = tl.load(rows_ptr + offsets // columns, mask=inside, other=0)
    index = row * columns + offsets % columns
    h = _mix32((index & 0xFFFFFFFF).to(tl.uint32) ^ key0.to(tl.uint32))
    h = _mix32(h ^ (index >> 32).to(tl.uint32) ^ key1.to(tl.uint32))
    h = _mix32(h ^ key2.to(tl.uint32))
    tl.store(out_ptr + offsets, ((h >> 24).to(tl.int32) - 128).to(tl.int8), mask=inside)


@triton.jit(do_not_specialize=["total"])
def _requantize(sums_ptr, out_ptr, total, BLOCK: tl.constexpr):  # noqa: N803
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < total
    sums = tl.load(sums_ptr + offsets, mask=inside, other=0)
    # an arithmetic shift of the signed sums, then the conversion to int8 keeps the low byte
    tl.store(out_ptr + offsets, (sums >> 8).to(tl.int8), mask=inside)


def draw_table(torch: Any, key: tuple[int, int, int], stream: int, rows: Any, columns: int) -> Any:
    """``work.table`` for a 1-D int64 tensor of row numbers: an int8 tensor, len(rows) x columns."""
    rows = rows.contiguous()
    out = torch.empty((rows.shape[0], columns), dtype=torch.int8, device=rows.device)
    total = out.numel()
    if total:
        # the stream's constant joins the second key word (xor is associative, as in ``draw``)
        mixed = key[1] ^ ((stream * GOLDEN) & M32)
        keys = (_i32(key[0]), _i32(mixed), _i32(key[2]))
        # Triton launches on the current device, not the tensors': on a multi-GPU host each card's
        # thread (``protocol.prove``) makes its own card current
        with torch.cuda.device(rows.device) if rows.is_cuda else nullcontext():
            _draw_table[(triton.cdiv(total, BLOCK),)](rows, out, total, columns, *keys, BLOCK=BLOCK)
    return out


def requantize(torch: Any, sums: Any) -> Any:
    """``work.requantize`` of an int32 tensor in one pass: an int8 tensor of the same shape."""
    sums = sums.contiguous()
    out = torch.empty(sums.shape, dtype=torch.int8, device=sums.device)
    total = out.numel()
    if total:
        with torch.cuda.device(sums.device) if sums.is_cuda else nullcontext():
            _requantize[(triton.cdiv(total, BLOCK),)](sums, out, total, BLOCK=BLOCK)
    return out


def _i32(word: int) -> int:
    """A 32-bit word as the signed integer with the same bits."""
    return word - (1 << 32) if word >= 1 << 31 else word
