"""The escrow contract as the escrow (``ESCROW_BACKEND=chain``): ``ChainEscrow``, and the steps its
tasks and the chain sync take.

- Funding: a ``funding`` lease is opened on chain with the client's and the provider's linked
  wallets. Confirmed: the lease is ``funded``, with the platform fee the contract fixed for it.
  Refused by the contract (no allowance, not enough balance on chain, no wallet): the lease is
  closed and its reserved deposit goes back to the client's balance in the ledger. Chain
  unreachable: the task retries; the lease stays ``funding``.
- Closing: a ``closing`` lease is closed on chain with the amount the marketplace computed; the
  contract caps it, and the ledger books what the chain actually paid and refunded.
- Top-ups: the amount is reserved from the client's ledger balance into the lease's escrow
  account, then sent to the contract's ``top_up``; confirmed, the lease's deposit grows (and a
  lease waiting in its grace period resumes); refused, the amount goes back to the balance.
- Deposits and withdrawals the indexer recorded for linked wallets move clients' balances
  (``ledger.deposits``).
- Custody: a client without a linked wallet (one who pays by card) is funded through the
  marketplace's custody account. Its leases are opened with the custody address as their client,
  so refunds come back to it; and ``custody_sync`` (``ledger.custody``) keeps the custody
  account's free balance in the escrow equal to what those clients are owed: their ledger
  balances plus the deposits and top-ups reserved for them and not yet in the contract. It
  deposits what is missing (before funding a lease, and on every chain sync) and withdraws what is
  no longer owed (a card refund or dispute).
  A client's first wallet cannot be linked while custody holds money for it (``leases.receivers``).

Every step is idempotent: a retried task finds the lease already moved on and does nothing.
"""

import logging
from datetime import datetime, timedelta

from celery import Task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from chain.adapter import EscrowClient, custody_address, escrow_client
from chain.evm import DEMO_CLIENT_ACCOUNT, DEMO_PROVIDER_ACCOUNT, embedded_account, embedded_key
from chain.indexer import index_events
from chain.models import ChainEvent, ChainTransaction, Wallet
from chain.transactions import ChainReverted, ChainUnavailable
from core import queueing
from core.errors import Conflict, ValidationFailed
from core.models import User
from core.money import format_usd
from leases.books import (
    compensate_from_stake,
    post_close,
    refund_to_client,
    reservation_for,
    settlement_mirror,
    settlements_book,
    top_up_confirm,
    top_up_fail,
    top_up_from_wallet,
)
from leases.escrow import signing, tasks
from leases.escrow.base import Escrow, Paid
from leases.escrow.signing import primary_wallet
from leases.models import Lease, LeaseTopUp
from leases.selectors import claimed_by, has_pending_top_up
from leases.states import lease_transition
from ledger import custody
from ledger.custody import custody_lock, walletless_balances
from ledger.deposits import chain_deposits_apply
from ledger.models import LedgerAccount
from providers.services import capacity_release

logger = logging.getLogger(__name__)
TOP_UP_LOCK_SECONDS = 600  # longer than sending one transaction may take


def lease_fund_on_chain(*, lease_id: int) -> Lease:
    lease = Lease.objects.select_related("provider").get(pk=lease_id)
    if lease.status != Lease.Status.FUNDING:
        return lease
    client = escrow_client()
    signed = lease.signed_terms or {}
    # the addresses the client signed for, where it signed; its wallet (or custody) otherwise
    client_wallet = signed.get("signer") or primary_wallet(lease.client_id) or client.custody_address
    provider_wallet = signed.get("payee") or primary_wallet(lease.provider.user_id)
    if client_wallet is None or provider_wallet is None:
        who = "client" if client_wallet is None else "provider"
        return _funding_failed(lease_id=lease.pk, reason=f"the {who} has no linked wallet")
    open_lease = signing.opener(client, lease, payer=client_wallet, payee=provider_wallet)
    if open_lease is None:
        return _funding_failed(lease_id=lease.pk, reason="the client signed no terms for the escrow")

    try:
        if client_wallet == client.custody_address:  # funded for exactly its deposit, and no more
            record = custody.custody_lock_into_lease(
                amount=lease.deposit, reference=f"lease:{lease.pk}", reserved=reserved_in_custody, send=open_lease
            )
        else:
            record = open_lease()
        if record.status != ChainTransaction.Status.CONFIRMED:
            return _funding_failed(lease_id=lease.pk, reason="the escrow transaction reverted")
        tx_hash = record.tx_hash
        on_chain = client.lease(lease.pk)
    except ChainReverted as exc:
        on_chain = client.lease(lease.pk)
        ours = (on_chain.client, on_chain.provider, on_chain.price_per_hour) == (
            client_wallet,
            provider_wallet,
            lease.price_per_hour,
        )
        if not (on_chain.open and ours):
            return _funding_failed(lease_id=lease.pk, reason=exc.message)
        tx_hash = _opening_tx_hash(lease.pk)  # an earlier attempt got through: it is our lease
    with transaction.atomic():
        lease = Lease.objects.select_for_update().get(pk=lease_id)
        if lease.status == Lease.Status.FUNDING:
            lease.open_tx_hash = tx_hash
            lease.platform_fee_bps = on_chain.fee_bps  # the contract fixed it: the books follow
            lease.escrow_payer, lease.escrow_payee = on_chain.client, on_chain.provider  # the terms, as opened
            lease.held_in_custody = on_chain.client == client.custody_address
            lease_transition(
                lease,
                Lease.Status.FUNDED,
                fields=["open_tx_hash", "platform_fee_bps", "escrow_payer", "escrow_payee", "held_in_custody"],
            )
    return lease


def _opening_tx_hash(lease_id: int) -> str:
    """The transaction that opened a lease, from our records or from the indexed events."""
    sent = (
        ChainTransaction.objects.filter(
            reference=f"lease:{lease_id}", kind="open_lease", status=ChainTransaction.Status.CONFIRMED
        )
        .values_list("tx_hash", flat=True)
        .first()
    )
    if sent:
        return sent
    index_events(client=escrow_client(), confirmations=0)
    event = ChainEvent.objects.filter(name="LeaseOpened", args__lease_id=lease_id).first()
    return event.tx_hash if event else ""


def _funding_failed(*, lease_id: int, reason: str) -> Lease:
    with transaction.atomic():
        lease = Lease.objects.select_for_update().select_related("provider").get(pk=lease_id)
        if lease.status != Lease.Status.FUNDING:
            return lease
        capacity_release(reservation=reservation_for(lease))
        refund_to_client(
            lease=lease,
            amount=lease.deposit,
            key=f"lease:{lease.pk}:unfunded",
            memo="deposit returned, the escrow did not take it",
        )
        lease.closed_at = timezone.now()
        lease.closed_by = Lease.ClosedBy.SYSTEM
        lease.close_reason = f"the escrow did not take the deposit: {reason}"[:200]
        lease.refunded_to_client = lease.deposit
        lease_transition(
            lease, Lease.Status.CLOSED, fields=["closed_at", "closed_by", "close_reason", "refunded_to_client"]
        )
    logger.warning("lease %s not funded: %s", lease_id, reason)
    return lease


def top_up_on_chain(*, top_up_id: int) -> LeaseTopUp:
    """Send a pending top-up to the escrow (once: a lock and the recorded transaction keep a retried
    task or the sync from sending it twice), then confirm it or give the amount back."""
    top_up = LeaseTopUp.objects.get(pk=top_up_id)
    if top_up.status != LeaseTopUp.Status.PENDING:
        return top_up
    lock = f"leases:top-up:{top_up.pk}:sending"
    if not cache.add(lock, 1, timeout=TOP_UP_LOCK_SECONDS):
        raise ChainUnavailable(f"top-up {top_up.pk} is being sent by another worker")
    try:
        client = escrow_client()
        reference = f"top-up:{top_up.pk}"
        record = (
            ChainTransaction.objects.filter(chain_id=client.chain_id, kind="top_up", reference=reference)
            .exclude(status=ChainTransaction.Status.REPLACED)
            .order_by("-id")
            .first()
        )
        if record is None:
            try:
                if primary_wallet(top_up.lease.client_id) is None:  # from custody: exactly this top-up
                    record = custody.custody_lock_into_lease(
                        amount=top_up.amount,
                        reference=reference,
                        reserved=reserved_in_custody,
                        send=lambda: client.top_up(lease_id=top_up.lease_id, amount=top_up.amount, reference=reference),
                    )
                else:
                    record = client.top_up(lease_id=top_up.lease_id, amount=top_up.amount, reference=reference)
            except ChainReverted as exc:
                return top_up_fail(top_up_id=top_up.pk, reason=exc.message)
        try:
            topped_up = client.topped_up_in(record.tx_hash)
        except ChainUnavailable as exc:
            raise ChainUnavailable(f"top-up {top_up.pk}: {exc}") from exc
    finally:
        cache.delete(lock)
    if topped_up is None:
        return top_up_fail(top_up_id=top_up.pk, reason="the escrow transaction reverted")
    with transaction.atomic():
        lease = Lease.objects.select_for_update().select_related("provider").get(pk=top_up.lease_id)
        top_up = LeaseTopUp.objects.select_for_update().get(pk=top_up.pk)
        if top_up.status == LeaseTopUp.Status.PENDING:
            top_up_confirm(top_up=top_up, lease=lease, tx_hash=record.tx_hash)
    return top_up


def leases_settle_on_chain(*, due: dict[int, int], batch_size: int) -> int:
    """Send ``due`` (lease id → amount) in batched ``settle`` calls and book what the chain paid."""
    client = escrow_client()
    paid = 0
    ids = sorted(due)
    for start in range(0, len(ids), batch_size):
        batch = {lease_id: due[lease_id] for lease_id in ids[start : start + batch_size]}
        try:
            record = client.settle(amounts=batch)
        except (ChainUnavailable, ChainReverted) as exc:  # the next tick tries again from the ledger's view
            logger.warning("settling %d leases failed: %s", len(batch), exc)
            continue
        if record.status != ChainTransaction.Status.CONFIRMED:
            logger.warning("settle transaction %s did not confirm", record.tx_hash)
            continue
        paid += settlements_book(
            [
                (
                    settled.lease_id,
                    settled.amount,
                    f"chain:{client.chain_id}:{settled.tx_hash}:{settled.log_index}",
                    f"Settled on chain, {settled.tx_hash}",
                )
                for settled in client.settled_in(record.tx_hash)
            ]
        )
    return paid


def chain_settlements_catch_up() -> bool:
    """Book every settlement the chain made that the books do not know yet; False (and nothing
    booked) while the chain does not answer."""
    try:
        index_events(client=escrow_client(), confirmations=settings.CHAIN_CONFIRMATIONS)
    except ChainUnavailable as exc:
        logger.warning("settlement waits for the chain: %s", exc)
        return False
    chain_settlements_apply()
    return True


def _unapplied(name: str) -> QuerySet[ChainEvent]:
    """Indexed events of one kind not applied yet, in the chain's order."""
    return ChainEvent.objects.filter(applied_at__isnull=True, name=name).order_by("block_number", "log_index")


def _applied(event: ChainEvent) -> None:
    """Mark ``event`` applied, inside the transaction that booked it."""
    ChainEvent.objects.filter(pk=event.pk).update(applied_at=timezone.now())


def chain_settlements_apply(*, limit: int = 1000) -> int:
    """Book indexed ``Settled`` events the tick did not (its receipt was lost). Settlements made by
    closing a lease are booked with the close (``LeaseClosed``), so they are left alone here."""
    applied = 0
    closing_txs = ChainEvent.objects.filter(name="LeaseClosed").values("tx_hash")
    pending = _unapplied("Settled").exclude(tx_hash__in=closing_txs)[:limit]
    for event in pending:
        lease_id = int(event.args["lease_id"])
        with transaction.atomic():  # booked and marked applied together, as deposits are
            if Lease.objects.filter(pk=lease_id).exists():
                applied += settlement_mirror(
                    lease_id=lease_id,
                    amount=int(event.args["amount"]),
                    key=f"chain:{event.chain_id}:{event.tx_hash}:{event.log_index}",
                    memo=f"Settled on chain, {event.tx_hash}",
                )
            _applied(event)
    return applied


def chain_top_ups_apply(client: EscrowClient, *, limit: int = 1000) -> int:
    """Book the top-ups a client sent to the contract from its own wallet (``top_up`` is open to the
    lease's client): the amount moves from its balance to the lease, which runs longer, as a top-up
    through the marketplace would. The operator's own top-ups are booked by their task (their
    transaction's sender says which is which). Returns how many were booked."""
    booked = 0
    for event in _unapplied("LeaseToppedUp")[:limit]:
        lease_id = int(event.args["lease_id"])
        ours = client.sender_of(event.tx_hash) == client.operator.address
        with transaction.atomic():
            lease = Lease.objects.select_for_update().select_related("provider").filter(pk=lease_id).first()
            if lease is not None and not ours:
                if lease.status == Lease.Status.FUNDING:
                    continue  # its funding task books the opening first
                top_up_from_wallet(lease=lease, amount=int(event.args["amount"]), tx_hash=event.tx_hash)
                booked += 1
            _applied(event)
    return booked


def chain_closes_apply(*, limit: int = 1000) -> int:
    """Book every lease the chain closed that the books have not: closed by its client or its
    provider calling the contract directly, or by our own close whose receipt was lost. The books
    follow what the chain paid and refunded, the lease is closed (and says by whom), and the event
    is marked applied in the same transaction. Returns how many leases were closed.

    A lease still being funded, or with a top-up on its way, waits for that task (the close's
    refund includes a top-up the chain took): the next sync books it."""
    closed = 0
    for event in _unapplied("LeaseClosed")[:limit]:
        lease_id = int(event.args["lease_id"])
        try:
            with transaction.atomic():
                lease = Lease.objects.select_for_update().select_related("provider").filter(pk=lease_id).first()
                if lease is not None and lease.status != Lease.Status.CLOSED:
                    if lease.status == Lease.Status.FUNDING or has_pending_top_up(lease):
                        continue
                    _book_close_on_chain(lease, event)
                    closed += 1
                _applied(event)
        except ValueError:  # the books and the chain disagree on the lease's money: reconcile() says so
            logger.exception("lease %s closed on chain in %s cannot be booked", lease_id, event.tx_hash)
    return closed


def _book_close_on_chain(lease: Lease, event: ChainEvent) -> Lease:
    closer = _closed_by(lease.pk, str(event.args["closed_by"]))
    # the operator's close is ours, asked for with its reason; anybody else's is said as it was
    if closer != Lease.ClosedBy.SYSTEM or lease.status != Lease.Status.CLOSING:
        lease.closed_by = closer
        who = {"client": "the client", "provider": "the provider"}.get(closer, "the marketplace")
        lease.close_reason = f"closed in the escrow contract by {who}"
    return post_close(
        lease=lease,
        paid=int(event.args["paid"]),
        refunded=int(event.args["refunded"]),
        now=timezone.now(),
        tx_hash=event.tx_hash,
    )


def _closed_by(lease_id: int, address: str) -> str:
    """Who sent a lease's close, from the parties the contract opened it with."""
    opened = (
        ChainEvent.objects.filter(name="LeaseOpened", args__lease_id=lease_id).values_list("args", flat=True).first()
    )
    if opened and address.lower() == str(opened["client"]).lower():
        return Lease.ClosedBy.CLIENT
    if opened and address.lower() == str(opened["provider"]).lower():
        return Lease.ClosedBy.PROVIDER
    return Lease.ClosedBy.SYSTEM


def _closed_elsewhere(client: EscrowClient, lease_id: int) -> Lease | None:
    """The lease as booked, if the chain has closed it already (by a party, or by an earlier try of
    ours); None while it is open there."""
    if client.lease(lease_id).open:
        return None
    index_events(client=client, confirmations=0)
    chain_settlements_apply()
    chain_top_ups_apply(client)
    chain_closes_apply()
    return Lease.objects.get(pk=lease_id)


def lease_close_on_chain(*, lease_id: int) -> Lease:
    lease = Lease.objects.get(pk=lease_id)
    if lease.status != Lease.Status.CLOSING:
        return lease
    client = escrow_client()
    # every settlement the chain made must be in the books before the close is booked on top
    index_events(client=client, confirmations=settings.CHAIN_CONFIRMATIONS)
    chain_settlements_apply()
    booked = _closed_elsewhere(client, lease.pk)
    if booked is not None:
        return booked
    try:
        record = client.close_lease(lease_id=lease.pk, final_amount=lease.close_requested_amount or 0)
    except ChainReverted:
        booked = _closed_elsewhere(client, lease.pk)  # closed on chain between the check and the call
        if booked is None:
            raise
        return booked
    closed = client.closed_in(record.tx_hash) if record.status == ChainTransaction.Status.CONFIRMED else None
    if closed is None:
        raise ChainReverted(f"closing lease {lease.pk} on chain did not confirm")
    with transaction.atomic():
        lease = Lease.objects.select_for_update().select_related("provider").get(pk=lease_id)
        if lease.status != Lease.Status.CLOSING:
            return lease
        return post_close(
            lease=lease, paid=closed.paid, refunded=closed.refunded, now=timezone.now(), tx_hash=closed.tx_hash
        )


def chain_sync(*, confirmations: int, limit: int = 100) -> int:
    """Index the escrow's events, apply deposits and withdrawals, and finish leases whose
    funding or closing task was lost. Returns how many deposits and withdrawals were applied."""
    client = escrow_client()
    index_events(client=client, confirmations=confirmations)
    applied = chain_deposits_apply()
    chain_settlements_apply()
    chain_top_ups_apply(client)
    chain_closes_apply()
    custody_sync()
    for lease_id in Lease.objects.filter(status=Lease.Status.FUNDING).values_list("pk", flat=True)[:limit]:
        lease_fund_on_chain(lease_id=lease_id)
    stale = timezone.now() - timedelta(seconds=60)  # younger ones are still with their task
    pending = LeaseTopUp.objects.filter(status=LeaseTopUp.Status.PENDING, created_at__lte=stale)
    for top_up_id in pending.values_list("pk", flat=True)[:limit]:
        try:
            top_up_on_chain(top_up_id=top_up_id)
        except ChainUnavailable as exc:
            logger.info("top-up %s still pending: %s", top_up_id, exc)
    for lease_id in Lease.objects.filter(status=Lease.Status.CLOSING).values_list("pk", flat=True)[:limit]:
        lease_close_on_chain(lease_id=lease_id)
    return applied


def reserved_in_custody() -> int:
    """What is reserved for the leases of clients without a linked wallet and not yet in the
    contract: the deposits of leases being funded and the pending top-ups (they are still in the
    custody account's free balance there)."""
    with_wallet = Wallet.objects.values("user_id")
    funding = Lease.objects.filter(status=Lease.Status.FUNDING).exclude(client__in=with_wallet)
    top_ups = LeaseTopUp.objects.filter(status=LeaseTopUp.Status.PENDING).exclude(lease__client__in=with_wallet)
    return (funding.aggregate(total=Sum("deposit"))["total"] or 0) + (
        top_ups.aggregate(total=Sum("amount"))["total"] or 0
    )


def custodial_obligations() -> int:
    """What the custody account must hold free in the escrow (``ledger.custody``)."""
    return walletless_balances() + reserved_in_custody()


def custody_sync(*, withdraw: bool = True) -> int:
    """Bring the custody account's free balance to ``custodial_obligations()`` (``ledger.custody``)."""
    return custody.custody_sync(reserved=reserved_in_custody, withdraw=withdraw)


def reconcile() -> list[str]:
    """Every difference between the ledger and the escrow contract, as sentences (empty: none).

    - A client's ledger balance equals its wallets' free balances in the escrow, less the
      deposits reserved for leases still waiting to be funded.
    - Each lease opened on chain holds the same amount in its ledger escrow account and in the
      contract, and a closed lease holds nothing in either.
    - A provider's ledger earnings equal what its wallets can claim plus what they claimed.
    - The platform's fees equal what its fee recipients (all it ever had) can claim plus what they
      claimed.
    - The custody account's free balance equals what clients without a wallet are owed.
    """
    client = escrow_client()
    differences: list[str] = []
    if client.custody_address is not None:
        held, owed = client.balance_of(client.custody_address), custodial_obligations()
        if held != owed:
            differences.append(f"custody: escrow holds {held}, clients without a wallet are owed {owed}")
    wallets: dict[int, list[str]] = {}
    for user_id, address in Wallet.objects.values_list("user_id", "address"):
        wallets.setdefault(user_id, []).append(address)
    accounts = {
        (owner, kind): balance
        for owner, kind, balance in LedgerAccount.objects.filter(owner__isnull=False).values_list(
            "owner", "kind", "balance"
        )
    }
    # top-ups reserved in the ledger and not yet in the contract
    pending = LeaseTopUp.objects.filter(status=LeaseTopUp.Status.PENDING)
    top_ups_by_lease = dict(pending.values_list("lease_id", "amount"))
    top_ups_by_client = dict(
        pending.order_by()
        .values("lease__client_id")
        .annotate(total=Sum("amount"))
        .values_list("lease__client_id", "total")
    )
    for user_id, addresses in wallets.items():
        on_chain = sum(client.balance_of(a) for a in addresses)
        reserved = sum(
            Lease.objects.filter(client_id=user_id, status=Lease.Status.FUNDING).values_list("deposit", flat=True)
        ) + top_ups_by_client.get(user_id, 0)
        in_ledger = accounts.get((user_id, LedgerAccount.Kind.CLIENT_BALANCE), 0)
        if in_ledger != on_chain - reserved:
            differences.append(
                f"user {user_id}: ledger balance {in_ledger}, escrow {on_chain} less {reserved} reserved for "
                "funding and top-ups"
            )
        claimed = claimed_by(addresses=addresses)
        earnings = accounts.get((user_id, LedgerAccount.Kind.PROVIDER_EARNINGS), 0)
        claimable = sum(client.claimable(a) for a in addresses)
        if earnings != claimable + claimed:
            differences.append(
                f"user {user_id}: ledger earnings {earnings}, escrow claimable {claimable} plus claimed {claimed}"
            )
    recipients = {
        args["recipient"] for args in ChainEvent.objects.filter(name="FeeChanged").values_list("args", flat=True)
    }
    fees = LedgerAccount.objects.filter(kind=LedgerAccount.Kind.PLATFORM_FEES).values_list("balance", flat=True)
    fees_in_ledger = fees.first() or 0
    fees_on_chain = sum(client.claimable(a) for a in recipients) + claimed_by(addresses=sorted(recipients))
    if fees_in_ledger != fees_on_chain:
        differences.append(
            f"platform fees: ledger {fees_in_ledger}, escrow claimable plus claimed by the fee recipients "
            f"{fees_on_chain}"
        )
    on_chain_leases = Lease.objects.exclude(status=Lease.Status.FUNDING).exclude(
        status=Lease.Status.CLOSED,
        open_tx_hash="",  # closed before the escrow ever took it
    )
    for lease in on_chain_leases.select_related("escrow_account"):
        escrowed = client.lease(lease.pk)
        in_ledger = lease.escrow_account.balance - top_ups_by_lease.get(lease.pk, 0)
        if escrowed.balance != in_ledger:
            differences.append(
                f"lease {lease.pk}: ledger escrow {in_ledger} (less pending top-ups), contract {escrowed.balance}"
            )
        if lease.status == Lease.Status.CLOSED and escrowed.open:
            differences.append(f"lease {lease.pk}: closed in the ledger, open in the contract")
    return differences


def slash_plan(*, stake: int, refunds: list[int], weights: list[int], penalty_bps: int) -> list[int]:
    """What to slash for each affected lease: its refund, or its pro rata part of the stake if the
    stake cannot cover them all; plus its share (pro rata to ``weights``) of ``penalty_bps`` of the
    stake left after the refunds. Rounded down: never more than the stake."""
    owed = sum(refunds)
    if stake <= owed:
        return [stake * refund // owed for refund in refunds]
    pool, weight = (stake - owed) * penalty_bps // 10_000, sum(weights)
    return [refund + (pool * w // weight if weight else 0) for refund, w in zip(refunds, weights, strict=True)]


def _provider_wallet(lease: Lease) -> str | None:
    """The wallet whose stake answers for the lease: the one the contract opened it with."""
    opened_with = escrow_client().lease(lease.pk).provider if lease.open_tx_hash else None
    return opened_with or primary_wallet(lease.provider.user_id)


def _enqueue(task: Task, object_id: int) -> None:
    """Queue a chain task (called after commit); if the broker is down, the chain sync does it."""
    queueing.send(task, object_id)


class ChainEscrow(Escrow):
    opening_status = Lease.Status.FUNDING

    def fund(self, lease: Lease) -> None:
        transaction.on_commit(lambda: _enqueue(tasks.fund_lease_on_chain, lease.pk))

    def close(self, lease: Lease, *, earned: int, now: datetime) -> Lease:
        """``closing`` until the contract pays and refunds; the ledger then books what it moved."""
        lease.close_requested_amount = earned
        lease_transition(lease, Lease.Status.CLOSING, fields=["closed_by", "close_reason", "close_requested_amount"])
        transaction.on_commit(lambda: _enqueue(tasks.close_lease_on_chain, lease.pk))
        return lease

    def top_up(self, top_up: LeaseTopUp, lease: Lease, *, now: datetime) -> None:
        transaction.on_commit(lambda: _enqueue(tasks.top_up_lease_on_chain, top_up.pk))

    def settlements_catch_up(self) -> bool:
        return chain_settlements_catch_up()

    def settle(self, due: dict[int, tuple[int, int]], *, batch_size: int) -> int:
        return leases_settle_on_chain(
            due={i: owed - settled for i, (owed, settled) in due.items()}, batch_size=batch_size
        )

    def compensation_plan(self, leases: list[Lease], *, refunds: list[int], penalty_bps: int) -> list[int]:
        """Slashed from the provider's stake: the refunds first (pro rata if the stake cannot cover
        them), then ``penalty_bps`` of what stake remains, shared pro rata to the leases' prices."""
        wallet = _provider_wallet(leases[0]) if leases else None
        stake = escrow_client().slashable(wallet) if wallet else 0
        weights = [lease.price_per_hour for lease in leases]
        return slash_plan(stake=stake, refunds=refunds, weights=weights, penalty_bps=penalty_bps)

    def compensate(self, lease: Lease, *, amount: int, key: str, since: datetime, paid: Paid) -> None:
        """Slashed straight to the client's wallet, or to the custody account for a client without
        one, once per ``key`` (a retry finds the confirmed slash and books what it took)."""
        wallet = _provider_wallet(lease) if amount else None
        if wallet is None:
            with transaction.atomic():
                paid(0, "")
            return
        client = escrow_client()
        beneficiary = primary_wallet(lease.client_id) or client.custody_address
        assert beneficiary is not None  # a client without a wallet had its lease opened by the custody account
        with custody_lock():  # the custody sync must not see the slashed money before the ledger does
            done = ChainTransaction.objects.filter(
                kind="slash", reference=key, status=ChainTransaction.Status.CONFIRMED
            ).first()
            taken = (
                client.slashed_in(done.tx_hash)
                if done
                else client.slash(provider=wallet, amount=amount, beneficiary=beneficiary, reference=key)
            )
            with transaction.atomic():
                if taken:
                    compensate_from_stake(
                        lease=lease,
                        amount=taken,
                        chain_id=client.chain_id,
                        key=key,
                        memo="from the provider's stake, slashed after a failed GPU check",
                    )
                paid(taken, beneficiary)

    def sync(self) -> int:
        return chain_sync(confirmations=settings.CHAIN_CONFIRMATIONS)

    def reconcile(self) -> list[str]:
        return reconcile()

    def off_chain_funding_check(self, *, user: User) -> None:
        """Money paid off chain is held in the escrow by the custody account for a client without a
        linked wallet; a client with one funds its balance from it."""
        if Wallet.objects.filter(user=user).exists():
            raise Conflict(
                "Your balance is funded from your linked wallet: deposit to the escrow contract from it.",
                code="wallet_funded",
            )
        if custody_address() is None:
            raise ValidationFailed("Card payments are not configured here.", code="payments_not_configured")

    def wallet_link_check(self, *, user: User) -> None:
        """A client without a wallet is funded through the custody account: linking a first wallet
        would move the balance it already has, and the refunds of its open leases, to a wallet that
        does not hold them. Refused until both are zero."""
        balance = (
            LedgerAccount.objects.filter(owner=user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
            .values_list("balance", flat=True)
            .first()
        )
        open_leases = Lease.objects.filter(client=user).exclude(status=Lease.Status.CLOSED).exists()
        if balance or open_leases:
            raise Conflict(
                "The marketplace holds your card-paid balance for you; spend it and close your leases before "
                "linking a wallet.",
                code="balance_in_custody",
            )

    # the terms a client signs: ``leases.escrow.signing`` (the same keyword arguments)
    acceptance_terms = staticmethod(signing.acceptance_terms)
    acceptance_signed = staticmethod(signing.acceptance_signed)
    authorization_terms = staticmethod(signing.authorization_terms)
    authorization_signed = staticmethod(signing.authorization_signed)
    award_terms = staticmethod(signing.award_terms)
    terms_signer = staticmethod(signing.terms_signer)

    def demo_fund(self, *, client: User, provider_user: User, amount: int) -> str:
        """The demo users get wallets on the in-process chain (funded when it starts), and the
        client's balance arrives from its wallet's deposit, not from a faucet."""
        if settings.CHAIN_BACKEND == "embedded":
            for user, index in ((client, DEMO_CLIENT_ACCOUNT), (provider_user, DEMO_PROVIDER_ACCOUNT)):
                Wallet.objects.get_or_create(address=embedded_account(index), defaults={"user": user})
        return f"{format_usd(settings.CHAIN_EMBEDDED_DEMO_FUNDS)} deposited in the escrow contract"

    def demo_signing_key(self) -> str | None:
        return embedded_key(DEMO_PROVIDER_ACCOUNT) if settings.CHAIN_BACKEND == "embedded" else None
