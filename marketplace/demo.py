"""Demo data for ``make run``: a client with a demo balance and a provider with GPUs.

Only this seed creates money out of thin air, from the ``demo_faucet`` external account.
"""

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from chain.evm import DEMO_CLIENT_ACCOUNT, DEMO_PROVIDER_ACCOUNT, embedded_account
from chain.models import Wallet
from core import services as accounts
from core.models import ApiToken, TokenScope, User
from leases import ledger
from leases.models import LedgerAccount
from providers import services as providers
from providers.models import Provider

DEMO_BALANCE = 1_000_000_000  # $1,000
DEMO_PASSWORD = "demo-password"  # noqa: S105 - demo accounts only
DEMO_TOKEN_NAME = "demo"  # noqa: S105 - a label


@dataclass(frozen=True)
class Demo:
    client: User
    provider: Provider
    client_token: str
    provider_token: str


def _user(username: str, *, is_client: bool = False, is_provider: bool = False) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = accounts.user_create(
            username=username, password=DEMO_PASSWORD, is_client=is_client, is_provider=is_provider
        )
    return user


@transaction.atomic
def seed_demo() -> Demo:
    client = _user("demo-client", is_client=True)
    provider_user = _user("demo-provider", is_provider=True)
    provider = Provider.objects.filter(user=provider_user).first() or providers.provider_register(
        user=provider_user,
        name="Demo GPU Cloud",
        region="eu-central-1",
        attributes={"tier": "datacenter", "network": "25 Gbit/s"},
    )
    providers.inventory_report(
        provider=provider,
        gpus=[
            providers.GpuReport(model="NVIDIA H100 80GB HBM3", total=8, free=8, price_per_gpu_hour=2_400_000),
            providers.GpuReport(model="a100-sxm-80gb", total=4, free=4, price_per_gpu_hour=1_400_000),
            providers.GpuReport(model="NVIDIA GeForce RTX 4090", total=8, free=6, price_per_gpu_hour=350_000),
        ],
        cpu_cores=providers.HostReport(total=256, free=240),
        memory_gib=providers.HostReport(total=2048, free=1900),
        storage_gib=providers.HostReport(total=30_000, free=28_000),
    )
    if settings.ESCROW_BACKEND == "chain":
        # Money lives in the escrow contract: the demo users get wallets on the in-process
        # chain, and the client's balance arrives from its wallet's deposit, not from a faucet.
        if settings.CHAIN_BACKEND == "embedded":
            for user, index in ((client, DEMO_CLIENT_ACCOUNT), (provider_user, DEMO_PROVIDER_ACCOUNT)):
                Wallet.objects.get_or_create(address=embedded_account(index), defaults={"user": user})
        return _issue_tokens(client, provider, provider_user)
    balance = ledger.user_account(user=client, kind=LedgerAccount.Kind.CLIENT_BALANCE)
    if balance.balance < DEMO_BALANCE:
        ledger.deposit(
            user=client,
            amount=DEMO_BALANCE - balance.balance,
            key=f"demo:topup:{uuid.uuid4()}",
            memo="Demo balance",
        )
    return _issue_tokens(client, provider, provider_user)


def _issue_tokens(client: User, provider: Provider, provider_user: User) -> Demo:
    for user in (client, provider_user):
        for token in ApiToken.objects.filter(user=user, name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
            accounts.token_revoke(user=user, token_id=token.pk)
    client_token = accounts.token_issue(user=client, name=DEMO_TOKEN_NAME, scope=TokenScope.CLIENT)
    provider_token = accounts.token_issue(user=provider_user, name=DEMO_TOKEN_NAME, scope=TokenScope.PROVIDER)
    return Demo(
        client=client, provider=provider, client_token=client_token.secret, provider_token=provider_token.secret
    )
