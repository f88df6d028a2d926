"""One interface to the escrow contract, over two backends chosen by settings.

- ``CHAIN_BACKEND=embedded`` (the default): an in-process EVM (py-evm through eth-tester) with
  the token and the escrow deployed when the process first needs them. It lives as long as the
  process, so only one process (the Celery worker) should talk to it.
- ``CHAIN_BACKEND=rpc``: any JSON-RPC node (Anvil locally, a real network in production) at
  ``CHAIN_RPC_URL``, sending as the operator key in ``CHAIN_OPERATOR_KEY``, with the contract
  addresses from ``CHAIN_ESCROW_ADDRESS``/``CHAIN_TOKEN_ADDRESS`` or from ``chain_deploy``.

The server never holds users' keys. It signs as the operator, and as the marketplace's own
custody account (``CHAIN_CUSTODY_KEY``; an account of its own on the in-process chain), which
holds in the escrow what clients who pay by card have in their balances (see ``leases.escrow.chain``).
"""

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from chain import transactions
from chain.compiler import load_artifact
from chain.evm import (
    CUSTODY_ACCOUNT,
    DEMO_CLIENT_ACCOUNT,
    contract_at,
    embedded_account,
    embedded_key,
    embedded_web3,
    eth_tester_of,
)
from chain.models import ChainEvent, ChainTransaction, ContractDeployment, IndexerCursor, NonceCursor

# Gas a settlement of one lease may need beyond its estimate (see EscrowClient.settle).
SETTLE_EXTRA_GAS = 40_000
UNLIMITED = 2**256 - 1


@dataclass(frozen=True)
class OnChainLease:
    client: str
    provider: str
    price_per_hour: int
    balance: int
    settled_until: int
    open: bool
    fee_bps: int  # the platform's share of its settlements, fixed when it opened


@dataclass(frozen=True)
class Settled:
    """A lease's settlement in a ``settle`` transaction (``log_index`` tells apart those of one)."""

    lease_id: int
    amount: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class Closed:
    """A lease closed on chain: what its provider was paid and its client refunded at the close."""

    lease_id: int
    paid: int
    refunded: int
    tx_hash: str


@dataclass(frozen=True)
class ToppedUp:
    lease_id: int
    amount: int
    tx_hash: str


class EscrowClient:
    """The operator's view of the escrow: write calls are recorded ChainTransactions; what a
    transaction did comes back as typed results (``Settled``, ``Closed``, ``ToppedUp``)."""

    def __init__(
        self,
        *,
        w3: Web3,
        operator: LocalAccount,
        escrow: Contract,
        token: Contract,
        policy: transactions.SendPolicy | None = None,
        custody: LocalAccount | None = None,
        treasury: LocalAccount | None = None,
        verifier: LocalAccount | None = None,
    ) -> None:
        self.w3 = w3
        self.operator = operator
        self.escrow = escrow
        self.token = token
        self.policy = policy or transactions.SendPolicy()
        self.custody = custody
        self.treasury = treasury  # may mint the token: development chains only
        self.verifier = verifier  # may slash providers' stakes

    @cached_property
    def chain_id(self) -> int:
        return self.w3.eth.chain_id

    def _send(
        self, call: Any, *, kind: str, reference: str = "", extra_gas: int = 0, account: LocalAccount | None = None
    ) -> ChainTransaction:
        return transactions.send(
            w3=self.w3,
            account=account or self.operator,
            call=call,
            kind=kind,
            reference=reference,
            policy=self.policy,
            extra_gas=extra_gas,
        )

    # --- writes (as the operator) ---------------------------------------------------------
    def open_lease(
        self,
        *,
        lease_id: int,
        order_id: int,
        client: str,
        provider: str,
        price_per_hour: int,
        deposit: int,
        duration_hours: int,
        deadline: int,
        signature: str,
    ) -> ChainTransaction:
        """Open a lease on the terms of the client's signed acceptance (``chain.terms.Acceptance``)."""
        terms = (price_per_hour, deposit, duration_hours, deadline)
        return self._open(self.escrow.functions.open_lease, lease_id, order_id, client, provider, terms, signature)

    def open_lease_authorized(
        self,
        *,
        lease_id: int,
        order_id: int,
        client: str,
        provider: str,
        price_per_hour: int,
        deposit: int,
        max_price_per_hour: int,
        max_deposit: int,
        expiry: int,
        signature: str,
    ) -> ChainTransaction:
        """Open a lease the auction awarded, within the client's signed ``chain.terms.Authorization``."""
        terms = (price_per_hour, deposit, max_price_per_hour, max_deposit, expiry)
        return self._open(
            self.escrow.functions.open_lease_authorized, lease_id, order_id, client, provider, terms, signature
        )

    def _open(
        self,
        function: Any,
        lease_id: int,
        order_id: int,
        client: str,
        provider: str,
        terms: tuple[int, ...],
        signature: str,
    ) -> ChainTransaction:
        """Send one of the contract's lease openings: the lease, the order, the parties, then the terms
        the client signed, then its signature."""
        call = function(
            lease_id,
            order_id,
            Web3.to_checksum_address(client),
            Web3.to_checksum_address(provider),
            *terms,
            bytes.fromhex(signature.removeprefix("0x")),
        )
        return self._send(call, kind="open_lease", reference=f"lease:{lease_id}")

    def top_up(self, *, lease_id: int, amount: int, reference: str) -> ChainTransaction:
        """Add to a lease's deposit from its client's free balance, within the operator allowance."""
        return self._send(self.escrow.functions.top_up(lease_id, amount), kind="top_up", reference=reference)

    def settle(self, *, amounts: dict[int, int]) -> ChainTransaction:
        ids = sorted(amounts)
        call = self.escrow.functions.settle(ids, [amounts[i] for i in ids])
        # Each lease may pay where the estimate paid nothing: a provider's claimable balance and
        # the lease's written from zero (two fresh storage writes, 20,000 gas each, at most).
        return self._send(
            call,
            kind="settle",
            reference=f"leases:{ids[0]}-{ids[-1]}:{len(ids)}",
            extra_gas=SETTLE_EXTRA_GAS * len(ids),
        )

    def close_lease(self, *, lease_id: int, final_amount: int) -> ChainTransaction:
        call = self.escrow.functions.close_lease(lease_id, final_amount)
        return self._send(call, kind="close_lease", reference=f"lease:{lease_id}", extra_gas=SETTLE_EXTRA_GAS)

    # --- the verifier ----------------------------------------------------------------------
    def slash(self, *, provider: str, amount: int, beneficiary: str, reference: str) -> int:
        """As the verifier: move up to ``amount`` of the provider's stake (unstaking included) to the
        beneficiary's free balance in the escrow. Returns what the contract took."""
        if self.verifier is None:
            raise transactions.ChainUnavailable("No verifier account: set CHAIN_VERIFIER_KEY.")
        call = self.escrow.functions.slash(
            Web3.to_checksum_address(provider), amount, Web3.to_checksum_address(beneficiary)
        )
        record = self._send(call, kind="slash", reference=reference, account=self.verifier)
        if record.status != ChainTransaction.Status.CONFIRMED:
            raise transactions.ChainReverted(f"slashing {provider} did not confirm ({record.tx_hash})")
        return self.slashed_in(record.tx_hash)

    def slashed_in(self, tx_hash: str) -> int:
        """What a confirmed slash transaction took."""
        return sum(int(e["args"]["amount"]) for e in self._events(tx_hash, self.escrow.events.Slashed))

    # --- what a transaction did ---------------------------------------------------------------
    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound as exc:
            raise transactions.ChainUnavailable(f"{tx_hash} is not mined yet") from exc

    def sender_of(self, tx_hash: str) -> str:
        """Who signed a mined transaction (the receipt names it)."""
        return Web3.to_checksum_address(self._receipt(tx_hash)["from"])

    def _events(self, tx_hash: str, event: Any) -> list[Any]:
        """The events of one kind a transaction emitted (none if it reverted)."""
        receipt = self._receipt(tx_hash)
        return list(event().process_receipt(receipt, errors=DISCARD)) if receipt["status"] == 1 else []

    def settled_in(self, tx_hash: str) -> list[Settled]:
        """The settlements a ``settle`` transaction made (none if it reverted)."""
        return [
            Settled(int(e["args"]["lease_id"]), int(e["args"]["amount"]), tx_hash, int(e["logIndex"]))
            for e in self._events(tx_hash, self.escrow.events.Settled)
        ]

    def closed_in(self, tx_hash: str) -> Closed | None:
        """The close a ``close_lease`` transaction made, or None if it made none."""
        closed = self._events(tx_hash, self.escrow.events.LeaseClosed)
        if not closed:
            return None
        args = closed[0]["args"]
        return Closed(int(args["lease_id"]), int(args["paid"]), int(args["refunded"]), tx_hash)

    def topped_up_in(self, tx_hash: str) -> ToppedUp | None:
        """The top-up a ``top_up`` transaction made, or None if it made none (it reverted).
        Raises ChainUnavailable while it is not mined."""
        topped_up = self._events(tx_hash, self.escrow.events.LeaseToppedUp)
        if not topped_up:
            return None
        args = topped_up[0]["args"]
        return ToppedUp(int(args["lease_id"]), int(args["amount"]), tx_hash)

    # --- the custody account ---------------------------------------------------------------
    @property
    def custody_address(self) -> str | None:
        return self.custody.address if self.custody else None

    def _custody_send(self, call: Any, *, kind: str, reference: str, account: LocalAccount | None = None) -> None:
        record = self._send(call, kind=kind, reference=reference, account=account or self.custody)
        if record.status != ChainTransaction.Status.CONFIRMED:
            raise transactions.ChainReverted(f"{kind} did not confirm ({record.tx_hash})")

    def custody_deposit(self, *, amount: int, reference: str) -> None:
        """As the custody account: move ``amount`` of its tokens into its free balance in the escrow,
        which the operator may lock into leases. On a development chain the token's owner mints
        what the account lacks; elsewhere the marketplace sends it the tokens first."""
        custody = self._custody()
        address = custody.address
        held = self.token.functions.balanceOf(address).call()
        if held < amount:
            if self.treasury is None:
                raise transactions.ChainReverted(
                    f"the custody account {address} holds {held} tokens and needs {amount}: send it tokens"
                )
            mint = self.token.functions.mint(address, amount - held)
            self._custody_send(mint, kind="custody_mint", reference=reference, account=self.treasury)
        if self.token.functions.allowance(address, self.escrow.address).call() < amount:
            approve = self.token.functions.approve(self.escrow.address, UNLIMITED)
            self._custody_send(approve, kind="custody_approve", reference=reference)
        self._custody_send(self.escrow.functions.deposit(amount), kind="custody_deposit", reference=reference)

    def custody_allow(self, *, amount: int, reference: str) -> None:
        """As the custody account: let the operator lock exactly ``amount`` of its free balance into a
        lease (one lease's deposit, or one top-up), and nothing beyond it: the allowance is set, not
        added to. Skipped when it already is ``amount``."""
        address = self._custody().address
        if self.escrow.functions.operator_allowance(address).call() != amount:
            allow = self.escrow.functions.approve_operator(amount)
            self._custody_send(allow, kind="custody_allow", reference=reference)

    def operator_allowance(self, address: str) -> int:
        return self.escrow.functions.operator_allowance(Web3.to_checksum_address(address)).call()

    def custody_withdraw(self, *, amount: int, reference: str) -> None:
        """As the custody account: take ``amount`` of its free balance out of the escrow, back to its
        own tokens (money the card processor gave back to a card holder)."""
        self._custody()
        self._custody_send(self.escrow.functions.withdraw(amount), kind="custody_withdraw", reference=reference)

    def _custody(self) -> LocalAccount:
        if self.custody is None:
            raise transactions.ChainUnavailable("No custody account: set CHAIN_CUSTODY_KEY.")
        return self.custody

    # --- reads ---------------------------------------------------------------------------
    def lease(self, lease_id: int) -> OnChainLease:
        return OnChainLease(*self.escrow.functions.lease(lease_id).call())

    def balance_of(self, address: str) -> int:
        return self.escrow.functions.balance_of(Web3.to_checksum_address(address)).call()

    def claimable(self, address: str) -> int:
        return self.escrow.functions.claimable(Web3.to_checksum_address(address)).call()

    def slashable(self, address: str) -> int:
        """A provider's stake the verifier can reach: staked, and waiting to be unstaked."""
        checksum = Web3.to_checksum_address(address)
        return self.escrow.functions.stake_of(checksum).call() + self.escrow.functions.unstaking(checksum).call()


def set_platform_fee(*, w3: Web3, owner: LocalAccount, escrow: Contract, fee_bps: int, recipient: str) -> None:
    """As the escrow's owner: the platform's share of settlements of leases opened from now on."""
    call = escrow.functions.set_fee(fee_bps, Web3.to_checksum_address(recipient))
    record = transactions.send(w3=w3, account=owner, call=call, kind="set_fee", reference=f"fee:{fee_bps}")
    if record.status != ChainTransaction.Status.CONFIRMED:
        raise transactions.ChainReverted(f"setting the platform fee did not confirm ({record.tx_hash})")


def deploy_contracts(
    *,
    w3: Web3,
    owner: LocalAccount,
    operator: str,
    verifier: str,
    token_address: str | None,
    unstake_delay: int,
    fee_bps: int = 0,
    fee_recipient: str = "",
) -> tuple[Contract, Contract]:
    """Deploy the escrow (and DevUSD when no token address is given), set the platform fee when
    there is one (paid to ``fee_recipient``, the owner by default); record where they live."""
    chain_id = w3.eth.chain_id
    deployed = {}
    if token_address is None:
        artifact = load_artifact("DevUSD")
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        record = transactions.send(w3=w3, account=owner, call=factory.constructor("Dev USD", "DUSD"), kind="deploy")
        token_address = record.to
        deployed["DevUSD"] = record
    artifact = load_artifact("Escrow")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    call = factory.constructor(
        Web3.to_checksum_address(token_address),
        Web3.to_checksum_address(operator),
        Web3.to_checksum_address(verifier),
        unstake_delay,
    )
    deployed["Escrow"] = transactions.send(w3=w3, account=owner, call=call, kind="deploy")
    for name, record in deployed.items():
        ContractDeployment.objects.update_or_create(
            chain_id=chain_id,
            name=name,
            defaults={"address": record.to, "tx_hash": record.tx_hash, "block_number": record.block_number},
        )
    escrow = contract_at(w3, "Escrow", deployed["Escrow"].to)
    if fee_bps:
        set_platform_fee(w3=w3, owner=owner, escrow=escrow, fee_bps=fee_bps, recipient=fee_recipient or owner.address)
    return escrow, contract_at(w3, "DevUSD", token_address)


_embedded_lock = threading.Lock()
_embedded: dict[str, Any] = {}


def _embedded_client() -> EscrowClient:
    with _embedded_lock:
        if "client" not in _embedded:
            w3 = embedded_web3()
            # The chain is new: whatever the database remembers of an earlier one is stale.
            chain_id = w3.eth.chain_id
            for model in (ChainEvent, IndexerCursor, NonceCursor, ContractDeployment, ChainTransaction):
                model.objects.filter(**{"chain_id": chain_id}).delete()
            keys = eth_tester_of(w3).backend.account_keys
            owner = Account.from_key(keys[0].to_bytes())
            operator = Account.from_key(keys[1].to_bytes())
            verifier = Account.from_key(keys[2].to_bytes())
            escrow, token = deploy_contracts(
                w3=w3,
                owner=owner,
                operator=operator.address,
                verifier=verifier.address,
                token_address=None,
                unstake_delay=settings.CHAIN_UNSTAKE_DELAY_SECONDS,
                fee_bps=settings.PLATFORM_FEE_BPS,
                fee_recipient=settings.PLATFORM_FEE_RECIPIENT,
            )
            custody = Account.from_key(keys[CUSTODY_ACCOUNT].to_bytes())
            client = EscrowClient(
                w3=w3, operator=operator, escrow=escrow, token=token, custody=custody, treasury=owner, verifier=verifier
            )
            if settings.CHAIN_EMBEDDED_DEMO_FUNDS:
                _fund_demo_wallet(client, owner=owner.address, amount=settings.CHAIN_EMBEDDED_DEMO_FUNDS)
            _embedded["client"] = client
        return _embedded["client"]


def _fund_demo_wallet(client: EscrowClient, *, owner: str, amount: int) -> None:
    """Demo only: the demo client's wallet buys DevUSD, deposits it and lets the operator lock it,
    as a real client would from its own wallet."""
    wallet = client.w3.eth.accounts[DEMO_CLIENT_ACCOUNT]
    for call, sender in (
        (client.token.functions.mint(wallet, amount), owner),
        (client.token.functions.approve(client.escrow.address, 2**256 - 1), wallet),
        (client.escrow.functions.deposit(amount), wallet),
        (client.escrow.functions.approve_operator(amount), wallet),
    ):
        client.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))


def _rpc_client() -> EscrowClient:
    if not settings.CHAIN_RPC_URL or not settings.CHAIN_OPERATOR_KEY:
        raise transactions.ChainUnavailable("CHAIN_BACKEND=rpc needs CHAIN_RPC_URL and CHAIN_OPERATOR_KEY.")
    w3 = Web3(Web3.HTTPProvider(settings.CHAIN_RPC_URL, request_kwargs={"timeout": 10}))
    chain_id = transactions.with_retries(
        lambda: w3.eth.chain_id,
        policy=transactions.SendPolicy(retries=settings.CHAIN_RPC_RETRIES),
        what="chain id",
    )
    known = dict(ContractDeployment.objects.filter(chain_id=chain_id).values_list("name", "address"))
    escrow_address = settings.CHAIN_ESCROW_ADDRESS or known.get("Escrow")
    token_address = settings.CHAIN_TOKEN_ADDRESS or known.get("DevUSD")
    if not escrow_address or not token_address:
        raise transactions.ChainUnavailable(
            f"No escrow deployed on chain {chain_id}: run manage.py chain_deploy or set CHAIN_ESCROW_ADDRESS."
        )
    return EscrowClient(
        w3=w3,
        operator=Account.from_key(settings.CHAIN_OPERATOR_KEY),
        escrow=contract_at(w3, "Escrow", escrow_address),
        token=contract_at(w3, "DevUSD", token_address),
        custody=Account.from_key(settings.CHAIN_CUSTODY_KEY) if settings.CHAIN_CUSTODY_KEY else None,
        # chain_deploy makes the operator the verifier unless told otherwise
        verifier=Account.from_key(settings.CHAIN_VERIFIER_KEY or settings.CHAIN_OPERATOR_KEY),
        policy=transactions.SendPolicy(
            receipt_timeout=settings.CHAIN_RECEIPT_TIMEOUT_SECONDS, retries=settings.CHAIN_RPC_RETRIES
        ),
    )


def escrow_domain() -> tuple[int, str]:
    """The escrow's EIP-712 domain, its chain id and address, for signing and checking terms. From
    the chain this process runs, or the deployment records (the web process does not reach the
    in-process chain of the worker, and need not reach a node); the node itself as a last resort."""
    if settings.CHAIN_BACKEND == "embedded" and "client" in _embedded:
        running: EscrowClient = _embedded["client"]
        return running.chain_id, running.escrow.address
    records = ContractDeployment.objects.filter(name="Escrow").order_by("-id")
    if settings.CHAIN_ESCROW_ADDRESS:
        records = records.filter(address__iexact=settings.CHAIN_ESCROW_ADDRESS)
    record = records.first()
    if record is not None:
        return record.chain_id, Web3.to_checksum_address(record.address)
    client = escrow_client()
    return client.chain_id, client.escrow.address


def custody_key() -> str | None:
    """The custody account's key, from the settings (the in-process chain's account on it)."""
    if settings.CHAIN_BACKEND == "embedded":
        return embedded_key(CUSTODY_ACCOUNT)
    return settings.CHAIN_CUSTODY_KEY or None


def custody_address() -> str | None:
    """The custody account's address from the settings alone: no chain is reached (the web process
    cannot see the in-process one). None: clients without a wallet cannot be funded."""
    if settings.CHAIN_BACKEND == "embedded":
        return embedded_account(CUSTODY_ACCOUNT)
    return Account.from_key(settings.CHAIN_CUSTODY_KEY).address if settings.CHAIN_CUSTODY_KEY else None


def escrow_client(*, start: bool = True) -> EscrowClient:
    """The configured backend's client.

    The embedded chain lives in the process that started it (the Celery worker under make run).
    ``start=False`` refuses to start a new, empty one: a command run from another process must
    not look at (and reset the records of) a chain that is not the worker's.
    """
    if settings.CHAIN_BACKEND == "embedded":
        if not start and "client" not in _embedded:
            raise transactions.ChainUnavailable(
                "The in-process chain lives inside the Celery worker and cannot be reached from another "
                "process; run a node (CHAIN_BACKEND=rpc, e.g. Anvil) to inspect the chain from outside."
            )
        return _embedded_client()
    if settings.CHAIN_BACKEND == "rpc":
        return _rpc_client()
    raise transactions.ChainUnavailable(f"Unknown CHAIN_BACKEND {settings.CHAIN_BACKEND!r}.")
