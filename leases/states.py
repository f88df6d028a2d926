"""The lease's states: the transitions allowed, the event each one emits, and the named groups of
states the rest of the code asks about.

``lease_transition`` is the only code that writes ``Lease.status`` (``tests/leases/test_states.py``
checks the whole code base for any other). It checks the table, saves the new state with the
fields that change with it, and emits the transition's event: webhook deliveries written in the
same transaction, pushes to the pages and to the provider's agent sent after it commits.

``docs/ARCHITECTURE.md`` draws this table (``python manage.py lease_states``).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from core.errors import Conflict
from leases.events import lease_changed, lease_event
from leases.models import Lease

S = Lease.Status


@dataclass(frozen=True)
class Transition:
    source: str | None  # None: the lease is created in ``target``
    target: str
    event: str | None  # the webhook (and, for the agent's events, push) it emits; None: pages refresh
    when: str  # what makes it happen, in a few words (the diagram's label)


_BEFORE_FUNDS_RUN_OUT = (S.FUNDED, S.DEPLOYING, S.RUNNING)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(None, S.FUNDING, None, "awarded, escrow on chain"),
    Transition(None, S.FUNDED, "lease.funded", "awarded, escrow in the ledger"),
    Transition(S.FUNDING, S.FUNDED, "lease.funded", "the chain took the deposit"),
    Transition(S.FUNDING, S.CLOSED, "lease.closed", "the chain refused the deposit"),
    Transition(S.FUNDED, S.DEPLOYING, None, "agent reports deploying"),
    Transition(S.FUNDED, S.RUNNING, "lease.running", "agent reports running"),
    Transition(S.DEPLOYING, S.RUNNING, "lease.running", "agent reports running"),
    *(
        Transition(source, S.INSUFFICIENT_FUNDS, "lease.insufficient_funds", "paid time ran out")
        for source in _BEFORE_FUNDS_RUN_OUT
    ),
    Transition(S.INSUFFICIENT_FUNDS, S.DEPLOYING, "lease.resumed", "topped up"),
    # a close on chain waits for the escrow; in the ledger it is booked at once
    *(
        Transition(source, S.CLOSING, None, "closed, escrow on chain")
        for source in (*_BEFORE_FUNDS_RUN_OUT, S.INSUFFICIENT_FUNDS)
    ),
    *(
        Transition(source, S.CLOSED, "lease.closed", "closed, escrow in the ledger")
        for source in (*_BEFORE_FUNDS_RUN_OUT, S.INSUFFICIENT_FUNDS)
    ),
    Transition(S.CLOSING, S.CLOSED, "lease.closed", "the chain paid and refunded"),
)
# ``failed`` is what an agent reports: the lease is closed at once (``closing`` on chain) with the
# failure as its reason, so no lease rests in it.

_TABLE = {(t.source, t.target): t for t in TRANSITIONS}

# --- the named groups --------------------------------------------------------------------------
OPEN = frozenset(s for s in S.values if s != S.CLOSED)
"""Not closed yet (closing included)."""
CLOSING_OR_CLOSED = frozenset({S.CLOSING, S.CLOSED})
"""Finished for the provider: nothing more accrues beyond what closing asked."""
RUNNABLE = frozenset(_BEFORE_FUNDS_RUN_OUT)
"""There is something for the provider to run, and its paid time runs out."""
TOP_UP = frozenset({*RUNNABLE, S.INSUFFICIENT_FUNDS})
"""A client may add to the deposit."""
AUTO_TOP_UP = frozenset({*TOP_UP, S.FUNDING})
"""A client may set the automatic top-up limit."""
SETTLING = frozenset({S.DEPLOYING, S.RUNNING, S.INSUFFICIENT_FUNDS})
"""The provider earns by its reported usage, settled each tick."""
ABANDONABLE = frozenset({S.FUNDED, *SETTLING})
"""Closed by the sweep when the provider's agent goes silent."""
USAGE = frozenset({*SETTLING, S.CLOSING, S.CLOSED})
"""Usage reports are taken for it."""

PROVIDER_REPORTS: dict[str, frozenset[str]] = {
    S.DEPLOYING: frozenset({S.FUNDED, S.DEPLOYING}),
    S.RUNNING: frozenset({S.FUNDED, S.DEPLOYING, S.RUNNING}),
    S.FAILED: frozenset({S.FUNDED, S.DEPLOYING, S.RUNNING}),
}
"""What the provider's agent may report, from which states (the same state again: new endpoints or
a new reason, no transition)."""


def diagram() -> str:
    """The table as a Mermaid state diagram: ``docs/ARCHITECTURE.md`` shows it, and a test keeps the
    two equal (``python manage.py lease_states`` prints it)."""
    lines = ["stateDiagram-v2"]
    for t in TRANSITIONS:
        lines.append(f"    {t.source or '[*]'} --> {t.target}: {t.when}" + (f" / {t.event}" if t.event else ""))
    lines.append("    closed --> [*]")
    return "\n".join(lines)


def transition_for(source: str | None, target: str) -> Transition | None:
    return _TABLE.get((source, target))


def lease_transition(
    lease: Lease, target: str, *, fields: Iterable[str] = (), events_before: Iterable[str] = ()
) -> Lease:
    """Move ``lease`` to ``target`` and emit the transition's event; a new lease (not saved yet) is
    created in ``target``.

    The caller holds the lease's row lock inside a transaction and has set the fields that change
    with the state; ``fields`` names them, and they are saved with it. ``events_before`` are events
    the same change emits before the transition's own (a top-up that resumes a lease is
    ``lease.topped_up``, then ``lease.resumed``). Raises Conflict (409) for a transition the table
    does not have.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a lease changes state inside the transaction that holds its lock")
    creating = lease._state.adding
    source = None if creating else lease.status
    edge = _TABLE.get((source, target))
    if edge is None:
        raise Conflict(f"Lease {lease.pk} is {source}; it cannot become {target}.", code="illegal_transition")
    lease.status = target
    if creating:
        lease.save(force_insert=True)
    else:
        lease.save(update_fields=sorted({"status", *fields}))
    for event in events_before:
        lease_event(lease, event)
    if edge.event is None:
        lease_changed(lease)
    else:
        lease_event(lease, edge.event)
    return lease
