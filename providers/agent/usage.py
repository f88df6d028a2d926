"""Signed usage reports (EIP-712), shared by the agent (which signs) and the marketplace (which verifies).

A report says what one lease used in one period: its start and end (Unix seconds), the
GPU-seconds, the seconds the workload actually ran, and how often it restarted. The agent signs
it with the provider's key; the marketplace recovers the signer and checks that the address is
one the provider linked. The domain (name, version, chain id) comes from the marketplace, so a
report signed for one marketplace cannot be replayed on another.
"""

from dataclasses import asdict, dataclass

from eth_account import Account
from eth_account.messages import encode_typed_data

DOMAIN_NAME = "GPU Market"
DOMAIN_VERSION = "1"
USAGE_TYPES = {
    "UsageReport": [
        {"name": "lease", "type": "uint256"},
        {"name": "periodStart", "type": "uint64"},
        {"name": "periodEnd", "type": "uint64"},
        {"name": "gpuSeconds", "type": "uint64"},
        {"name": "runSeconds", "type": "uint64"},
        {"name": "restarts", "type": "uint32"},
    ]
}


@dataclass(frozen=True)
class UsageReport:
    lease: int
    period_start: int  # Unix seconds
    period_end: int
    gpu_seconds: int
    run_seconds: int
    restarts: int

    def message(self) -> dict[str, int]:
        return {
            "lease": self.lease,
            "periodStart": self.period_start,
            "periodEnd": self.period_end,
            "gpuSeconds": self.gpu_seconds,
            "runSeconds": self.run_seconds,
            "restarts": self.restarts,
        }

    def body(self, signature: str) -> dict:
        """The JSON the agent sends to ``POST /api/v1/leases/{id}/usage/``."""
        fields = asdict(self)
        fields.pop("lease")
        return {**fields, "signature": signature}


def domain(chain_id: int) -> dict:
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}


def _signable(report: UsageReport, chain_id: int):  # type: ignore[no-untyped-def]
    return encode_typed_data(domain_data=domain(chain_id), message_types=USAGE_TYPES, message_data=report.message())


def sign(report: UsageReport, *, chain_id: int, key: str | bytes) -> str:
    signed = Account.sign_message(_signable(report, chain_id), private_key=key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def signer_of(report: UsageReport, *, chain_id: int, signature: str) -> str:
    """The checksummed address that signed ``report``; raises ValueError for a malformed signature."""
    try:
        return Account.recover_message(_signable(report, chain_id), signature=signature)
    except Exception as exc:  # eth_keys raises several types for bad bytes
        raise ValueError(f"not a valid signature: {exc}") from exc
