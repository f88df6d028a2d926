"""Trust: proof-of-GPU checks of providers' claims (``docs/PROOF_OF_GPU.md``) and what follows
from them."""
