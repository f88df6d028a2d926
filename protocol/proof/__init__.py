"""Proof of GPU: a seeded, exact int8 workload that only the claimed GPU finishes in time, a
Merkle commitment to its result, and spot checks of random rows (``docs/PROOF_OF_GPU.md``).

Pure Python and NumPy, shared by the marketplace (the verifier) and the agent (the prover)."""
