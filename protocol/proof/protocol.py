"""Proof of GPU, the protocol (``docs/PROOF_OF_GPU.md``): parameters fitted to a GPU model, the
prover's commitment and openings, the verifier's choice of rows and its checks.

Pure: no Django, no network, no clock. The marketplace issues challenges and keeps time; the
agent runs the prover on the claimed GPU; both carry these values over the API.
"""

import base64
import binascii
import math
import random
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from protocol.proof import merkle
from protocol.proof.work import DIGEST_WORDS, Backend, NumpyBackend, digests, inputs

VERSION = "gpuproof/1"
SEED_BYTES = 16
# Rows the verifier checks: a prover that skipped 5% of the rows is caught with probability
# at least 99% (``checks_for(0.05, 0.99)``).
CHECKS = 90
DEFAULT_WIDTH = 2048
DEFAULT_ROUNDS = 10
DEFAULT_LEAF_ROWS = 256
MAX_WIDTH = 8192
MAX_ROWS = 1 << 27


class MalformedOpening(ValueError):
    """An opening that does not have the shape the protocol asks for."""


@dataclass(frozen=True)
class Params:
    """A challenge's size: ``rows`` independent rows, each ``rounds`` products with a
    ``width`` x ``width`` matrix; ``leaf_rows`` rows' digests per Merkle leaf; ``checks`` rows opened."""

    rows: int
    width: int
    rounds: int
    leaf_rows: int = DEFAULT_LEAF_ROWS
    checks: int = CHECKS

    def __post_init__(self) -> None:
        if not (8 <= self.width <= MAX_WIDTH and self.width % 8 == 0):
            raise ValueError(f"width must be a multiple of 8 from 8 to {MAX_WIDTH}")
        if not (1 <= self.rounds <= 1000):
            raise ValueError("rounds must be from 1 to 1000")
        if self.leaf_rows < 1 or self.rows < self.leaf_rows or self.rows % self.leaf_rows:
            raise ValueError("rows must be a positive multiple of leaf_rows")
        if self.rows > MAX_ROWS:
            raise ValueError(f"at most {MAX_ROWS} rows")
        if not (1 <= self.checks <= self.rows):
            raise ValueError("checks must be from 1 to rows")

    @property
    def leaves(self) -> int:
        return self.rows // self.leaf_rows

    @property
    def leaf_bytes(self) -> int:
        return self.leaf_rows * DIGEST_WORDS * 4

    @property
    def multiply_accumulates(self) -> int:
        """The int8 multiply-adds an honest prover does (the digests' products included)."""
        return self.rows * self.width * (self.rounds * self.width + DIGEST_WORDS)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Params":
        """Parameters as ``as_dict`` wrote them (and the challenge's API sends them)."""
        return cls(
            rows=int(data["rows"]),
            width=int(data["width"]),
            rounds=int(data["rounds"]),
            leaf_rows=int(data["leaf_rows"]),
            checks=int(data["checks"]),
        )

    def as_dict(self) -> dict[str, int | str]:
        return {
            "version": VERSION,
            "rows": self.rows,
            "width": self.width,
            "rounds": self.rounds,
            "leaf_rows": self.leaf_rows,
            "checks": self.checks,
        }


def checks_for(skipped: float, confidence: float) -> int:
    """Rows to check so that a prover that skipped a ``skipped`` fraction of them is caught with
    probability at least ``confidence`` (drawn with replacement; drawing distinct rows, as
    ``choose_rows`` does, only catches more)."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - skipped))


def miss_probability(rows: int, bad: int, checks: int) -> float:
    """The exact chance that ``checks`` distinct rows drawn at random avoid all ``bad`` rows."""
    p = 1.0
    for i in range(checks):
        p *= max(0, rows - bad - i) / (rows - i)
    return p


def fit(
    rows_per_second: float,
    seconds: float,
    *,
    width: int = DEFAULT_WIDTH,
    rounds: int = DEFAULT_ROUNDS,
    leaf_rows: int = DEFAULT_LEAF_ROWS,
    checks: int = CHECKS,
) -> Params:
    """The size an honest GPU doing ``rows_per_second`` of this work finishes in ``seconds`` (at
    most ``MAX_ROWS`` rows: a faster card just finishes sooner)."""
    leaves = min(max(1, round(rows_per_second * seconds / leaf_rows)), MAX_ROWS // leaf_rows)
    return Params(rows=leaves * leaf_rows, width=width, rounds=rounds, leaf_rows=leaf_rows, checks=checks)


# Rows per second an honest card does at the default shape, measured on real cards by catalog id
# (benchmarks/RESULTS.md, "Proof of GPU"). Models not measured yet use the datasheet estimate.
CALIBRATED_ROWS_PER_SECOND: dict[str, float] = {}


def estimated_rows_per_second(
    int8_tops: float, bandwidth_gbps: float, *, width: int = DEFAULT_WIDTH, rounds: int = DEFAULT_ROUNDS
) -> float:
    """A datasheet estimate of an honest card's speed on this work: per round, the int8 product
    at half the dense int8 peak, then about 17 bytes of memory traffic per entry (the int32 sums
    written and read back, the int8 result written) at 80% of the memory bandwidth.

    Half the peak is what one H100 SXM measured on a far larger product (about 1,000 of its 1,979
    dense int8 TOPS on 8192 x 8192 x 65536): a challenge's products are smaller, where cards seldom
    do better, and an estimate above what honest cards do would fail them. The prover moves
    about 10 bytes an entry a round (``kernels``), below the 17 assumed here."""
    per_round = 2 * width * width / (0.5 * int8_tops * 1e12) + 17 * width / (0.8 * bandwidth_gbps * 1e9)
    return 1 / (rounds * per_round)


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def envelope(expected_seconds: float, *, margin: float, allowance: float) -> float:
    """The longest an honest answer may take: the model's expected time, a margin for honest
    variance, and a fixed allowance for the round trip and the prover's hashing."""
    return expected_seconds * (1 + margin) + allowance


# --- The prover ------------------------------------------------------------------------------


class Commitment:
    """The prover's result: the digests' bytes, leaf by leaf, and the Merkle tree over them."""

    def __init__(self, leaves: list[bytes], hashes: list[bytes] | None = None) -> None:
        """``hashes``, where given, are the leaves' own (``merkle.leaf_hash``): the prover hashes
        each block's leaves while the device computes the next."""
        self.leaves = leaves
        if hashes is None:
            hashes = [merkle.leaf_hash(i, data) for i, data in enumerate(leaves)]
        self.tree = merkle.MerkleTree(hashes)

    @property
    def root(self) -> bytes:
        return self.tree.root

    def open(self, rows: list[int], leaf_rows: int) -> dict[str, Any]:
        """The opening of ``rows``: every leaf holding one, with its Merkle path (wire format)."""
        wanted = sorted({row // leaf_rows for row in rows})
        return {
            "leaves": [
                {
                    "index": i,
                    "data": base64.b64encode(self.leaves[i]).decode(),
                    "path": [sibling.hex() for sibling in self.tree.path(i)],
                }
                for i in wanted
            ]
        }


def leaf_bytes(values: Any) -> bytes:
    """Digests (a NumPy array, rows x 2 int32) as a leaf: little-endian, row-major."""
    return values.astype("<i4").tobytes()


def prove(
    seed: bytes,
    params: Params,
    backend: Backend | Sequence[Backend] | None = None,
    *,
    block_leaves: int | None = None,
) -> Commitment:
    """The honest prover, a block of leaves at a time (``block_leaves``, by default the backend's
    own; the agent's GPU prover is the same loop over CUDA tensors). Given several backends (a
    multi-GPU check: one per card), each computes its own contiguous share of the leaves, all at
    once. The result does not depend on the block size: rows are independent."""
    backends = [NumpyBackend()] if backend is None else [backend] if not isinstance(backend, Sequence) else backend
    if not backends:
        raise ValueError("no backend to prove with")
    block_leaves = block_leaves or backends[0].block_leaves
    cards = len(backends)
    bounds = [params.leaves * i // cards for i in range(cards + 1)]
    if cards == 1:
        return Commitment(*_leaves(seed, params, backends[0], 0, params.leaves, block_leaves))
    with ThreadPoolExecutor(max_workers=cards) as pool:  # GPU kernels release the GIL, and so does hashing
        shares = list(
            pool.map(lambda i: _leaves(seed, params, backends[i], bounds[i], bounds[i + 1], block_leaves), range(cards))
        )
    return Commitment(
        [leaf for leaves, _ in shares for leaf in leaves], [digest for _, hashes in shares for digest in hashes]
    )


def _leaves(
    seed: bytes, params: Params, backend: Backend, first: int, last: int, block_leaves: int
) -> tuple[list[bytes], list[bytes]]:
    """Leaves ``first`` to ``last`` (exclusive), computed on ``backend``, and their hashes. One
    block at a time, pipelined: a block's digests are copied to the host and hashed while the
    device computes the next one, so a GPU never waits for the CPU between blocks."""
    shared = inputs(backend, seed, params.width)
    leaves: list[bytes] = []
    hashes: list[bytes] = []

    def take(fetched: Callable[[], Any]) -> None:
        data = leaf_bytes(fetched())
        for i in range(0, len(data), params.leaf_bytes):
            leaf = data[i : i + params.leaf_bytes]
            hashes.append(merkle.leaf_hash(first + len(leaves), leaf))
            leaves.append(leaf)

    pending: Callable[[], Any] | None = None
    step = block_leaves * params.leaf_rows
    for start in range(first * params.leaf_rows, last * params.leaf_rows, step):
        stop = min(last * params.leaf_rows, start + step)
        block = digests(backend, shared, backend.arange(start, stop), width=params.width, rounds=params.rounds)
        fetched = backend.fetch(block)  # queued behind this block's work, ahead of the next block's
        if pending is not None:
            take(pending)
        pending = fetched
    if pending is not None:
        take(pending)
    return leaves, hashes


# --- The verifier ----------------------------------------------------------------------------


def choose_rows(params: Params, rng: random.Random | None = None) -> list[int]:
    """The rows to open, drawn after the commitment arrived, so the prover could not know them."""
    rng = rng or secrets.SystemRandom()
    return sorted(rng.sample(range(params.rows), params.checks))


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str  # "passed", "path_mismatch" or "row_mismatch"
    detail: str = ""


def parse_root(text: Any) -> bytes:
    try:
        root = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        root = b""
    if len(root) != merkle.HASH_BYTES:
        raise MalformedOpening("The commitment must be 64 hexadecimal characters (a SHA-256 root).")
    return root


def parse_opening(payload: Any, params: Params, rows: list[int]) -> dict[int, tuple[bytes, list[bytes]]]:
    """Read an opening (wire format) for ``rows``; MalformedOpening names what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("leaves"), list):
        raise MalformedOpening('An opening is {"leaves": [{"index", "data", "path"}, ...]}.')
    wanted = {row // params.leaf_rows for row in rows}
    if len(payload["leaves"]) != len(wanted):
        raise MalformedOpening(f"Open exactly the {len(wanted)} leaves holding the chosen rows.")
    opened: dict[int, tuple[bytes, list[bytes]]] = {}
    steps = merkle.depth(params.leaves)
    for item in payload["leaves"]:
        if not isinstance(item, dict):
            raise MalformedOpening("Each opened leaf is an object.")
        index, data, path = item.get("index"), item.get("data"), item.get("path")
        if not isinstance(index, int) or isinstance(index, bool) or index not in wanted or index in opened:
            raise MalformedOpening(f"Leaf {index!r} was not asked for, or is opened twice.")
        if not isinstance(data, str) or len(data) > 2 * params.leaf_bytes:
            raise MalformedOpening(f"Leaf {index}: data must be base64 of {params.leaf_bytes} bytes.")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != params.leaf_bytes:
            raise MalformedOpening(f"Leaf {index}: data must be base64 of {params.leaf_bytes} bytes.")
        if not isinstance(path, list) or len(path) != steps:
            raise MalformedOpening(f"Leaf {index}: the path must have {steps} hashes.")
        siblings = [parse_root(sibling) for sibling in path]
        opened[index] = (raw, siblings)
    return opened


def check(
    seed: bytes,
    params: Params,
    root: bytes,
    rows: list[int],
    opened: dict[int, tuple[bytes, list[bytes]]],
    backend: Backend | None = None,
) -> Verdict:
    """Check a parsed opening: every leaf belongs to the committed root, and every chosen row's
    digest is what the seed says it must be (recomputed here, through every round)."""
    for index, (data, path) in sorted(opened.items()):
        if merkle.root_from_path(merkle.leaf_hash(index, data), index, path) != root:
            return Verdict(False, "path_mismatch", f"leaf {index} is not under the committed root")
    backend = backend or NumpyBackend()
    shared = inputs(backend, seed, params.width)
    computed = digests(backend, shared, backend.indices(rows), width=params.width, rounds=params.rounds)
    expected = leaf_bytes(backend.host(computed))
    row_bytes = DIGEST_WORDS * 4
    for n, row in enumerate(rows):
        data, _ = opened[row // params.leaf_rows]
        offset = (row % params.leaf_rows) * row_bytes
        if data[offset : offset + row_bytes] != expected[n * row_bytes : (n + 1) * row_bytes]:
            return Verdict(False, "row_mismatch", f"row {row} is not the seed's result")
    return Verdict(True, "passed")
