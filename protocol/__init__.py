"""What the provider agent and the marketplace share, free of Django and of either program: the
GPU catalog and its name normalizer, the signed usage report (EIP-712), and the proof-of-GPU
protocol (the seeded work, the Merkle commitment, the verifier's checks). Both import it; it
imports neither (import-linter contracts)."""
