"""Signed usage reports (EIP-712), shared by the agent (which signs) and the marketplace (which verifies).

A report says what one lease used in one period: its start and end (Unix seconds), the
GPU-seconds, the seconds the workload actually ran, and how often it restarted. The agent signs
it with the provider's key; the marketplace recovers the signer and checks that the address is
one the provider linked. The domain (name, version, chain id) comes from the marketplace, so a
report signed for one marketplace cannot be replayed on another.
"""

from dataclasses import asdict, dataclass
from functools import cache

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak

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


# EIP-712 by hand for this one flat struct of unsigned integers (verifying thousands of reports a
# second needs it: eth_account rebuilds the domain and the type hash for every message); the
# tests check it against eth_account's ``encode_typed_data`` for generated reports.
_TYPE = "UsageReport(" + ",".join(f"{f['type']} {f['name']}" for f in USAGE_TYPES["UsageReport"]) + ")"
_TYPE_HASH = keccak(text=_TYPE)
_BITS = [int(f["type"].removeprefix("uint")) for f in USAGE_TYPES["UsageReport"]]


@cache
def _domain_separator(chain_id: int) -> bytes:
    zero = UsageReport(0, 0, 0, 0, 0, 0)
    return bytes(
        encode_typed_data(domain_data=domain(chain_id), message_types=USAGE_TYPES, message_data=zero.message()).header
    )


def _signable(report: UsageReport, chain_id: int) -> SignableMessage:
    values = report.message().values()
    for value, bits in zip(values, _BITS, strict=True):
        if not isinstance(value, int) or not 0 <= value < 2**bits:
            raise ValueError(f"{value!r} does not fit uint{bits}")
    body = keccak(_TYPE_HASH + b"".join(value.to_bytes(32, "big") for value in values))
    return SignableMessage(version=b"\x01", header=_domain_separator(chain_id), body=body)


def sign(report: UsageReport, *, chain_id: int, key: str | bytes) -> str:
    signed = Account.sign_message(_signable(report, chain_id), private_key=key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def signer_of(report: UsageReport, *, chain_id: int, signature: str) -> str:
    """The checksummed address that signed ``report``; raises ValueError for a malformed signature."""
    try:
        return Account.recover_message(_signable(report, chain_id), signature=signature)
    except Exception as exc:  # eth_keys raises several types for bad bytes
        raise ValueError(f"not a valid signature: {exc}") from exc
