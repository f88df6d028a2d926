"""Proof of GPU, the protocol: exact arithmetic, the honest prover passes, every cheater fails, and
the rate at which a row-skipping prover is caught matches the formula."""

import base64
import random

import numpy as np
import pytest

from protocol.proof import merkle, protocol, work
from protocol.proof.protocol import MalformedOpening, Params

SMALL = Params(rows=4096, width=32, rounds=3, leaf_rows=256, checks=protocol.CHECKS)
SEED = bytes(range(16))


def verify(seed: bytes, params: Params, commitment: protocol.Commitment, rows: list[int]) -> protocol.Verdict:
    """The verifier's side of one exchange, through the wire format."""
    wire = commitment.open(rows, params.leaf_rows)
    root = protocol.parse_root(commitment.root.hex())
    return protocol.check(seed, params, root, rows, protocol.parse_opening(wire, params, rows))


def cheat(honest: protocol.Commitment, params: Params, bad_rows: set[int], value: bytes) -> protocol.Commitment:
    """The honest commitment with ``bad_rows``' digests replaced (rows the prover skipped)."""
    size = work.DIGEST_WORDS * 4
    leaves = [bytearray(leaf) for leaf in honest.leaves]
    for row in bad_rows:
        offset = (row % params.leaf_rows) * size
        leaves[row // params.leaf_rows][offset : offset + size] = value
    return protocol.Commitment([bytes(leaf) for leaf in leaves])


@pytest.fixture(scope="module")
def honest() -> protocol.Commitment:
    return protocol.prove(SEED, SMALL)


# --- The arithmetic --------------------------------------------------------------------------


def test_the_generator_gives_the_same_entries_on_arrays_as_exact_integer_arithmetic() -> None:
    """NumPy's int64 products wrap past 2**63; the generator masks them, so every entry equals the
    one computed with Python's unbounded integers (the reference any implementation must match)."""
    key = work.key_words(SEED)
    index = np.array([0, 1, 2, 255, 2**31, 2**32 - 1, 2**32, 2**40 + 12345, 2**62 - 1], dtype=np.int64)
    index = np.concatenate([index, np.random.default_rng(7).integers(0, 2**62, 2000, dtype=np.int64)])
    for stream in (work.STREAM_X, work.STREAM_B, work.STREAM_V):
        on_arrays = work.draw(key, stream, index)
        exact = [work.draw(key, stream, int(i)) for i in index]
        assert on_arrays.tolist() == exact
    values = work.draw(key, work.STREAM_B, np.arange(1 << 16, dtype=np.int64))
    assert values.min() == -128 and values.max() == 127 and abs(values.mean() + 0.5) < 1.0  # all of int8, evenly


def test_a_rows_digest_matches_an_independent_pure_python_computation() -> None:
    width, rounds, seed = 16, 4, bytes(16)
    key = work.key_words(seed)
    b = [[work.draw(key, work.STREAM_B, i * width + j) for j in range(width)] for i in range(width)]
    v = [[work.draw(key, work.STREAM_V, i * work.DIGEST_WORDS + j) for j in range(2)] for i in range(width)]

    def row_digest(row: int) -> list[int]:
        x = [work.draw(key, work.STREAM_X, row * width + c) for c in range(width)]
        for _ in range(rounds):
            sums = [sum(x[i] * b[i][j] for i in range(width)) for j in range(width)]
            x = [int.from_bytes(((s >> 8) & 0xFF).to_bytes(1, "little"), "little", signed=True) for s in sums]
        return [sum(x[i] * v[i][j] for i in range(width)) for j in range(2)]

    backend = work.NumpyBackend()
    rows = [0, 1, 7, 1000, 123456]
    got = work.digests(backend, work.inputs(backend, seed, width), backend.indices(rows), width=width, rounds=rounds)
    assert got.tolist() == [row_digest(r) for r in rows]


def test_the_int32_sums_cannot_overflow_at_the_widest_challenge() -> None:
    assert protocol.MAX_WIDTH * 128 * 128 < 2**31


# --- Honest and cheating provers -------------------------------------------------------------


def test_the_honest_prover_passes(honest) -> None:  # type: ignore[no-untyped-def]
    for attempt in range(5):
        rows = protocol.choose_rows(SMALL, random.Random(attempt))
        assert verify(SEED, SMALL, honest, rows) == protocol.Verdict(True, "passed")


def test_a_prover_that_skips_rows_is_caught(honest) -> None:  # type: ignore[no-untyped-def]
    skipped = set(range(0, SMALL.rows, 4))  # a quarter of the rows: zeros instead of the work
    verdict = verify(SEED, SMALL, cheat(honest, SMALL, skipped, bytes(8)), protocol.choose_rows(SMALL))
    assert verdict.reason == "row_mismatch"


def test_a_prover_that_returns_random_values_is_caught() -> None:
    rng = random.Random(3)
    garbage = protocol.Commitment([rng.randbytes(SMALL.leaf_bytes) for _ in range(SMALL.leaves)])
    assert verify(SEED, SMALL, garbage, protocol.choose_rows(SMALL)).reason == "row_mismatch"


def test_a_prover_that_replays_an_earlier_commitment_is_caught(honest) -> None:  # type: ignore[no-untyped-def]
    fresh_seed = protocol.new_seed()
    assert verify(fresh_seed, SMALL, honest, protocol.choose_rows(SMALL)).reason == "row_mismatch"


def test_a_prover_that_answers_for_a_different_seed_is_caught() -> None:
    other = bytes([SEED[0] ^ 1, *SEED[1:]])  # one bit away
    assert verify(SEED, SMALL, protocol.prove(other, SMALL), protocol.choose_rows(SMALL)).reason == "row_mismatch"


def test_a_prover_that_opens_rows_its_root_does_not_hold_is_caught(honest) -> None:  # type: ignore[no-untyped-def]
    """It commits to garbage, then computes just the chosen rows and opens those."""
    rng = random.Random(5)
    committed = protocol.Commitment([rng.randbytes(SMALL.leaf_bytes) for _ in range(SMALL.leaves)])
    rows = protocol.choose_rows(SMALL)
    wire = committed.open(rows, SMALL.leaf_rows)
    for leaf in wire["leaves"]:  # the true data of the chosen leaves, under the garbage tree's paths
        leaf["data"] = base64.b64encode(honest.leaves[leaf["index"]]).decode()
    opened = protocol.parse_opening(wire, SMALL, rows)
    assert protocol.check(SEED, SMALL, committed.root, rows, opened).reason == "path_mismatch"


def test_a_prover_slower_than_the_models_envelope_fails() -> None:
    limit = protocol.envelope(4.0, margin=0.25, allowance=0.5)
    assert limit == 5.5
    honest_h100, a100_as_h100 = 4.3, 4.0 * 2.5  # an A100 does this int8 work about 2.5x slower
    assert honest_h100 <= limit < a100_as_h100


def test_the_detection_rate_of_a_row_skipping_prover_matches_the_formula() -> None:
    """Over many challenges the share of cheaters let through is the hypergeometric miss
    probability (here with few checks, so that misses happen often enough to count)."""
    params = Params(rows=1024, width=16, rounds=2, leaf_rows=64, checks=12)
    bad = set(random.Random(11).sample(range(params.rows), 102))  # 10% of the rows skipped
    cheater = cheat(protocol.prove(SEED, params), params, bad, bytes(8))
    rng, trials = random.Random(13), 1500
    missed = sum(verify(SEED, params, cheater, protocol.choose_rows(params, rng)).passed for _ in range(trials))
    p = protocol.miss_probability(params.rows, len(bad), params.checks)
    expected, sd = trials * p, (trials * p * (1 - p)) ** 0.5
    assert 0.25 < p < 0.3
    assert abs(missed - expected) < 4 * sd, (missed, expected)


def test_ninety_checks_catch_a_five_percent_skipper_with_99_percent_probability() -> None:
    assert protocol.checks_for(0.05, 0.99) == protocol.CHECKS == 90
    assert protocol.miss_probability(1 << 20, (1 << 20) // 20, protocol.CHECKS) <= 0.01
    assert protocol.miss_probability(SMALL.rows, SMALL.rows // 20, protocol.CHECKS) <= 0.01


def test_fit_sizes_a_challenge_for_a_models_speed() -> None:
    params = protocol.fit(rows_per_second=2_000_000, seconds=3.0)
    assert params.rows % params.leaf_rows == 0 and abs(params.rows - 6_000_000) <= params.leaf_rows
    assert params.multiply_accumulates == params.rows * 2048 * (10 * 2048 + 2)
    assert protocol.fit(rows_per_second=1e12, seconds=3.0).rows == protocol.MAX_ROWS  # capped, not refused


# --- Bad input -------------------------------------------------------------------------------


def test_malformed_openings_are_refused_with_what_is_wrong(honest) -> None:  # type: ignore[no-untyped-def]
    rows = protocol.choose_rows(SMALL, random.Random(1))
    good = honest.open(rows, SMALL.leaf_rows)
    first = good["leaves"][0]
    bad = {
        "not an object": [],
        "no leaves": {"leaves": "all of them"},
        "a leaf missing": {"leaves": good["leaves"][1:]},
        "a leaf not asked for": {"leaves": [{**first, "index": 10**6}, *good["leaves"][1:]]},
        "a leaf twice": {"leaves": [first, first, *good["leaves"][2:]]},
        "a boolean index": {"leaves": [{**first, "index": True}, *good["leaves"][1:]]},
        "data not base64": {"leaves": [{**first, "data": "!!!"}, *good["leaves"][1:]]},
        "data too short": {"leaves": [{**first, "data": base64.b64encode(b"x").decode()}, *good["leaves"][1:]]},
        "data far too long": {"leaves": [{**first, "data": "A" * 10**6}, *good["leaves"][1:]]},
        "a short path": {"leaves": [{**first, "path": first["path"][1:]}, *good["leaves"][1:]]},
        "a path hash not hex": {"leaves": [{**first, "path": ["zz" * 32, *first["path"][1:]]}, *good["leaves"][1:]]},
        "a leaf not an object": {"leaves": ["leaf", *good["leaves"][1:]]},
    }
    for case, payload in bad.items():
        with pytest.raises(MalformedOpening):
            protocol.parse_opening(payload, SMALL, rows)
            pytest.fail(case)
    for root in ("", "00" * 31, "g" * 64, None, 7):
        with pytest.raises(MalformedOpening):
            protocol.parse_root(root)


def test_parameters_out_of_range_are_refused() -> None:
    for kwargs in (
        {"rows": 1024, "width": 12, "rounds": 1},  # not a multiple of 8
        {"rows": 1024, "width": 16384, "rounds": 1},  # wider than MAX_WIDTH
        {"rows": 1000, "width": 16, "rounds": 1},  # not whole leaves
        {"rows": 1024, "width": 16, "rounds": 0},
        {"rows": 1024, "width": 16, "rounds": 1, "checks": 2000},
    ):
        with pytest.raises(ValueError):
            Params(**kwargs)


def test_merkle_paths_lead_to_the_root_for_any_leaf_count() -> None:
    for count in (1, 2, 3, 5, 8, 13):
        leaves = [merkle.leaf_hash(i, bytes([i])) for i in range(count)]
        tree = merkle.MerkleTree(leaves)
        for i, leaf in enumerate(leaves):
            path = tree.path(i)
            assert len(path) == merkle.depth(count)
            assert merkle.root_from_path(leaf, i, path) == tree.root
            assert merkle.root_from_path(merkle.leaf_hash(i, b"other"), i, path) != tree.root


def test_drawing_in_chunks_of_any_size_gives_the_same_matrices() -> None:
    whole, pieces = work.NumpyBackend(), work.NumpyBackend()
    whole.chunk, pieces.chunk = 1 << 30, 7  # one piece; pieces smaller than a row
    rows = [3, 1, 4, 1, 5, 9, 2, 6]
    digests = [
        work.digests(b, work.inputs(b, SEED, 64), b.indices(rows), width=64, rounds=2).tolist() for b in (whole, pieces)
    ]
    assert digests[0] == digests[1]


def test_the_root_does_not_depend_on_how_many_leaves_a_block_holds(honest) -> None:  # type: ignore[no-untyped-def]
    """A GPU takes bigger blocks through the rounds than a CPU (fewer kernel launches): same rows,
    same digests, same root, whether the size is the backend's own or asked for."""
    big = work.NumpyBackend()
    big.block_leaves = SMALL.leaves  # the whole challenge at once
    assert protocol.prove(SEED, SMALL, big).root == honest.root
    for block in (1, 3, SMALL.leaves + 5):
        assert protocol.prove(SEED, SMALL, block_leaves=block).root == honest.root, block
    # the leaves the prover hashed as it went are the leaves it committed to
    assert protocol.Commitment(honest.leaves).root == honest.root


def test_several_cards_share_a_challenge_and_commit_to_the_same_root(honest) -> None:  # type: ignore[no-untyped-def]
    """A multi-GPU check: each card computes its own contiguous share of the leaves."""
    for cards in (2, 3, SMALL.leaves):
        shared = protocol.prove(SEED, SMALL, [work.NumpyBackend() for _ in range(cards)])
        assert shared.root == honest.root, cards
    with pytest.raises(ValueError):
        protocol.prove(SEED, SMALL, [])
