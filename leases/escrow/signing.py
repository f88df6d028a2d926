"""The terms a client signs for the escrow contract, as the marketplace asks for them, checks them and
opens leases on them (``chain.terms`` builds the EIP-712 messages; the contract checks them again).

- A client with a wallet signs an **acceptance** of the exact terms when it accepts a bid (the order,
  the provider's payee address, the price, the deposit, the duration, a deadline), and a **standing
  authorization** for its order (the most it pays an hour, the largest deposit, an expiry) if it
  wants the deadline's award to open the lease without it. The API takes the signatures, checks
  them before anything is written, and the lease keeps them; the contract opens nothing else.
- The marketplace signs itself only where it holds the key: as the custodian of a client without
  a wallet (the custody account is that client in the contract), and, on the in-process chain of
  ``make run`` and the tests, for the demo client's wallet, whose key is public there (it signs as
  that wallet would, so the demo works in a browser without a wallet extension).
"""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings

from chain import terms
from chain.adapter import EscrowClient, custody_address, custody_key, escrow_domain
from chain.evm import DEMO_CLIENT_ACCOUNT, embedded_account, embedded_key
from chain.models import ChainTransaction, Wallet
from core.errors import Conflict, ValidationFailed
from core.models import User
from leases.escrow.base import nothing_to_sign
from leases.models import Lease

TERMS_SECONDS = 3600
"""How long a signed acceptance stays good: time for the chain to take it, retries included."""
AUTHORIZATION_AFTER_DEADLINE = timedelta(hours=1)
"""How long after the order's deadline the standing authorization the page proposes stays good."""


def primary_wallet(user_id: int) -> str | None:
    return Wallet.objects.filter(user_id=user_id).order_by("linked_at", "id").values_list("address", flat=True).first()


def _wallets(user_id: int) -> set[str]:
    return {a.lower() for a in Wallet.objects.filter(user_id=user_id).values_list("address", flat=True)}


def server_key(address: str) -> str | None:
    """The key the marketplace signs with for ``address``: the custody account's, and on the
    in-process chain a demo account's (public there). None: only the address's owner can sign."""
    custody = custody_address()
    if custody is not None and address.lower() == custody.lower():
        return custody_key()
    demo = embedded_account(DEMO_CLIENT_ACCOUNT)
    if settings.CHAIN_BACKEND == "embedded" and address.lower() == demo.lower():
        return embedded_key(DEMO_CLIENT_ACCOUNT)
    return None


def terms_signer(*, client: User) -> str:
    """Who signs the terms this client accepts: ``wallet`` (its own wallet), ``custody`` (the
    marketplace, as the custodian of a client without one), ``demo`` (the marketplace, for the demo
    wallet of the in-process chain), or "" (nobody can: no wallet and no custody account)."""
    wallet = primary_wallet(client.pk)
    if wallet is None:
        return "custody" if custody_address() is not None else ""
    return "wallet" if server_key(wallet) is None else "demo"


def signing_wallet(user_id: int) -> str | None:
    """The wallet that has to sign for this client, or None where the marketplace signs for it."""
    wallet = primary_wallet(user_id)
    return wallet if wallet is not None and server_key(wallet) is None else None


def _domain() -> dict[str, Any]:
    chain_id, contract = escrow_domain()
    return {"chain_id": chain_id, "contract": contract}


def _acceptance(
    *, order_id: int, payee: str, price_per_hour: int, duration_hours: int, deadline: int
) -> terms.Acceptance:
    return terms.Acceptance(order_id, payee, price_per_hour, price_per_hour * duration_hours, duration_hours, deadline)


def acceptance_terms(
    *, client: User, order_id: int, provider_user_id: int, price_per_hour: int, duration_hours: int
) -> dict[str, Any] | None:
    payee = primary_wallet(provider_user_id)
    if signing_wallet(client.pk) is None or payee is None:
        return None
    accepted = _acceptance(
        order_id=order_id,
        payee=payee,
        price_per_hour=price_per_hour,
        duration_hours=duration_hours,
        deadline=int(time.time()) + TERMS_SECONDS,
    )
    return terms.typed_data(accepted, **_domain())


def _signer(signed: terms.Acceptance | terms.Authorization, signature: str, *, user_id: int, what: str) -> str:
    signer = terms.signer_of(signed, signature, **_domain())
    if signer is None or signer.lower() not in _wallets(user_id):
        raise ValidationFailed(
            f"The signature is not a signature of these terms by a wallet linked to your account: sign {what} "
            "again with your wallet.",
            code="bad_signature",
            fields={"signature": ["Not your linked wallet's signature of these terms."]},
        )
    return signer


def acceptance_signed(
    *,
    client: User,
    order_id: int,
    provider_user_id: int,
    price_per_hour: int,
    duration_hours: int,
    signature: str,
    deadline: int | None,
) -> dict[str, Any]:
    if not signature:
        if signing_wallet(client.pk) is None:
            return {}  # the marketplace signs, as the custodian or for a demo wallet
        if primary_wallet(provider_user_id) is None:  # nothing could be signed: say why
            raise Conflict("The provider has no linked wallet to be paid at.", code="provider_without_wallet")
        raise ValidationFailed(
            "Your wallet signs the terms it accepts: sign them (GET the bid's terms), then accept with the "
            "signature and its deadline.",
            code="signature_required",
            fields={"signature": ["Required: your wallet's signature of the terms."]},
        )
    if deadline is None or deadline <= time.time():
        raise ValidationFailed(
            "The signed terms have expired: sign them again.",
            code="terms_expired",
            fields={"deadline": ["In the future: the deadline you signed."]},
        )
    payee = primary_wallet(provider_user_id)
    if payee is None:
        raise Conflict("The provider has no linked wallet to be paid at.", code="provider_without_wallet")
    accepted = _acceptance(
        order_id=order_id, payee=payee, price_per_hour=price_per_hour, duration_hours=duration_hours, deadline=deadline
    )
    signer = _signer(accepted, signature, user_id=client.pk, what="the acceptance")
    return {"kind": "acceptance", "signer": signer, "payee": payee, "signature": signature, "deadline": deadline}


def _authorization(order: Any, expiry: int) -> terms.Authorization:
    return terms.Authorization(
        order.pk, order.max_price_per_hour, order.max_price_per_hour * order.duration_hours, expiry
    )


def authorization_terms(*, order: Any) -> dict[str, Any] | None:
    if signing_wallet(order.client_id) is None:
        return None
    expiry = int((order.deadline + AUTHORIZATION_AFTER_DEADLINE).timestamp())
    return terms.typed_data(_authorization(order, expiry), **_domain())


def authorization_signed(*, order: Any, signature: str, expiry: int | None) -> dict[str, Any]:
    if signing_wallet(order.client_id) is None:
        raise nothing_to_sign()
    if expiry is None or expiry < order.deadline.timestamp():
        raise ValidationFailed(
            "The authorization must last until the order's deadline at least.",
            code="authorization_too_short",
            fields={"expiry": ["At or after the order's deadline."]},
        )
    authorized = _authorization(order, expiry)
    signer = _signer(authorized, signature, user_id=order.client_id, what="the authorization")
    return {
        "signer": signer,
        "signature": signature,
        "max_price_per_hour": authorized.maxPricePerHour,
        "max_deposit": authorized.maxDeposit,
        "expiry": expiry,
    }


def award_terms(*, order: Any) -> dict[str, Any]:
    if signing_wallet(order.client_id) is None:
        return {}
    authorization = order.authorization or {}
    if not authorization:
        raise Conflict("the client signed no standing authorization for the deadline's award", code="unauthorized")
    if authorization["expiry"] <= time.time():
        raise Conflict("the client's standing authorization has expired", code="unauthorized")
    return {"kind": "authorization", **authorization}


def opener(client: EscrowClient, lease: Lease, *, payer: str, payee: str) -> Callable[[], ChainTransaction] | None:
    """The operator's call that opens ``lease`` in the contract on the terms the client signed (or
    that the marketplace signs, where it holds the key); None when nobody signed and none can."""
    signed = lease.signed_terms or {}
    common: dict[str, Any] = {
        "lease_id": lease.pk,
        "order_id": lease.order_id,
        "client": payer,
        "provider": payee,
        "price_per_hour": lease.price_per_hour,
        "deposit": lease.deposit,
    }
    if signed.get("kind") == "authorization":
        return lambda: client.open_lease_authorized(
            **common,
            max_price_per_hour=signed["max_price_per_hour"],
            max_deposit=signed["max_deposit"],
            expiry=signed["expiry"],
            signature=signed["signature"],
        )
    if signed.get("kind") == "acceptance":
        deadline, signature = signed["deadline"], signed["signature"]
    else:
        key = server_key(payer)
        if key is None:
            return None
        accepted = _acceptance(
            order_id=lease.order_id,
            payee=payee,
            price_per_hour=lease.price_per_hour,
            duration_hours=lease.duration_hours,
            deadline=int(time.time()) + TERMS_SECONDS,
        )
        # signed for the chain it goes to
        signature = terms.sign(accepted, key=key, chain_id=client.chain_id, contract=client.escrow.address)
        deadline = accepted.deadline
    return lambda: client.open_lease(
        **common, duration_hours=lease.duration_hours, deadline=deadline, signature=signature
    )
