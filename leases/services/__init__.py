"""Writes for leases, one module a concept:

- ``lifecycle``: open when an order is awarded; close by the client, the provider or the system.
- ``top_ups``: adding to the deposit, by hand or automatically.
- ``reports``: what the provider's agent reports: state, logs, signed usage.
- ``shells``: the client's shell sessions into its running lease (who, when, how long).
- ``settlement``: the tick that pays providers for reported usage.
- ``sweeps``: low-funds warnings, suspension when paid time runs out, closing after the grace
  period or when a provider goes silent.

The state machine is ``leases.states``, the escrow ``leases.escrow``, the bookings both escrow
backends make ``leases.books``. The names below are what the rest of the code calls.
"""

from leases.services.lifecycle import lease_close, lease_close_by, lease_close_for_cause, lease_open
from leases.services.reports import (
    MAX_LOG_BYTES,
    USAGE_BATCH_MAX,
    UsageOutcome,
    lease_for_provider,
    lease_logs_put,
    lease_logs_watch,
    lease_manifest,
    lease_report_status,
    usage_report_accept,
    usage_reports_accept,
)
from leases.services.settlement import leases_settle, settlements_due
from leases.services.shells import shell_end, shell_may_continue, shell_open
from leases.services.sweeps import (
    leases_close_abandoned,
    leases_close_finished,
    leases_suspend_exhausted,
    leases_warn_low_funds,
)
from leases.services.top_ups import lease_auto_top_up_set, lease_top_up

__all__ = [
    "MAX_LOG_BYTES",
    "USAGE_BATCH_MAX",
    "UsageOutcome",
    "lease_auto_top_up_set",
    "lease_close",
    "lease_close_by",
    "lease_close_for_cause",
    "lease_for_provider",
    "lease_logs_put",
    "lease_logs_watch",
    "lease_manifest",
    "lease_open",
    "lease_report_status",
    "lease_top_up",
    "leases_close_abandoned",
    "leases_close_finished",
    "leases_settle",
    "leases_suspend_exhausted",
    "leases_warn_low_funds",
    "settlements_due",
    "shell_end",
    "shell_may_continue",
    "shell_open",
    "usage_report_accept",
    "usage_reports_accept",
]
