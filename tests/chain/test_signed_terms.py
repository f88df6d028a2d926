"""A lease opened on the terms its client signed (EIP-712), on the in-process EVM: the operator can
open only what the client accepted or authorized, for that provider, price and deposit, before the
deadline, once per order, on this chain and this contract."""

from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

from chain import terms as t
from chain.evm import embedded_key
from tests.chain.conftest import USD, Chain
from tests.chain.test_escrow import PRICE, deposit, lease, reverts

CLIENT_KEY = embedded_key(3)  # the in-process chain's account 3 is ``chain.client``
OTHER_KEY = embedded_key(5)  # and 5 is ``chain.other``
ORDER = 41


def funded(chain: Chain, amount: int = 10 * USD) -> None:
    deposit(chain, chain.client, amount)
    chain.tx(chain.escrow.functions.approve_operator(amount), chain.client)


def acceptance(chain: Chain, **changes: object) -> t.Acceptance:
    values = {
        "order": ORDER,
        "provider": chain.provider,
        "pricePerHour": PRICE,
        "deposit": 2 * PRICE,
        "durationHours": 2,
        "deadline": chain.now() + 600,
        **changes,
    }
    return t.Acceptance(**values)  # type: ignore[arg-type]  # the test's own values


def signature(chain: Chain, terms: t.Acceptance | t.Authorization, *, key: str = CLIENT_KEY, **domain: object) -> str:
    where = {"chain_id": chain.w3.eth.chain_id, "contract": chain.escrow.address, **domain}
    return t.sign(terms, key=key, **where)  # type: ignore[arg-type]  # chain_id and contract


def open_signed(chain: Chain, signed: t.Acceptance, sig: str, *, lease_id: int = 1, **actual: object):  # type: ignore[no-untyped-def]
    """The operator opens a lease: ``actual`` overrides what it sends, to try terms nobody signed."""
    sent = {
        "provider": signed.provider,
        "price": signed.pricePerHour,
        "deposit": signed.deposit,
        "duration": signed.durationHours,
        "deadline": signed.deadline,
        "client": chain.client,
        "order": signed.order,
        **actual,
    }
    call = chain.escrow.functions.open_lease(
        lease_id,
        sent["order"],
        sent["client"],
        sent["provider"],
        sent["price"],
        sent["deposit"],
        sent["duration"],
        sent["deadline"],
        bytes.fromhex(sig.removeprefix("0x")),
    )
    return chain.tx(call, sent.get("sender", chain.operator))


def test_the_contract_and_the_server_agree_on_what_is_signed(chain: Chain) -> None:
    terms = acceptance(chain)
    message = encode_typed_data(
        full_message=t.typed_data(terms, chain_id=chain.w3.eth.chain_id, contract=chain.escrow.address)
    )
    struct_hash = Web3.keccak(
        Web3.keccak(
            text="Acceptance(uint256 order,address provider,uint256 pricePerHour,uint256 deposit,"
            "uint256 durationHours,uint256 deadline)"
        )
        + b"".join(
            v.to_bytes(32, "big") if isinstance(v, int) else bytes(12) + bytes.fromhex(v[2:])
            for v in (
                terms.order,
                terms.provider,
                terms.pricePerHour,
                terms.deposit,
                terms.durationHours,
                terms.deadline,
            )
        )
    )
    digest = chain.escrow.functions.terms_digest(struct_hash).call()
    assert digest == Web3.keccak(b"\x19" + message.version + message.header + message.body)
    _fields, name, version, chain_id, contract, _salt, _extensions = chain.escrow.functions.eip712Domain().call()
    assert (name, version, chain_id, contract) == (t.DOMAIN_NAME, "1", chain.w3.eth.chain_id, chain.escrow.address)
    assert t.signer_of(terms, signature(chain, terms), chain_id=chain_id, contract=contract) == chain.client


def test_the_operator_opens_a_lease_on_exactly_the_terms_the_client_accepted(chain: Chain) -> None:
    funded(chain)
    terms = acceptance(chain)
    open_signed(chain, terms, signature(chain, terms))
    opened = lease(chain)
    assert (opened["client"], opened["provider"], opened["price"], opened["balance"]) == (
        chain.client,
        chain.provider,
        PRICE,
        2 * PRICE,
    )
    assert chain.escrow.functions.order_lease(chain.client, ORDER).call() == 1


def test_terms_nobody_signed_are_refused(chain: Chain) -> None:
    """Another payee, a higher price or deposit, another order, another client: each refused."""
    funded(chain)
    terms = acceptance(chain)
    sig = signature(chain, terms)
    for changed in (
        {"provider": chain.other},  # the operator's own address instead of the provider's
        {"price": PRICE + 1},
        {"deposit": 2 * PRICE + 1},
        {"duration": 3},
        {"order": ORDER + 1},
        {"deadline": terms.deadline + 3600},
    ):
        with reverts("not signed by the client"):
            open_signed(chain, terms, sig, **changed)
    deposit(chain, chain.other, 10 * USD)
    chain.tx(chain.escrow.functions.approve_operator(10 * USD), chain.other)
    with reverts("not signed by the client"):  # the client's signature does not spend another's money
        open_signed(chain, terms, sig, client=chain.other)
    assert not lease(chain)["open"]


def test_a_signature_for_another_chain_contract_or_signer_is_refused(chain: Chain) -> None:
    funded(chain)
    terms = acceptance(chain)
    for sig in (
        signature(chain, terms, chain_id=chain.w3.eth.chain_id + 1),
        signature(chain, terms, contract=chain.token.address),
        signature(chain, terms, key=OTHER_KEY),
    ):
        with reverts("not signed by the client"):
            open_signed(chain, terms, sig)


def test_a_malformed_expired_or_replayed_signature_is_refused(chain: Chain) -> None:
    funded(chain, 20 * USD)
    terms = acceptance(chain)
    sig = signature(chain, terms)
    with reverts("invalid signature"):
        open_signed(chain, terms, "0x" + "11" * 65)
    with reverts("invalid signature"):
        open_signed(chain, terms, "0x" + "00" * 65)
    with reverts("not the operator"):
        open_signed(chain, terms, sig, sender=chain.client)
    expired = acceptance(chain, deadline=chain.now() - 1)
    with reverts("signature expired"):
        open_signed(chain, expired, signature(chain, expired))
    open_signed(chain, terms, sig)
    with reverts("order already opened"):  # the same signature again, under another lease id
        open_signed(chain, terms, sig, lease_id=2)
    assert not lease(chain, 2)["open"]


def test_the_deadline_award_stays_within_the_standing_authorization(chain: Chain) -> None:
    funded(chain, 20 * USD)
    authorized = t.Authorization(order=ORDER, maxPricePerHour=PRICE, maxDeposit=4 * PRICE, expiry=chain.now() + 600)
    sig = bytes.fromhex(signature(chain, authorized).removeprefix("0x"))

    def award(price: int, amount: int, *, lease_id: int = 1, expiry: int = authorized.expiry, order: int = ORDER):  # type: ignore[no-untyped-def]
        call = chain.escrow.functions.open_lease_authorized(
            lease_id, order, chain.client, chain.provider, price, amount, PRICE, 4 * PRICE, expiry, sig
        )
        return chain.tx(call, chain.operator)

    with reverts("price above the authorized maximum"):
        award(PRICE + 1, 2 * PRICE)
    with reverts("deposit above the authorized maximum"):
        award(PRICE, 4 * PRICE + 1)
    with reverts("not signed by the client"):  # ceilings raised in the call, not in the signature
        award(PRICE, 2 * PRICE, expiry=authorized.expiry + 1)
    with reverts("not signed by the client"):
        award(PRICE, 2 * PRICE, order=ORDER + 1)
    award(PRICE // 2, 2 * (PRICE // 2))  # any provider, within the ceilings: the auction's award
    assert (lease(chain)["price"], lease(chain)["balance"]) == (PRICE // 2, PRICE)
    with reverts("order already opened"):
        award(PRICE // 2, PRICE, lease_id=2)
    chain.at(authorized.expiry + 1)
    late = t.Authorization(order=ORDER + 2, maxPricePerHour=PRICE, maxDeposit=PRICE, expiry=authorized.expiry)
    with reverts("authorization expired"):
        chain.tx(
            chain.escrow.functions.open_lease_authorized(
                3,
                late.order,
                chain.client,
                chain.provider,
                PRICE,
                PRICE,
                PRICE,
                PRICE,
                late.expiry,
                bytes.fromhex(signature(chain, late).removeprefix("0x")),
            ),
            chain.operator,
        )


def test_a_signature_the_server_checks_is_the_same_as_the_contracts() -> None:
    """``signer_of`` refuses what is not a signature rather than raising."""
    terms = t.Authorization(order=1, maxPricePerHour=1, maxDeposit=1, expiry=1)
    assert t.signer_of(terms, "0x1234", chain_id=1, contract="0x" + "11" * 20) is None
    assert t.signer_of(terms, "not hex", chain_id=1, contract="0x" + "11" * 20) is None
    key = Account.create().key.hex()
    sig = t.sign(terms, key=key, chain_id=1, contract="0x" + "11" * 20)
    assert t.signer_of(terms, sig, chain_id=1, contract="0x" + "11" * 20) == Account.from_key(key).address
    assert t.signer_of(terms, sig, chain_id=2, contract="0x" + "11" * 20) != Account.from_key(key).address
    raw = bytearray(bytes.fromhex(sig.removeprefix("0x")))  # the same signature with s flipped to n - s
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    raw[32:64] = (n - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big")
    raw[64] ^= 1
    assert t.signer_of(terms, "0x" + raw.hex(), chain_id=1, contract="0x" + "11" * 20) is None  # as the contract
