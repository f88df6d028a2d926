"""The lease state machine: every transition in the table emits its event (webhooks to both sides,
pushes to the pages and, for what it acts on, to the provider's agent) once its transaction
commits; anything not in the table is refused and writes nothing; and no code but
``leases.states.lease_transition`` writes ``Lease.status``."""

import ast
import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction
from django.utils import timezone

from core import realtime
from core.errors import Conflict
from leases import events, states
from leases.models import Lease
from tests import factories as f
from tests.factories import USD
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
S = Lease.Status


@pytest.fixture
def pushes(settings):  # type: ignore[no-untyped-def]
    """The embedded in-memory channel layer, with a way to read what a group was sent."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.REALTIME_RELAY_URL = ""
    channel_layers.backends.clear()
    layer = get_channel_layer()
    listening: dict[str, str] = {}

    def listen(group: str) -> None:
        listening[group] = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, listening[group])

    async def drain(channel: str) -> list[str]:
        types = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=0.05)
            except TimeoutError:  # nothing more was sent
                return types
            types.append(message["payload"]["type"])

    def received(group: str) -> list[str]:
        return async_to_sync(drain)(listening[group])

    yield listen, received
    channel_layers.backends.clear()


def unsaved_lease(client, provider) -> Lease:  # type: ignore[no-untyped-def]
    """A lease for an order the provider bid on, built but not saved (no money moves)."""
    order = f.order(client)
    bid = f.bid(provider, order, 2 * USD)
    now = timezone.now()
    return Lease(
        order=order,
        bid=bid,
        client=client,
        provider=provider,
        gpu_model_id=bid.gpu_model_id,
        gpu_count=1,
        cpu_cores=8,
        memory_gib=64,
        storage_gib=100,
        price_per_hour=2 * USD,
        bid_price_per_hour=2 * USD,
        duration_hours=2,
        deposit=4 * USD,
        started_at=now,
        ends_at=now + timedelta(hours=2),
    )


def lease_in(status: str, client, provider) -> Lease:  # type: ignore[no-untyped-def]
    """A lease put straight into ``status`` (a test may; the code may not)."""
    lease = unsaved_lease(client, provider)
    lease.status = status
    lease.save()
    return lease


def subscribed(receiver: Receiver):  # type: ignore[no-untyped-def]
    client, provider = f.client_user(), f.provider()
    for user, scope in ((client, f.CLIENT), (provider.user, f.PROVIDER)):
        response = f.api(user, scope).post(
            "/api/v1/webhooks/", {"url": receiver.url, "events": ["lease.*"]}, format="json"
        )
        assert response.status_code == 201
    return client, provider


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "edge", states.TRANSITIONS, ids=[f"{t.source or 'new'}->{t.target}" for t in states.TRANSITIONS]
)
def test_every_transition_emits_its_event_after_commit(edge: states.Transition, receiver: Receiver, pushes) -> None:  # type: ignore[no-untyped-def]
    listen, received = pushes
    client, provider = subscribed(receiver)
    lease = unsaved_lease(client, provider)
    if edge.source is not None:
        lease.status = edge.source
        lease.save()
    listen(realtime.provider_group(provider.pk))
    receiver.received.clear()
    with transaction.atomic():
        if lease.pk:
            lease = Lease.objects.select_for_update().get(pk=lease.pk)
        states.lease_transition(lease, edge.target)
        assert received(realtime.provider_group(provider.pk)) == []  # nothing leaves before the commit
        assert receiver.received == []
    lease.refresh_from_db()
    assert lease.status == edge.target
    expected = [edge.event] * 2 if edge.event else []  # the client's endpoint and the provider's
    assert [e["type"] for e in receiver.events()] == expected
    assert {e["data"]["status"] for e in receiver.events()} <= {edge.target}
    agent_hears = [edge.event] if edge.event in events.AGENT_EVENTS else []
    assert received(realtime.provider_group(provider.pk)) == agent_hears


@pytest.mark.django_db(transaction=True)
def test_the_pages_hear_every_transition(receiver: Receiver, pushes) -> None:  # type: ignore[no-untyped-def]
    listen, received = pushes
    client, provider = subscribed(receiver)
    lease = lease_in(S.FUNDED, client, provider)
    listen(realtime.lease_group(lease.pk))
    for target in (S.DEPLOYING, S.RUNNING, S.INSUFFICIENT_FUNDS, S.DEPLOYING, S.CLOSING, S.CLOSED):
        with transaction.atomic():
            states.lease_transition(Lease.objects.select_for_update().get(pk=lease.pk), target)
        assert received(realtime.lease_group(lease.pk)) == ["lease.changed"], target


@pytest.mark.django_db(transaction=True)
def test_a_transition_rolled_back_emits_nothing(receiver: Receiver, pushes) -> None:  # type: ignore[no-untyped-def]
    listen, received = pushes
    client, provider = subscribed(receiver)
    lease = lease_in(S.RUNNING, client, provider)
    listen(realtime.provider_group(provider.pk))
    receiver.received.clear()
    with pytest.raises(RuntimeError, match="changed its mind"), transaction.atomic():
        states.lease_transition(Lease.objects.select_for_update().get(pk=lease.pk), S.CLOSED)
        raise RuntimeError("the caller changed its mind")
    assert Lease.objects.get(pk=lease.pk).status == S.RUNNING
    assert receiver.received == [] and received(realtime.provider_group(provider.pk)) == []


@pytest.mark.django_db
def test_a_transition_not_in_the_table_is_refused_and_writes_nothing() -> None:
    client, provider = f.client_user(), f.provider()
    lease = lease_in(S.FUNDED, client, provider)
    refused = 0
    for source in S.values:
        for target in S.values:
            if states.transition_for(source, target) is not None:
                continue
            Lease.objects.filter(pk=lease.pk).update(status=source)
            with transaction.atomic():
                locked = Lease.objects.select_for_update().get(pk=lease.pk)
                with pytest.raises(Conflict) as refusal:
                    states.lease_transition(locked, target, fields=["close_reason"])
                assert refusal.value.code == "illegal_transition"
            assert Lease.objects.get(pk=lease.pk).status == source
            refused += 1
    assert refused == len(S.values) ** 2 - sum(t.source is not None for t in states.TRANSITIONS)


@pytest.mark.django_db(transaction=True)
def test_a_transition_outside_a_transaction_is_refused() -> None:
    lease = lease_in(S.RUNNING, f.client_user(), f.provider())
    with pytest.raises(RuntimeError, match="inside the transaction"):
        states.lease_transition(lease, S.CLOSED)  # no lock can be held outside a transaction


def test_the_named_groups_are_states_the_table_knows() -> None:
    known = {t.target for t in states.TRANSITIONS} | {t.source for t in states.TRANSITIONS if t.source}
    groups = [states.OPEN, states.RUNNABLE, states.TOP_UP, states.SETTLING, states.ABANDONABLE, states.USAGE]
    for group in groups:
        assert group and group <= set(S.values)
    # every state a lease can rest in is reachable from its creation
    reachable, frontier = set(), {None}
    while frontier:
        reachable |= frontier
        frontier = {t.target for t in states.TRANSITIONS if t.source in frontier} - reachable
    assert reachable - {None} == known
    assert S.FAILED not in known  # reported by an agent, never rested in: the lease closes at once


# --- no other code writes Lease.status ----------------------------------------------------------
# the server's apps (the agent and the protocol import no Django, a layer contract: they write no rows)
APPS = ["config", "core", "notifications", "chain", "providers", "leases", "trust", "marketplace", "payments"]
WRITER = ROOT / "leases" / "states.py"
RAW_SQL = re.compile(r"update\s+\W?leases_lease\W?\s+set\b[^;]*\bstatus\b", re.IGNORECASE)
QUERYSET_WRITES = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _other_models_status(value: ast.AST) -> bool:
    """``SomeModel.Status.X`` (or a choice between two) for a model that is not the lease."""
    if isinstance(value, ast.IfExp):
        return _other_models_status(value.body) and _other_models_status(value.orelse)
    return (
        isinstance(value, ast.Attribute)
        and isinstance(value.value, ast.Attribute)
        and value.value.attr == "Status"
        and isinstance(value.value.value, ast.Name)
        and value.value.value.id != "Lease"
    )


def _mentions_lease_status(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "Status" and isinstance(n.value, ast.Name) and n.value.id == "Lease"
        for n in ast.walk(node)
    )


def status_writes(source: str) -> list[int]:
    """Lines of ``source`` that may write a lease's status: any ``x.status = ...`` but another model's
    ``Status`` member, ``setattr(x, "status", ...)``, a queryset write naming ``status`` on ``Lease``
    or with a ``Lease.Status`` value, ``Lease(status=...)``, and raw SQL setting it."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                pairs = (
                    zip(target.elts, node.value.elts, strict=False)
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                    else [(element, None) for element in target.elts]
                    if isinstance(target, ast.Tuple)
                    else [(target, node.value)]
                )
                for element, value in pairs:
                    other = value is not None and _other_models_status(value)
                    if isinstance(element, ast.Attribute) and element.attr == "status" and not other:
                        lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "setattr" and ast.unparse(node.args[1:2]) == "'status'":
                lines.append(node.lineno)
            named_status = any(k.arg == "status" for k in node.keywords) or any(
                isinstance(a, ast.List | ast.Tuple)
                and any(isinstance(e, ast.Constant) and e.value == "status" for e in a.elts)
                for a in node.args
            )
            if not named_status:
                continue
            is_write = isinstance(func, ast.Attribute) and func.attr in QUERYSET_WRITES
            on_lease = _root_name(func) == "Lease" or (isinstance(func, ast.Name) and func.id == "Lease")
            lease_value = any(k.arg == "status" and _mentions_lease_status(k.value) for k in node.keywords)
            if (is_write and (on_lease or lease_value)) or (isinstance(func, ast.Name) and func.id == "Lease"):
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and RAW_SQL.search(node.value):
            lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize(
    "snippet",
    [
        "lease.status = Lease.Status.CLOSED",
        "lease.status = status",
        "lease.status = Lease.Status.CLOSED if done else Tx.Status.FAILED",
        "self.lease.status = 'running'",
        "lease.status, lease.closed_at = Lease.Status.CLOSED, now",
        "setattr(lease, 'status', 'closed')",
        "Lease.objects.filter(pk=1).update(status='closed')",
        "Lease.objects.select_for_update().filter(pk=1).update(status=x)",
        "qs.update(status=Lease.Status.RUNNING)",
        "Lease.objects.create(order=o, status=Lease.Status.RUNNING)",
        "Lease(order=o, status='running')",
        "Lease.objects.bulk_update(leases, ['status'])",
        "cursor.execute('UPDATE leases_lease SET status = %s WHERE id = %s', ['closed', 1])",
    ],
)
def test_the_check_finds_each_way_of_writing_a_status(snippet: str) -> None:
    assert status_writes(snippet) == [1]


@pytest.mark.parametrize(
    "snippet",
    [
        "top_up.status = LeaseTopUp.Status.CONFIRMED",
        "check.status, check.detail = GpuCheck.Status.FAILED, 'x'",
        "Bid.objects.filter(pk=1).update(status=Bid.Status.WON)",
        "Lease.objects.filter(status=Lease.Status.RUNNING)",
        "lease.status == Lease.Status.CLOSED",
        "tx.status = Tx.Status.CONFIRMED if ok else Tx.Status.FAILED",
    ],
)
def test_the_check_lets_other_models_and_reads_be(snippet: str) -> None:
    assert status_writes(snippet) == []


def test_no_code_but_the_state_machine_writes_a_lease_status() -> None:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts or path == WRITER:
                continue
            found += [f"{path.relative_to(ROOT)}:{line}" for line in status_writes(path.read_text())]
    assert found == [], "only leases.states.lease_transition writes Lease.status"
    assert status_writes(WRITER.read_text())  # and the check does see the one writer
