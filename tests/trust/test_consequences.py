"""What a failed proof-of-GPU check costs: the leases on the failed GPUs close, their clients get
back everything the leases paid since those GPUs last passed a check (from the provider's earnings
with the ledger as escrow; from its slashed stake, plus a penalty, with the escrow on chain), and the
books balance to the micro-dollar."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from leases import services as leases
from leases.escrow import chain as escrow
from leases.models import Lease
from ledger.models import LedgerAccount
from marketplace import services as market
from notifications.models import Notification
from protocol.proof import protocol
from tests import factories as f
from tests.chain.mined import mined
from tests.factories import USD
from tests.leases.test_escrow_on_chain import advance, funded_lease, ledger_balance, wallet_of
from tests.leases.test_leases import account
from trust import services
from trust.models import Compensation, GpuCheck
from trust.tasks import sweep_checks

RATE = 3600 * 1000  # $0.001 a second


@pytest.fixture(autouse=True)
def small_challenges(settings):  # type: ignore[no-untyped-def]
    settings.PROOF_WIDTH, settings.PROOF_ROUNDS, settings.PROOF_LEAF_ROWS = 32, 3, 64
    settings.PROOF_ROWS_PER_SECOND = {"h100-sxm-80gb": 1000.0, "a100-sxm-80gb": 1000.0}
    settings.PROOF_TARGET_SECONDS = 0.256


def passed_check(provider, model: str, *, at) -> GpuCheck:  # type: ignore[no-untyped-def]
    """An honest answer to a check, finished at ``at``."""
    check = services.check_issue(provider=provider, gpu_model_id=model, reason=GpuCheck.Reason.ADMIN, now=at)
    services.check_start(provider=provider, check_id=check.pk, now=at)
    params = protocol.Params.from_dict(check.params)
    commitment = protocol.prove(bytes(check.seed), params)
    committed = services.check_commit(provider=provider, check_id=check.pk, root=commitment.root.hex(), now=at)
    opened = services.check_open(
        provider=provider, check_id=check.pk, opening=commitment.open(committed.rows, params.leaf_rows), now=at
    )
    assert opened.status == GpuCheck.Status.PASSED
    return opened


def failed_check(provider, model: str) -> GpuCheck:  # type: ignore[no-untyped-def]
    """A commitment after the model's envelope: the card is slower than the one claimed."""
    check = services.check_issue(provider=provider, gpu_model_id=model, reason=GpuCheck.Reason.LEASE)
    t0 = timezone.now()
    services.check_start(provider=provider, check_id=check.pk, now=t0)
    late = t0 + timedelta(seconds=check.deadline_seconds + 1)
    check = services.check_commit(provider=provider, check_id=check.pk, root="ab" * 32, now=late)
    assert (check.status, check.failure) == ("failed", "too_slow")
    return check


def lease_on(provider, client, model: str, *, ran: int):  # type: ignore[no-untyped-def]
    """A lease on ``provider``'s ``model`` GPUs, running for ``ran`` seconds (all reported)."""
    order = f.order(client, resources={"gpu_models": [model]}, max_price_per_hour=10 * USD)
    lease = market.order_accept(
        client=client, order_id=order.pk, bid_id=f.bid(provider, order, RATE, gpu_model=model).pk
    )
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=ran)
    Lease.objects.filter(pk=lease.pk).update(
        started_at=start, ends_at=start + timedelta(hours=lease.duration_hours), status=Lease.Status.RUNNING
    )
    lease.refresh_from_db()
    f.usage(lease, seconds=ran)
    return lease


@pytest.mark.django_db
def test_a_failure_closes_the_leases_on_the_failed_gpus_and_refunds_what_they_paid_since_the_last_pass(
    django_capture_on_commit_callbacks,
) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 4})
    alice, bob = f.client_user(balance=100 * USD), f.client_user(balance=100 * USD)
    h100 = lease_on(provider, alice, "h100-sxm-80gb", ran=1200)
    a100 = lease_on(provider, bob, "a100-sxm-80gb", ran=1200)
    passed_check(provider, "h100-sxm-80gb", at=h100.started_at + timedelta(seconds=600))  # halfway through
    assert leases.leases_settle() == 2
    h100.refresh_from_db()
    assert h100.settled_amount == 1200 * 1000
    assert account(provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 2 * 1200 * 1000

    with django_capture_on_commit_callbacks(execute=True):
        check = failed_check(provider, "h100-sxm-80gb")

    h100.refresh_from_db()
    assert (h100.status, h100.closed_by) == (Lease.Status.CLOSED, Lease.ClosedBy.SYSTEM)
    assert f"failed proof-of-GPU check {check.pk}" in h100.close_reason
    assert h100.paid_to_provider == 1200 * 1000 and h100.refunded_to_client == h100.deposit - 1200 * 1000
    compensation = Compensation.objects.get(lease=h100)
    assert compensation.since == h100.started_at + timedelta(seconds=600)
    assert (compensation.refund, compensation.paid, compensation.status) == (600 * 1000, 600 * 1000, "paid")
    # Alice paid for the 600 s before the last passed check, and for nothing after it
    assert account(alice, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD - 600 * 1000
    assert account(provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 1200 * 1000 + 600 * 1000
    shown = f.api(alice, f.CLIENT).get(f"/api/v1/leases/{h100.pk}/").json()["compensation"]
    assert shown == {
        "check": check.pk,
        "since": shown["since"],
        "refund": 600 * 1000,
        "penalty": 0,
        "paid": 600 * 1000,
        "status": "paid",
    }
    page = Client()
    page.force_login(alice)
    html = page.get(f"/leases/{h100.pk}/").content.decode()
    assert "Back after a failed GPU check" in html and "$0.60" in html
    assert f.api(bob, f.CLIENT).get(f"/api/v1/leases/{a100.pk}/").json()["compensation"] is None
    note = Notification.objects.get(user=alice, kind="lease.compensated")
    assert note.data["paid"] == 600 * 1000 and "$0.60" in note.title

    a100.refresh_from_db()
    assert a100.status == Lease.Status.RUNNING  # not on the failed GPUs
    check.refresh_from_db()
    assert check.consequences_at is not None
    assert services.consequences_apply(check_id=check.pk) == 0  # once
    assert services.compensations_pay(check_id=check.pk) == 0


@pytest.mark.django_db
def test_with_no_pass_during_the_lease_everything_comes_back_even_when_the_sweep_does_it() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    client = f.client_user(balance=100 * USD)
    passed_check(provider, "h100-sxm-80gb", at=timezone.now() - timedelta(hours=3))  # before the lease
    lease = lease_on(provider, client, "h100-sxm-80gb", ran=900)
    leases.leases_settle()
    check = failed_check(provider, "h100-sxm-80gb")  # its tasks were lost: the broker was down
    lease.refresh_from_db()
    assert lease.status == Lease.Status.RUNNING

    sweep_checks.delay().get()  # the worker's minute
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert Compensation.objects.get(gpu_check=check).paid == 900 * 1000
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD  # all of it
    assert account(provider.user, LedgerAccount.Kind.PROVIDER_EARNINGS) == 0


@pytest.mark.django_db
def test_a_provider_that_spent_its_earnings_pays_back_what_is_left() -> None:
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    client = f.client_user(balance=100 * USD)
    lease = lease_on(provider, client, "h100-sxm-80gb", ran=900)
    leases.leases_settle()
    earnings = LedgerAccount.objects.get(owner=provider.user, kind=LedgerAccount.Kind.PROVIDER_EARNINGS)
    from ledger import services as ledger

    ledger.post(  # paid out to the provider's bank meanwhile
        key="test:payout",
        kind="withdrawal",
        legs=[(earnings, -500 * 1000), (ledger.external_account(name="bank"), 500 * 1000)],
    )
    check = failed_check(provider, "h100-sxm-80gb")
    sweep_checks.delay().get()
    compensation = Compensation.objects.get(gpu_check=check, lease=lease)
    assert (compensation.refund, compensation.paid) == (900 * 1000, 400 * 1000)
    assert account(client, LedgerAccount.Kind.CLIENT_BALANCE) == 100 * USD - 500 * 1000


def test_the_slash_plan_refunds_first_then_shares_the_penalty_pro_rata() -> None:
    plan = escrow.slash_plan
    assert plan(stake=10_000, refunds=[1_000, 3_000], weights=[1, 3], penalty_bps=5000) == [1_750, 5_250]
    assert plan(stake=2_000, refunds=[1_000, 3_000], weights=[1, 3], penalty_bps=5000) == [500, 1_500]
    assert plan(stake=0, refunds=[1_000], weights=[1], penalty_bps=5000) == [0]
    assert plan(stake=10_000, refunds=[0, 0], weights=[2, 1], penalty_bps=10_000) == [6_666, 3_333]
    assert sum(plan(stake=7, refunds=[1, 1, 1], weights=[1, 1, 1], penalty_bps=10_000)) <= 7


@pytest.mark.django_db(transaction=True)
def test_on_chain_the_verifier_slashes_the_stake_to_the_client_and_the_books_match_the_chain(
    chain, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.PROOF_SLASH_BPS = 5000
    client_user, provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * USD)
    provider_wallet = wallet_of(chain, 6)
    owner = chain.w3.eth.accounts[0]
    mined(chain.token.functions.mint(provider_wallet, 20 * USD), owner)
    mined(chain.token.functions.approve(chain.escrow.address, 2**256 - 1), provider_wallet)
    mined(chain.escrow.functions.stake(20 * USD), provider_wallet)
    mined(chain.escrow.functions.request_unstake(5 * USD), provider_wallet)  # still slashable

    advance(chain, 1200)
    Lease.objects.filter(pk=lease.pk).update(
        started_at=timezone.now() - timedelta(seconds=1200), status=Lease.Status.RUNNING
    )
    lease.refresh_from_db()
    f.usage(lease, seconds=600)
    assert leases.leases_settle() == 1
    lease.refresh_from_db()
    paid = lease.settled_amount
    assert paid == 600_000 == chain.claimable(provider_wallet)

    with django_capture_on_commit_callbacks(execute=True):
        check = failed_check(provider, lease.gpu_model_id)

    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and not chain.lease(lease.pk).open
    assert lease.paid_to_provider == paid  # nothing more for the provider at close
    compensation = Compensation.objects.get(gpu_check=check)
    penalty = (20 * USD - paid) // 2
    assert (compensation.refund, compensation.penalty, compensation.paid) == (paid, penalty, paid + penalty)
    assert compensation.beneficiary == wallet_of(chain, 5)
    assert chain.slashable(provider_wallet) == 20 * USD - paid - penalty
    # the client has its whole deposit back, and the penalty on top, in the ledger as on chain
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5)) == 100 * USD + penalty
    assert escrow.reconcile() == []
    assert services.compensations_pay(check_id=check.pk) == 0  # paid once
