"""The terms a client signs for the escrow contract (EIP-712, in the contract's own domain).

- An **acceptance**: the exact terms of one lease as the client clicked them (the order, the
  provider's payee address, the price per hour, the deposit, the duration, and a deadline).
- An **authorization**: signed with the order, it lets the auction award the order to any provider
  at a price and deposit within ceilings, until an expiry.

The contract (``open_lease``, ``open_lease_authorized``) recovers the signer and opens the
lease only for that client, on those terms, once per order. The domain names the chain and the
contract, so a signature for another chain or another deployment is worth nothing. A browser
wallet signs the same message with ``eth_signTypedData_v4``; ``typed_data`` is what it is given.
"""

from dataclasses import asdict, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature
from eth_utils.exceptions import ValidationError
from web3 import Web3

DOMAIN_NAME = "GPU Market Escrow"
DOMAIN_VERSION = "1"

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_TYPES = {
    "Acceptance": [
        {"name": "order", "type": "uint256"},
        {"name": "provider", "type": "address"},
        {"name": "pricePerHour", "type": "uint256"},
        {"name": "deposit", "type": "uint256"},
        {"name": "durationHours", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Authorization": [
        {"name": "order", "type": "uint256"},
        {"name": "maxPricePerHour", "type": "uint256"},
        {"name": "maxDeposit", "type": "uint256"},
        {"name": "expiry", "type": "uint256"},
    ],
}


@dataclass(frozen=True)
class Acceptance:
    order: int
    provider: str
    pricePerHour: int  # noqa: N815 - the EIP-712 field's name, as the wallet shows it
    deposit: int
    durationHours: int  # noqa: N815
    deadline: int  # Unix seconds


@dataclass(frozen=True)
class Authorization:
    order: int
    maxPricePerHour: int  # noqa: N815
    maxDeposit: int  # noqa: N815
    expiry: int  # Unix seconds


def typed_data(terms: Acceptance | Authorization, *, chain_id: int, contract: str) -> dict[str, Any]:
    """The full EIP-712 message for ``terms`` in the escrow's domain on ``chain_id`` at ``contract``."""
    kind = type(terms).__name__
    message = asdict(terms)
    if isinstance(terms, Acceptance):
        message["provider"] = Web3.to_checksum_address(terms.provider)
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, kind: _TYPES[kind]},
        "primaryType": kind,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": Web3.to_checksum_address(contract),
        },
        "message": message,
    }


def sign(terms: Acceptance | Authorization, *, key: str, chain_id: int, contract: str) -> str:
    """Sign ``terms`` with ``key``, as a wallet would: the 65-byte signature, hex."""
    message = encode_typed_data(full_message=typed_data(terms, chain_id=chain_id, contract=contract))
    return Web3.to_hex(Account.sign_message(message, key).signature)


def signer_of(terms: Acceptance | Authorization, signature: str, *, chain_id: int, contract: str) -> str | None:
    """The address that signed ``terms``, or None for what the contract would not take as a signature
    (not 65 bytes, a malleable high ``s``)."""
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except (ValueError, TypeError, AttributeError):
        return None
    if len(raw) != 65 or int.from_bytes(raw[32:64], "big") > _HALF_ORDER:
        return None
    message = encode_typed_data(full_message=typed_data(terms, chain_id=chain_id, contract=contract))
    try:
        return Account.recover_message(message, signature=raw)
    except (ValueError, ValidationError, BadSignature):
        return None


_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # secp256k1's n / 2
