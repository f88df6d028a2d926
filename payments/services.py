"""Card top-ups through Stripe, credited to the same ledger as every other rail.

1. ``top_up_create`` makes a PaymentIntent (the pinned API version, an idempotency key) and records
   it; the page confirms it with Stripe.js's Payment Element using the client secret.
2. Stripe calls ``POST /api/v1/payments/stripe/webhook/``. The signature is verified (five minutes
   of tolerance), the top-up is brought in line with the PaymentIntent and its charge *as Stripe
   has them now*, read back from the API rather than from the event, and the event is recorded by
   id under a unique constraint in the same transaction (a duplicate is acknowledged and ignored;
   a delivery that fails records nothing, so the next delivery applies it). So events that arrive
   twice or out of order never credit twice, none is lost to a failed delivery, and a refund seen
   before the success is applied after the credit.
3. A refund debits the balance by what was refunded; a dispute holds the disputed amount until it
   is decided (won: released). Money the balance no longer holds is recorded as the client's
   shortfall, never taken below zero.

With the escrow on chain, money paid off chain is held in the escrow by the marketplace's custody
account (``ledger.custody``), for clients without a linked wallet; a client with a
wallet funds its balance from that wallet, so card top-ups are refused to it.

Demo credit (``DEMO_CREDIT_CENTS`` per account, off unless set; ``make run`` sets it) is the same
kind of deposit with no card behind it, so that a demonstration server needs no payment keys.

Stripe counts US cents; the ledger counts micro-dollars (1 cent = 10,000).
"""

import logging
from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from stripe._base_address import BaseAddresses  # the SDK exports the type nowhere else

from core.errors import ServiceUnavailable, ValidationFailed
from core.models import User
from core.money import format_usd_short
from leases.escrow import escrow
from ledger import services as ledger
from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from payments.models import CardTopUp, StripeEvent

logger = logging.getLogger(__name__)

MICROS_PER_CENT = 10_000
CARD_SOURCE = "card payments (Stripe)"
DISPUTE_HOLD = "card disputes (held)"
DEMO_SOURCE = "demo credit (no card)"
HANDLED = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)


def stripe_client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise ValidationFailed("Card payments are not configured here.", code="payments_not_configured")
    base: BaseAddresses = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, stripe_version=settings.STRIPE_API_VERSION, base_addresses=base
    )


def _dollars(cents: int) -> str:
    return format_usd_short(cents * MICROS_PER_CENT)


def off_chain_funding_check(*, user: User) -> None:
    """Whether ``user`` may add money other than from a wallet: the escrow says (in the ledger,
    always; on chain, only without a linked wallet and with a custody account to hold it)."""
    escrow().off_chain_funding_check(user=user)


def top_up_create(*, user: User, amount_cents: int, idempotency_key: str = "") -> tuple[CardTopUp, str]:
    """A PaymentIntent for ``amount_cents``; returns the top-up and the client secret for the page."""
    low, high = settings.CARD_TOP_UP_MIN_CENTS, settings.CARD_TOP_UP_MAX_CENTS
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or not low <= amount_cents <= high:
        raise ValidationFailed(
            "Invalid amount.",
            fields={"amount_cents": [f"From {_dollars(low)} to {_dollars(high)}, in whole cents."]},
        )
    off_chain_funding_check(user=user)
    options: stripe.RequestOptions = (
        {"idempotency_key": f"top-up:{user.pk}:{idempotency_key}"} if idempotency_key else {}
    )
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": "usd",
                "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]  # the SDK types a newer API
                "metadata": {"user": str(user.pk), "purpose": "balance top-up"},
            },
            options=options,
        )
    except stripe.StripeError as exc:
        raise ValidationFailed(f"The card processor refused: {exc.user_message or exc}", code="stripe_error") from exc
    top_up, _ = CardTopUp.objects.get_or_create(
        payment_intent=intent.id, defaults={"user": user, "amount_cents": amount_cents}
    )
    return top_up, str(intent.client_secret)


def stripe_event_receive(*, payload: bytes, signature: str) -> str:
    """Verify one webhook event and apply it once; returns what happened (for the log).

    The event is recorded in the transaction that applies it: a delivery that fails (Stripe
    unreachable, the database refusing) leaves nothing recorded, and Stripe's next delivery of the
    same event applies it. A delivery of an event already applied is answered "duplicate"."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise ValidationFailed("Card payments are not configured here.", code="payments_not_configured")
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=300)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise ValidationFailed("Bad webhook signature or payload.", code="invalid_signature") from exc
    data = event.to_dict()
    if StripeEvent.objects.filter(event_id=data["id"]).exists():
        return "duplicate"
    try:
        apply = _planned(data)  # what Stripe says now: read before anything is written
    except stripe.StripeError as exc:  # nothing recorded: Stripe delivers the event again
        raise ServiceUnavailable(f"Stripe could not be read ({exc}); deliver the event again.") from exc
    with transaction.atomic():  # recorded in the transaction that applies it: done once, or not at all
        try:
            with transaction.atomic():
                StripeEvent.objects.create(event_id=data["id"], type=data["type"], payload=data)
        except IntegrityError:  # the same event, applied meanwhile by a concurrent delivery
            return "duplicate"
        return apply()


def _planned(data: dict) -> Callable[[], str]:
    """How to apply the event: Stripe's objects it needs are read now, the books written later."""
    if data["type"] not in HANDLED:
        return lambda: "ignored"
    obj = data["data"]["object"]
    intent_id = obj.get("id") if data["type"].startswith("payment_intent.") else obj.get("payment_intent")
    if not intent_id and obj.get("charge"):
        disputed = stripe_client().v1.charges.retrieve(_id(obj["charge"])).to_dict()
        intent_id = disputed.get("payment_intent")
    if not intent_id:
        return lambda: "no payment intent"
    dispute = obj if data["type"].startswith("charge.dispute.") else None
    return _sync_planned(_id(intent_id), dispute)


def _id(value: Any) -> str:
    return value["id"] if isinstance(value, dict) else str(value)


def top_up_sync(*, payment_intent: str) -> str:
    """Bring a top-up in line with Stripe's PaymentIntent and its charge."""
    return _sync_planned(payment_intent, None)()


def _sync_planned(payment_intent: str, dispute: dict | None) -> Callable[[], str]:
    """Bringing the top-up in line: Stripe's PaymentIntent and its latest charge, read now; the
    books, written when the returned call runs."""
    if not CardTopUp.objects.filter(payment_intent=payment_intent).exists():
        logger.warning("Stripe event for unknown payment intent %s", payment_intent)
        return lambda: "unknown payment intent"
    client = stripe_client()
    intent = client.v1.payment_intents.retrieve(payment_intent).to_dict()
    charge = intent.get("latest_charge")
    if isinstance(charge, str):
        charge = client.v1.charges.retrieve(charge).to_dict()
    return lambda: _apply(payment_intent, intent, charge, dispute)


def _apply(payment_intent: str, intent: dict, charge: dict | None, dispute: dict | None) -> str:
    """The top-up, its refunds and a dispute brought in line with what Stripe said, in one transaction."""
    with transaction.atomic():
        top_up = CardTopUp.objects.select_for_update().get(payment_intent=payment_intent)
        outcome = _apply_intent(top_up, intent)
        if charge and top_up.status == CardTopUp.Status.SUCCEEDED:
            _apply_refunds(top_up, int(charge.get("amount_refunded") or 0) * MICROS_PER_CENT)
        if dispute and top_up.status == CardTopUp.Status.SUCCEEDED:
            _apply_dispute(top_up, dispute)
        top_up.save()
    return outcome


def top_up_refresh(*, top_up: CardTopUp) -> CardTopUp:
    """A pending top-up brought up to date with Stripe (a client back from paying, perhaps before
    the webhook): credited once if it succeeded. Stripe unreachable: left as it is, for the webhook."""
    if top_up.status != CardTopUp.Status.PENDING or not settings.STRIPE_SECRET_KEY:
        return top_up
    try:
        top_up_sync(payment_intent=top_up.payment_intent)
    except stripe.StripeError as exc:
        logger.info("top-up %s not refreshed: %s", top_up.pk, exc)
        return top_up
    top_up.refresh_from_db()
    return top_up


def _apply_intent(top_up: CardTopUp, intent: dict) -> str:
    status = intent.get("status")
    if status == "succeeded" and top_up.status != CardTopUp.Status.SUCCEEDED:
        amount = int(intent.get("amount_received") or intent["amount"]) * MICROS_PER_CENT
        ledger.deposit(
            user=top_up.user,
            amount=amount,
            key=f"stripe:{top_up.payment_intent}:credit",
            source=CARD_SOURCE,
            memo=f"Card top-up ({top_up.payment_intent})",
        )
        top_up.status, top_up.credited = CardTopUp.Status.SUCCEEDED, amount
        return "credited"
    if top_up.status == CardTopUp.Status.PENDING and status == "canceled":
        top_up.status = CardTopUp.Status.CANCELED
    elif (
        top_up.status == CardTopUp.Status.PENDING
        and status == "requires_payment_method"
        and intent.get("last_payment_error")
    ):
        top_up.status = CardTopUp.Status.FAILED
    return top_up.status


def _take_back(top_up: CardTopUp, *, amount: int, key: str, to: str, kind: str, memo: str) -> int:
    """Move up to ``amount`` from the client's balance to ``to``; the rest is the client's shortfall."""
    balance = ledger.user_account(user=top_up.user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    balance.refresh_from_db()
    taken = min(amount, max(0, balance.balance))
    ledger.post(key=key, kind=kind, legs=[(balance, -taken), (ledger.external_account(name=to), taken)], memo=memo)
    top_up.shortfall += amount - taken
    return taken


def _apply_refunds(top_up: CardTopUp, refunded_total: int) -> None:
    delta = refunded_total - top_up.refunded
    if delta <= 0:
        return
    _take_back(
        top_up,
        amount=delta,
        key=f"stripe:{top_up.payment_intent}:refunded:{refunded_total}",
        to=CARD_SOURCE,
        kind=LedgerTransaction.Kind.WITHDRAWAL,
        memo=f"Card refund ({top_up.payment_intent})",
    )
    top_up.refunded = refunded_total


def _apply_dispute(top_up: CardTopUp, dispute: dict) -> None:
    """Hold the disputed amount when a dispute opens; give back what was held if it is won."""
    dispute_id, amount = str(dispute.get("id")), int(dispute.get("amount") or 0) * MICROS_PER_CENT
    status = dispute.get("status")
    if status in ("won", "warning_closed"):
        if not top_up.dispute_amount:
            return
        balance = ledger.user_account(user=top_up.user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        ledger.post(
            key=f"stripe:{dispute_id}:released",
            kind=LedgerTransaction.Kind.DEPOSIT,
            legs=[(ledger.external_account(name=DISPUTE_HOLD), -top_up.disputed), (balance, top_up.disputed)],
            memo=f"Card dispute won ({top_up.payment_intent})",
        )
        top_up.shortfall -= top_up.dispute_amount - top_up.disputed
        top_up.disputed = top_up.dispute_amount = 0
    elif status != "lost" and amount and not top_up.dispute_amount:
        top_up.dispute_amount = amount
        top_up.disputed = _take_back(
            top_up,
            amount=amount,
            key=f"stripe:{dispute_id}:held",
            to=DISPUTE_HOLD,
            kind=LedgerTransaction.Kind.WITHDRAWAL,
            memo=f"Held while the card holder disputes ({top_up.payment_intent})",
        )


def demo_credit_left(*, user: User) -> int:
    """US cents of demo credit ``user`` may still take (0 where demo credit is off)."""
    taken = LedgerEntry.objects.filter(
        account__owner=user,
        account__kind=LedgerAccount.Kind.CLIENT_BALANCE,
        transaction__idempotency_key__startswith=f"demo-credit:{user.pk}:",
    ).aggregate(total=Sum("amount"))["total"]
    return max(0, settings.DEMO_CREDIT_CENTS - (taken or 0) // MICROS_PER_CENT)


def demo_credit_add(*, user: User, amount_cents: int) -> LedgerTransaction:
    """Credit ``amount_cents`` of demo credit to ``user``'s balance, within ``DEMO_CREDIT_CENTS`` in all."""
    if not settings.DEMO_CREDIT_CENTS:
        raise ValidationFailed("There is no demo credit on this marketplace.", code="demo_credit_off")
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise ValidationFailed("Invalid amount.", fields={"amount_cents": ["More than $0, in whole cents."]})
    off_chain_funding_check(user=user)
    with transaction.atomic():
        balance = ledger.user_account(user=user, kind=LedgerAccount.Kind.CLIENT_BALANCE)
        LedgerAccount.objects.select_for_update().filter(pk=balance.pk).first()  # one credit at a time
        left = demo_credit_left(user=user)
        if amount_cents > left:
            raise ValidationFailed(
                "More than the demo credit left.",
                code="demo_credit_exhausted",
                fields={"amount_cents": [f"At most {_dollars(left)} of demo credit is left."]},
            )
        count = LedgerTransaction.objects.filter(idempotency_key__startswith=f"demo-credit:{user.pk}:").count()
        return ledger.deposit(
            user=user,
            amount=amount_cents * MICROS_PER_CENT,
            key=f"demo-credit:{user.pk}:{count + 1}",
            source=DEMO_SOURCE,
            memo="Demo credit (no card charged)",
        )
