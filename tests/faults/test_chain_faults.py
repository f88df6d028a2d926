"""Settlement on a real chain node (Anvil) by a real Celery worker, with the worker killed after its
transaction was mined, and with the node stopped while the transaction is on its way and started
again (its chain kept on disk, as a real node keeps it)."""

import re
import warnings
from pathlib import Path

import pytest

from chain.devnode import Anvil, anvil_binary
from chain.models import ChainTransaction
from config.celery import app as celery_app
from leases.models import Lease
from tests import factories as f
from tests.conftest import on_anvil
from tests.faults.harness import HoldingProxy, assert_converged, database_url, kill, python, wait_for
from tests.leases.test_escrow_on_chain import funded_lease, ledger_balance, ran_for, wallet_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    binary = anvil_binary()
    if binary is None:
        pytest.skip("needs anvil: `make tools` installs it (CI does)")
    anvil = Anvil(binary, state=tmp_path / "chain.json")
    yield anvil
    anvil.stop()


class Worker:
    """A Celery worker process whose chain calls go through ``proxy``."""

    def __init__(self, settings, proxy: HoldingProxy, log: Path) -> None:  # type: ignore[no-untyped-def]
        self.log = log
        self.env = {
            "DATABASE_URL": database_url(),
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "ESCROW_BACKEND": "chain",
            "CHAIN_BACKEND": "rpc",
            "CHAIN_RPC_URL": proxy.url,
            "CHAIN_OPERATOR_KEY": settings.CHAIN_OPERATOR_KEY,
            "CHAIN_VERIFIER_KEY": settings.CHAIN_VERIFIER_KEY,
            "CHAIN_CONFIRMATIONS": "0",
            "CHAIN_RPC_RETRIES": "1",
        }
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = python(
            *("-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=info", "-n", "faults@%h"),
            *("--logfile", str(self.log)),
            env=self.env,
        )

    def settle(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "always eager has no effect on send_task": intended
            celery_app.send_task("leases.tasks.settle_leases")

    def finished(self, count: int) -> None:
        """Until ``count`` settlement ticks have finished in this worker's log."""
        wait_for(
            lambda: (
                self.log.exists() and len(re.findall(r"settle_leases\[\S+\] succeeded", self.log.read_text())) >= count
            ),
            timeout=60,
            what=f"{count} finished settlement ticks",
        )

    def kill(self) -> None:
        kill(self.process)


def rpc(name: str):  # type: ignore[no-untyped-def]
    return lambda method, path, body: f'"{name}"'.encode() in body


@pytest.fixture
def parties(settings, node, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    settings.ESCROW_BACKEND = "chain"
    chain = on_anvil(settings, node)
    client_user, _provider, lease = funded_lease(chain, django_capture_on_commit_callbacks, allow=100 * f.USD)
    ran_for(chain, lease, 1200)
    f.usage(lease, seconds=600)  # 600 s at $3.60 an hour: 600,000 owed
    return chain, client_user, lease


def close_and_check(chain, client_user, lease: Lease) -> None:  # type: ignore[no-untyped-def]
    f.api(client_user, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")  # closes on chain (eager here)
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    assert ledger_balance(client_user) == chain.balance_of(wallet_of(chain, 5))
    assert lease.paid_to_provider == chain.claimable(wallet_of(chain, 6))
    assert_converged(chain=chain)


def test_a_worker_killed_after_the_chain_paid_is_caught_up_without_paying_twice(
    parties, settings, node, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    chain, client_user, lease = parties
    proxy = HoldingProxy(("127.0.0.1", node.port))
    worker = Worker(settings, proxy, tmp_path / "worker.log")
    try:
        proxy.hold_when(rpc("eth_getTransactionReceipt"))  # mined; the worker waits for its receipt
        worker.settle()
        wait_for(proxy.held.is_set, timeout=60, what="the settle transaction")
        worker.kill()
        proxy.release()
        wait_for(lambda: chain.claimable(wallet_of(chain, 6)) == 600_000, what="the settlement mined")
        lease.refresh_from_db()
        assert lease.settled_amount == 0  # the chain paid; the books do not know

        worker.start()  # the next tick books what the chain did, and sends nothing more
        worker.settle()
        worker.finished(1)
        lease.refresh_from_db()
        assert lease.settled_amount == 600_000 == chain.claimable(wallet_of(chain, 6))
        assert ChainTransaction.objects.filter(kind="settle").count() == 1
        assert_converged(chain=chain)
    finally:
        worker.kill()
        proxy.close()
    close_and_check(chain, client_user, lease)


def test_a_node_stopped_during_settlement_settles_once_it_is_back(parties, settings, node, tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain, client_user, lease = parties
    proxy = HoldingProxy(("127.0.0.1", node.port))
    worker = Worker(settings, proxy, tmp_path / "worker.log")
    try:
        proxy.hold_when(rpc("eth_sendRawTransaction"), forward_on_release=True)
        worker.settle()
        wait_for(proxy.held.is_set, timeout=60, what="the settle transaction")
        node.stop()  # the node goes away with the transaction on its way
        proxy.release()
        worker.finished(1)
        lease.refresh_from_db()
        assert lease.settled_amount == 0

        worker.settle()  # a tick while the node is down waits, and changes nothing
        worker.finished(2)
        lease.refresh_from_db()
        assert lease.settled_amount == 0

        node.start()  # back, with its chain
        # (the 20 minutes the test moved the node's clock on are not part of the saved chain)
        node.web3().provider.make_request("evm_increaseTime", [1200])
        assert chain.lease(lease.pk).balance == lease.deposit
        worker.settle()
        worker.finished(3)
        lease.refresh_from_db()
        assert lease.settled_amount == 600_000 == chain.claimable(wallet_of(chain, 6))
        assert_converged(chain=chain)
    finally:
        worker.kill()
        proxy.close()
    close_and_check(chain, client_user, lease)
