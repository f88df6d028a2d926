"""The escrow: ``escrow()`` is the backend ``ESCROW_BACKEND`` names (see ``leases.escrow.base``)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from leases.escrow.base import Escrow
from leases.escrow.chain import ChainEscrow
from leases.escrow.ledger import LedgerEscrow

_BACKENDS: dict[str, Escrow] = {"ledger": LedgerEscrow(), "chain": ChainEscrow()}


def escrow() -> Escrow:
    """The configured escrow (read from the settings at each call: tests switch it)."""
    try:
        return _BACKENDS[settings.ESCROW_BACKEND]
    except KeyError:
        raise ImproperlyConfigured(f"ESCROW_BACKEND is {settings.ESCROW_BACKEND!r}: use ledger or chain") from None


__all__ = ["Escrow", "escrow"]
