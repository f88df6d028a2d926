"""Linking wallets with Sign-In with Ethereum (EIP-4361, the ``siwe`` package).

1. The user asks for a challenge for an address: we issue a SIWE message with a fresh nonce,
   our domain and an expiry, and remember it.
2. The user signs the message in its wallet and sends back the message and the signature.
3. We check that the message is the one we issued (same nonce, unused, not expired, same
   domain) and that the signature recovers to the message's address; then the address is linked.

Before a user's first wallet is linked, ``first_wallet_linking`` is sent: a receiver may refuse the
link by raising a domain error (the escrow does, while the custody account holds money for the user).

Signing in works the same way with a challenge issued to nobody: whoever signs it for an address
linked to an account is logged in to that account (``wallet_sign_in``). A challenge of one kind is
never accepted for the other.
"""

import re
import secrets
import warnings
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # siwe's grammar redefines ABNF core rules; abnf warns at import
    from siwe import SiweMessage
from web3 import Web3

from chain.models import SiweChallenge, Wallet
from core.errors import Conflict, NotFound, ValidationFailed
from core.models import User

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
STATEMENT = "Link this wallet to your GPU Market account."
SIGN_IN_STATEMENT = "Sign in to GPU Market with this wallet."
MAX_WALLETS = 10
first_wallet_linking = Signal()  # sent with user=; receivers raise a DomainError to refuse


def _address(value: str, field: str = "address") -> str:
    if not isinstance(value, str) or not ADDRESS.fullmatch(value):
        raise ValidationFailed("Invalid address.", fields={field: ["0x followed by 40 hexadecimal digits."]})
    return Web3.to_checksum_address(value)


def siwe_challenge(*, user: User | None, address: str, domain: str, uri: str, chain_id: int) -> SiweChallenge:
    """A message for ``address`` to sign: to link it to ``user``, or with no user, to sign in."""
    address = _address(address)
    now = timezone.now()
    nonce = secrets.token_hex(12)
    expires = now + timedelta(seconds=settings.SIWE_CHALLENGE_TTL_SECONDS)
    message = SiweMessage(
        scheme=None,
        domain=domain,
        address=address,
        statement=STATEMENT if user is not None else SIGN_IN_STATEMENT,
        uri=uri,
        version="1",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        expiration_time=expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    ).prepare_message()
    return SiweChallenge.objects.create(
        user=user, nonce=nonce, address=address, domain=domain, message=message, expires_at=expires
    )


def _redeem(*, user: User | None, message: str, signature: str, nonce: str | None = None) -> SiweChallenge:
    """The challenge ``message`` answers, issued to ``user`` (to nobody: a sign-in) and, where
    given, with this ``nonce``; checked and marked used, within the caller's transaction."""
    if not isinstance(message, str) or len(message) > 4000:
        raise ValidationFailed("Invalid SIWE message.", fields={"message": ["The message we issued, as signed."]})
    if not isinstance(signature, str) or not SIGNATURE.fullmatch(signature):
        raise ValidationFailed("Invalid signature.", fields={"signature": ["0x followed by 130 hexadecimal digits."]})
    try:
        parsed = SiweMessage.from_message(message=message)
    except Exception as exc:
        raise ValidationFailed(
            "Not a SIWE message.", code="siwe_malformed", fields={"message": [str(exc)[:200]]}
        ) from exc
    issued = SiweChallenge.objects.select_for_update().filter(nonce=parsed.nonce)
    issued = issued.filter(user=user) if user is not None else issued.filter(user__isnull=True)
    challenge = issued.first() if nonce is None or parsed.nonce == nonce else None
    if challenge is None:
        raise NotFound("No such challenge: ask for a new one.", code="siwe_unknown_nonce")
    if challenge.used_at is not None:
        raise Conflict("This challenge was already used: ask for a new one.", code="siwe_used")
    if challenge.message != message:
        raise ValidationFailed("The message is not the one we issued.", code="siwe_altered")
    if timezone.now() >= challenge.expires_at:
        raise ValidationFailed("The challenge expired: ask for a new one.", code="siwe_expired")
    try:
        parsed.verify(signature, domain=challenge.domain, nonce=challenge.nonce)
    except Exception as exc:
        raise ValidationFailed(
            "The signature does not prove this address.",
            code="invalid_signature",
            fields={"signature": [type(exc).__name__]},
        ) from exc
    challenge.used_at = timezone.now()
    challenge.save(update_fields=["used_at"])
    return challenge


def wallet_link(*, user: User, message: str, signature: str) -> Wallet:
    """Verify a signed challenge and link its address to ``user``."""
    with transaction.atomic():
        challenge = _redeem(user=user, message=message, signature=signature)
        existing = Wallet.objects.filter(address=challenge.address).first()
        if existing is not None:
            if existing.user_id == user.pk:
                return existing
            raise Conflict("This address is linked to another account.", code="wallet_taken")
        linked = Wallet.objects.filter(user=user).count()
        if linked >= MAX_WALLETS:
            raise Conflict(f"At most {MAX_WALLETS} wallets per account.", code="too_many_wallets")
        if linked == 0:
            first_wallet_linking.send(sender=Wallet, user=user)
        try:
            with transaction.atomic():
                return Wallet.objects.create(user=user, address=challenge.address)
        except IntegrityError as exc:
            raise Conflict("This address is linked to another account.", code="wallet_taken") from exc


def wallet_sign_in(*, message: str, signature: str, nonce: str) -> User:
    """The account whose linked wallet signed a sign-in challenge. ``nonce`` is the challenge's
    that this browser asked for (kept in its session): a challenge issued to another browser is
    refused, so nobody can log a victim in to the signer's account. The challenge is spent even
    when no account has the address, so a signature is never good twice."""
    with transaction.atomic():
        challenge = _redeem(user=None, message=message, signature=signature, nonce=nonce)
    wallet = Wallet.objects.select_related("user").filter(address=challenge.address).first()
    if wallet is None or not wallet.user.is_active:
        raise NotFound(
            "No account has this wallet linked. Log in with your password, then link the wallet on your account page.",
            code="wallet_not_linked",
        )
    return wallet.user


def challenges_purge(*, now: datetime | None = None) -> int:
    """Forget challenges that expired over an hour ago, used or not: none can be answered any
    more, and anyone may ask for sign-in ones. Periodic (``chain.tasks.purge_challenges``)."""
    now = now or timezone.now()
    deleted, _ = SiweChallenge.objects.filter(expires_at__lt=now - timedelta(hours=1)).delete()
    return deleted


def wallet_unlink(*, user: User, address: str) -> None:
    deleted, _ = Wallet.objects.filter(user=user, address=_address(address)).delete()
    if not deleted:
        raise NotFound("No such wallet.")
