"""Writes for trust, one module a concept:

- ``checks``: proof-of-GPU checks: issue, start, commit, open; spot checks; the verdict.
- ``consequences``: what a failed check costs: its leases closed, their clients compensated.
- ``reputation``: providers' scores, stored when they change.
- ``attestation``: hardware attestation of a provider's GPUs.

The names below are what the rest of the code calls.
"""

from trust.services.attestation import JWKS_CACHE_KEY, attestation_issue, attestation_submit
from trust.services.checks import (
    check_commit,
    check_issue,
    check_open,
    check_start,
    checks_due,
    checks_expire,
    measured_int8_tops,
    spot_checks_issue,
)
from trust.services.consequences import compensations_due, compensations_pay, consequences_apply, consequences_due
from trust.services.reputation import reputations_update

__all__ = [
    "JWKS_CACHE_KEY",
    "attestation_issue",
    "attestation_submit",
    "check_commit",
    "check_issue",
    "check_open",
    "check_start",
    "checks_due",
    "checks_expire",
    "compensations_due",
    "compensations_pay",
    "consequences_apply",
    "consequences_due",
    "measured_int8_tops",
    "reputations_update",
    "spot_checks_issue",
]
