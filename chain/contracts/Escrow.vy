# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title GPU Market escrow
@notice Holds clients' balances and per-lease deposits in one ERC-20 (a 6-decimal stablecoin,
        so amounts equal the marketplace's micro-dollars), providers' earnings and stakes.

        Trust model. The operator (the marketplace) can:
          - lock a client's free balance into a lease, only on terms the client signed (EIP-712:
            the exact terms it accepted, or within the ceilings of the standing authorization it
            signed with its order), once per order, and only up to the allowance the client gave
            it (`approve_operator`);
          - settle a lease to its provider, never more than price_per_hour * elapsed // 3600
            since the last settlement, and never more than the lease holds;
          - close a lease with a last capped settlement of its reported usage, refunding the
            rest to the client.
        The client or the provider may close its lease at any time; that pays nothing beyond
        what settlement has already paid (usage, not time, pays a provider).
        The operator cannot withdraw anyone's balance, cannot pay a provider beyond the agreed
        rate, and cannot stop a client from closing its own lease or withdrawing its free
        balance. The owner sets the platform fee (at most MAX_FEE_BPS basis points of each
        settlement, to a fee recipient); a lease keeps the fee it was opened with, so changing
        the fee never touches a running lease. The verifier can slash a provider's stake (including stake waiting to be
        unstaked) to a beneficiary's free balance. The owner manages roles and can pause new
        leases; pausing never blocks closing, withdrawing, claiming or unstaking.

        Every state-changing function follows checks-effects-interactions, and the contract
        is non-reentrant throughout. Loops run only over arrays the caller sizes.
"""

from ethereum.ercs import IERC20
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator as eip712

initializes: ecdsa
initializes: eip712

exports: eip712.eip712Domain

MAX_BATCH: constant(uint256) = 1000
SECONDS_PER_HOUR: constant(uint256) = 3600
MAX_AMOUNT: constant(uint256) = 2**128 - 1
MASK_160: constant(uint256) = 2**160 - 1
MASK_64: constant(uint256) = 2**64 - 1
MASK_16: constant(uint256) = 2**16 - 1
BPS: constant(uint256) = 10000
MAX_FEE_BPS: constant(uint256) = 2000
# What a client signs (EIP-712, in this contract's domain: its name, version, chain and address).
# An acceptance: the exact terms of one lease, as the client clicked them.
ACCEPTANCE_TYPEHASH: constant(bytes32) = keccak256(
    "Acceptance(uint256 order,address provider,uint256 pricePerHour,uint256 deposit,uint256 durationHours,uint256 deadline)"
)
# A standing authorization, signed with the order: the auction may award it to any provider at a
# price and deposit within these ceilings, until the expiry.
AUTHORIZATION_TYPEHASH: constant(bytes32) = keccak256(
    "Authorization(uint256 order,uint256 maxPricePerHour,uint256 maxDeposit,uint256 expiry)"
)


struct Lease:
    client: address
    provider: address
    price_per_hour: uint256
    balance: uint256
    settled_until: uint256
    open: bool
    fee_bps: uint256


event Deposited:
    account: indexed(address)
    amount: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

event OperatorApproved:
    client: indexed(address)
    amount: uint256

event LeaseOpened:
    lease_id: indexed(uint256)
    client: indexed(address)
    provider: indexed(address)
    price_per_hour: uint256
    deposit: uint256
    fee_bps: uint256

event LeaseToppedUp:
    lease_id: indexed(uint256)
    amount: uint256

event Settled:
    lease_id: indexed(uint256)
    provider: indexed(address)
    amount: uint256
    fee: uint256
    settled_until: uint256

event LeaseClosed:
    lease_id: indexed(uint256)
    closed_by: indexed(address)
    paid: uint256
    refunded: uint256

event Claimed:
    provider: indexed(address)
    amount: uint256

event Staked:
    provider: indexed(address)
    amount: uint256

event UnstakeRequested:
    provider: indexed(address)
    amount: uint256
    available_at: uint256

event Unstaked:
    provider: indexed(address)
    amount: uint256

event Slashed:
    provider: indexed(address)
    amount: uint256
    beneficiary: indexed(address)

event RoleChanged:
    role: String[16]
    account: indexed(address)

event PausedChanged:
    paused: bool

event FeeChanged:
    fee_bps: uint256
    recipient: indexed(address)


token: public(immutable(IERC20))
unstake_delay: public(immutable(uint256))

owner: public(address)
operator: public(address)
verifier: public(address)
paused: public(bool)
fee_bps: public(uint256)
fee_recipient: public(address)

balance_of: public(HashMap[address, uint256])
operator_allowance: public(HashMap[address, uint256])
claimable: public(HashMap[address, uint256])
stake_of: public(HashMap[address, uint256])
unstaking: public(HashMap[address, uint256])
unstake_available_at: public(HashMap[address, uint256])
# A lease is packed into two storage words that settlement reads and writes, and its client apart
# (only opening, topping up and closing need it): settling a lease touches two slots, not six.
#   lease_terms[id] = provider | settled_until << 160 | open << 224 | fee_bps << 225
#   lease_money[id] = balance | price_per_hour << 128
lease_client: HashMap[uint256, address]
lease_terms: HashMap[uint256, uint256]
lease_money: HashMap[uint256, uint256]
total_held: public(uint256)
# client -> order -> the lease its signature opened (0: none yet): one lease per signed order, so a
# signature is never used twice
order_lease: public(HashMap[address, HashMap[uint256, uint256]])


@deploy
def __init__(token_: IERC20, operator_: address, verifier_: address, unstake_delay_: uint256):
    assert token_.address != empty(address), "token is the zero address"
    token = token_
    unstake_delay = unstake_delay_
    self.owner = msg.sender
    self.operator = operator_
    self.verifier = verifier_
    ecdsa.__init__()
    eip712.__init__("GPU Market Escrow", "1")


# --- clients ---------------------------------------------------------------------------------


@external
def deposit(amount: uint256):
    """Move `amount` tokens from the caller (who approved this contract) to its free balance."""
    assert amount > 0, "amount is zero"
    self.balance_of[msg.sender] += amount
    self.total_held += amount
    log Deposited(account=msg.sender, amount=amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "transfer failed"


@external
def withdraw(amount: uint256):
    """Send `amount` of the caller's free balance back to it."""
    assert amount > 0, "amount is zero"
    assert self.balance_of[msg.sender] >= amount, "insufficient balance"
    self.balance_of[msg.sender] -= amount
    self.total_held -= amount
    log Withdrawn(account=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "transfer failed"


@external
def approve_operator(amount: uint256):
    """Let the operator lock up to `amount` of the caller's balance into leases."""
    self.operator_allowance[msg.sender] = amount
    log OperatorApproved(client=msg.sender, amount=amount)


# --- leases ----------------------------------------------------------------------------------


@external
def open_lease(
    lease_id: uint256,
    order_id: uint256,
    client: address,
    provider: address,
    price_per_hour: uint256,
    deposit: uint256,
    duration_hours: uint256,
    deadline: uint256,
    signature: Bytes[65],
):
    """Operator: move `deposit` from the client's free balance into a new lease, on exactly the
    terms the client signed (an `Acceptance`): this provider, this price and deposit, before the
    deadline, once per order. There is no other way to open a lease for a client without its
    signature, except within its standing authorization (`open_lease_authorized`)."""
    assert msg.sender == self.operator, "not the operator"
    assert block.timestamp <= deadline, "signature expired"
    terms: bytes32 = keccak256(
        abi_encode(ACCEPTANCE_TYPEHASH, order_id, provider, price_per_hour, deposit, duration_hours, deadline)
    )
    self._check_signed(client, order_id, terms, signature)
    self.order_lease[client][order_id] = lease_id
    self._open(lease_id, client, provider, price_per_hour, deposit)


@external
def open_lease_authorized(
    lease_id: uint256,
    order_id: uint256,
    client: address,
    provider: address,
    price_per_hour: uint256,
    deposit: uint256,
    max_price_per_hour: uint256,
    max_deposit: uint256,
    expiry: uint256,
    signature: Bytes[65],
):
    """Operator: open the lease the auction awarded, within the standing authorization the client
    signed with the order (an `Authorization`): any provider, at most that price and deposit,
    before the expiry, once per order."""
    assert msg.sender == self.operator, "not the operator"
    assert block.timestamp <= expiry, "authorization expired"
    assert price_per_hour <= max_price_per_hour, "price above the authorized maximum"
    assert deposit <= max_deposit, "deposit above the authorized maximum"
    terms: bytes32 = keccak256(abi_encode(AUTHORIZATION_TYPEHASH, order_id, max_price_per_hour, max_deposit, expiry))
    self._check_signed(client, order_id, terms, signature)
    self.order_lease[client][order_id] = lease_id
    self._open(lease_id, client, provider, price_per_hour, deposit)


@view
@external
def terms_digest(terms: bytes32) -> bytes32:
    """The EIP-712 digest a client signs for a struct hash, in this contract's domain."""
    return eip712._hash_typed_data_v4(terms)


@view
@internal
def _check_signed(client: address, order_id: uint256, terms: bytes32, signature: Bytes[65]):
    assert self.order_lease[client][order_id] == 0, "order already opened"
    signer: address = ecdsa._recover_sig(eip712._hash_typed_data_v4(terms), signature)
    assert signer == client, "not signed by the client"


@internal
def _open(lease_id: uint256, client: address, provider: address, price_per_hour: uint256, deposit: uint256):
    assert msg.sender == self.operator, "not the operator"
    assert not self.paused, "paused"
    assert lease_id != 0, "lease id is zero"
    assert self.lease_client[lease_id] == empty(address), "lease exists"
    assert client != empty(address) and provider != empty(address), "zero address"
    assert client != provider, "client is the provider"
    assert price_per_hour > 0, "price is zero"
    assert deposit > 0, "deposit is zero"
    assert price_per_hour <= MAX_AMOUNT and deposit <= MAX_AMOUNT, "amount too large"
    assert self.operator_allowance[client] >= deposit, "operator allowance exceeded"
    assert self.balance_of[client] >= deposit, "insufficient balance"
    self.operator_allowance[client] -= deposit
    self.balance_of[client] -= deposit
    self.lease_client[lease_id] = client
    self._store(
        lease_id,
        Lease(
            client=client,
            provider=provider,
            price_per_hour=price_per_hour,
            balance=deposit,
            settled_until=block.timestamp,
            open=True,
            fee_bps=self.fee_bps,
        ),
    )
    log LeaseOpened(
        lease_id=lease_id,
        client=client,
        provider=provider,
        price_per_hour=price_per_hour,
        deposit=deposit,
        fee_bps=self.fee_bps,
    )


@external
def top_up(lease_id: uint256, amount: uint256):
    """The lease's client (or the operator, within the client's allowance) adds to its deposit."""
    lease: Lease = self._load(lease_id)
    assert lease.open, "lease not open"
    assert amount > 0, "amount is zero"
    assert lease.balance + amount <= MAX_AMOUNT, "amount too large"
    client: address = self.lease_client[lease_id]
    if msg.sender == self.operator:
        assert self.operator_allowance[client] >= amount, "operator allowance exceeded"
        self.operator_allowance[client] -= amount
    else:
        assert msg.sender == client, "not the lease's client"
    assert self.balance_of[client] >= amount, "insufficient balance"
    self.balance_of[client] -= amount
    lease.balance += amount
    self._store(lease_id, lease)
    log LeaseToppedUp(lease_id=lease_id, amount=amount)


@view
@internal
def _load(lease_id: uint256) -> Lease:
    """The lease without its client (a separate slot, read only where needed)."""
    terms: uint256 = self.lease_terms[lease_id]
    money: uint256 = self.lease_money[lease_id]
    return Lease(
        client=empty(address),
        provider=convert(convert(terms & MASK_160, uint160), address),
        price_per_hour=money >> 128,
        balance=money & MAX_AMOUNT,
        settled_until=(terms >> 160) & MASK_64,
        open=(terms >> 224) & 1 == 1,
        fee_bps=(terms >> 225) & MASK_16,
    )


@internal
def _store(lease_id: uint256, lease: Lease):
    open_bit: uint256 = 0
    if lease.open:
        open_bit = 1
    self.lease_terms[lease_id] = (
        convert(convert(lease.provider, uint160), uint256)
        | (lease.settled_until << 160)
        | (open_bit << 224)
        | (lease.fee_bps << 225)
    )
    self.lease_money[lease_id] = lease.balance | (lease.price_per_hour << 128)


@view
@external
def lease(lease_id: uint256) -> Lease:
    """A lease as one record (all zero for an unknown id)."""
    lease: Lease = self._load(lease_id)
    lease.client = self.lease_client[lease_id]
    return lease


@view
@internal
def _cap(lease: Lease) -> uint256:
    elapsed: uint256 = 0
    if block.timestamp > lease.settled_until:
        elapsed = block.timestamp - lease.settled_until
    return min(lease.price_per_hour * elapsed // SECONDS_PER_HOUR, lease.balance)


@internal
def _settle(lease_id: uint256, amount: uint256) -> (uint256, uint256):
    """Pay the provider; returns (paid, the platform's fee out of it), the fee still to credit."""
    lease: Lease = self._load(lease_id)
    assert lease.open, "lease not open"
    paid: uint256 = min(amount, self._cap(lease))
    # the platform's share, rounded down: the provider gets the rest
    fee: uint256 = paid * lease.fee_bps // BPS
    lease.balance -= paid
    lease.settled_until = block.timestamp
    self._store(lease_id, lease)
    self.claimable[lease.provider] += paid - fee
    log Settled(lease_id=lease_id, provider=lease.provider, amount=paid, fee=fee, settled_until=block.timestamp)
    return paid, fee


@internal
def _credit_fee(fee: uint256):
    if fee > 0:
        self.claimable[self.fee_recipient] += fee


@view
@external
def settleable(lease_id: uint256) -> uint256:
    """The most a settlement of this lease could pay right now."""
    lease: Lease = self._load(lease_id)
    if not lease.open:
        return 0
    return self._cap(lease)


@external
def settle(lease_ids: DynArray[uint256, MAX_BATCH], amounts: DynArray[uint256, MAX_BATCH]) -> uint256:
    """Operator: pay providers for a batch of leases, each amount capped on chain; returns the total."""
    assert msg.sender == self.operator, "not the operator"
    assert len(lease_ids) == len(amounts), "length mismatch"
    total: uint256 = 0
    fees: uint256 = 0
    for i: uint256 in range(len(lease_ids), bound=MAX_BATCH):
        # A lease its client closed meanwhile is skipped, so it cannot block the batch.
        if (self.lease_terms[lease_ids[i]] >> 224) & 1 == 1:
            paid: uint256 = 0
            fee: uint256 = 0
            paid, fee = self._settle(lease_ids[i], amounts[i])
            total += paid
            fees += fee
    self._credit_fee(fees)  # once for the batch
    return total


@external
def close_lease(lease_id: uint256, final_amount: uint256):
    """Close a lease: the rest of its balance back to the client's free balance.

    Usage, not time, pays a provider. The operator, which receives the agent's usage reports,
    settles `final_amount` (capped at the time cap and the balance) as the last settlement. The
    client or the provider closing on their own pay nothing beyond what settlement has already
    paid (`final_amount` is ignored): without a usage report nothing here says what was used.
    """
    lease: Lease = self._load(lease_id)
    assert lease.open, "lease not open"
    client: address = self.lease_client[lease_id]
    paid: uint256 = 0
    if msg.sender == self.operator:
        fee: uint256 = 0
        paid, fee = self._settle(lease_id, final_amount)
        self._credit_fee(fee)
        lease = self._load(lease_id)
    else:
        assert msg.sender == client or msg.sender == lease.provider, "not a party to the lease"
    refund: uint256 = lease.balance
    lease.balance = 0
    lease.open = False
    self._store(lease_id, lease)
    self.balance_of[client] += refund
    log LeaseClosed(lease_id=lease_id, closed_by=msg.sender, paid=paid, refunded=refund)


# --- providers -------------------------------------------------------------------------------


@external
def claim() -> uint256:
    """Send the caller its earnings."""
    amount: uint256 = self.claimable[msg.sender]
    assert amount > 0, "nothing to claim"
    self.claimable[msg.sender] = 0
    self.total_held -= amount
    log Claimed(provider=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "transfer failed"
    return amount


@external
def stake(amount: uint256):
    """Lock collateral that the verifier can slash when the provider's GPUs fail verification."""
    assert amount > 0, "amount is zero"
    self.stake_of[msg.sender] += amount
    self.total_held += amount
    log Staked(provider=msg.sender, amount=amount)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "transfer failed"


@external
def request_unstake(amount: uint256):
    """Start the unstaking delay for `amount`; it stays slashable until it is withdrawn."""
    assert amount > 0, "amount is zero"
    assert self.stake_of[msg.sender] >= amount, "insufficient stake"
    self.stake_of[msg.sender] -= amount
    self.unstaking[msg.sender] += amount
    available_at: uint256 = block.timestamp + unstake_delay
    self.unstake_available_at[msg.sender] = available_at
    log UnstakeRequested(provider=msg.sender, amount=amount, available_at=available_at)


@external
def unstake() -> uint256:
    """Withdraw stake whose unstaking delay has passed."""
    amount: uint256 = self.unstaking[msg.sender]
    assert amount > 0, "nothing to unstake"
    assert block.timestamp >= self.unstake_available_at[msg.sender], "unstake delay not over"
    self.unstaking[msg.sender] = 0
    self.total_held -= amount
    log Unstaked(provider=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "transfer failed"
    return amount


# --- verifier and owner ----------------------------------------------------------------------


@external
def slash(provider: address, amount: uint256, beneficiary: address) -> uint256:
    """Verifier: move up to `amount` of a provider's stake to a beneficiary's free balance."""
    assert msg.sender == self.verifier, "not the verifier"
    assert beneficiary != empty(address), "zero address"
    assert amount > 0, "amount is zero"
    from_stake: uint256 = min(amount, self.stake_of[provider])
    from_unstaking: uint256 = min(amount - from_stake, self.unstaking[provider])
    taken: uint256 = from_stake + from_unstaking
    assert taken > 0, "nothing to slash"
    self.stake_of[provider] -= from_stake
    self.unstaking[provider] -= from_unstaking
    self.balance_of[beneficiary] += taken
    log Slashed(provider=provider, amount=taken, beneficiary=beneficiary)
    return taken


@external
def set_operator(account: address):
    assert msg.sender == self.owner, "not the owner"
    self.operator = account
    log RoleChanged(role="operator", account=account)


@external
def set_verifier(account: address):
    assert msg.sender == self.owner, "not the owner"
    self.verifier = account
    log RoleChanged(role="verifier", account=account)


@external
def transfer_ownership(account: address):
    assert msg.sender == self.owner, "not the owner"
    assert account != empty(address), "zero address"
    self.owner = account
    log RoleChanged(role="owner", account=account)


@external
def set_fee(fee_bps_: uint256, recipient: address):
    """Owner: the platform's share of every settlement of leases opened from now on, in basis
    points (at most MAX_FEE_BPS), and where it goes (claimable there, like a provider's earnings)."""
    assert msg.sender == self.owner, "not the owner"
    assert fee_bps_ <= MAX_FEE_BPS, "fee too high"
    assert recipient != empty(address), "zero address"
    self.fee_bps = fee_bps_
    self.fee_recipient = recipient
    log FeeChanged(fee_bps=fee_bps_, recipient=recipient)


@external
def set_paused(paused_: bool):
    """Owner: stop (or resume) opening new leases. Nothing else is ever paused."""
    assert msg.sender == self.owner, "not the owner"
    self.paused = paused_
    log PausedChanged(paused=paused_)
