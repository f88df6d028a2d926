"""One escrow interface, two backends: the rest of the code asks ``leases.escrow.escrow()``, never
which backend is configured."""

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from leases.escrow import escrow
from leases.escrow.base import Escrow
from leases.escrow.chain import ChainEscrow
from leases.escrow.ledger import LedgerEscrow
from leases.models import Lease

ROOT = Path(__file__).resolve().parents[2]
APPS = ["core", "notifications", "chain", "providers", "leases", "trust", "marketplace", "payments"]


def test_the_setting_picks_the_backend(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ESCROW_BACKEND = "ledger"
    assert isinstance(escrow(), LedgerEscrow) and escrow().opening_status == Lease.Status.FUNDED
    settings.ESCROW_BACKEND = "chain"
    assert isinstance(escrow(), ChainEscrow) and escrow().opening_status == Lease.Status.FUNDING
    settings.ESCROW_BACKEND = "paper"
    with pytest.raises(ImproperlyConfigured, match="ledger or chain"):
        escrow()


def test_both_backends_implement_the_whole_interface() -> None:
    for backend in (LedgerEscrow, ChainEscrow):
        assert not getattr(backend, "__abstractmethods__", None), backend
        assert issubclass(backend, Escrow)


def test_no_module_but_the_backends_reads_the_escrow_setting() -> None:
    backends = ROOT / "leases" / "escrow"
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if backends not in path.parents and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bESCROW_BACKEND\b", line) and not line.lstrip().startswith(("#", '"', "'"))
    ]
    assert readers == []
