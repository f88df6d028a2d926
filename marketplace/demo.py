"""Demo data for ``make run``: a client with a demo balance and a provider with GPUs, and the
configuration of the demo provider's agent (which ``make run`` starts).

Only this seed creates money out of thin air, from the ``demo_faucet`` external account.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.db import transaction
from eth_account import Account

from chain.models import Wallet
from core import services as accounts
from core.models import ApiToken, TokenScope, User
from leases.escrow import escrow
from providers import services as providers
from providers.models import Provider

DEMO_BALANCE = 1_000_000_000  # $1,000
DEMO_PASSWORD = "demo-password"  # noqa: S105 - demo accounts only
DEMO_TOKEN_NAME = "demo"  # noqa: S105 - a label
# The demo provider's one machine: what the seed lists, and what its agent declares and asks.
DEMO_NODE = "demo-node-1"
DEMO_GPUS = (  # catalog id, count, asking price per GPU-hour (micro-dollars)
    ("h100-sxm-80gb", 8, 2_400_000),
    ("a100-sxm-80gb", 4, 1_400_000),
    ("rtx-4090-24gb", 8, 350_000),
)
DEMO_PRICES = {model: price for model, _, price in DEMO_GPUS}
DEMO_HOST = {"cpu_cores": 256, "memory_gib": 2048, "storage_gib": 30_000}


@dataclass(frozen=True)
class Demo:
    client: User
    provider: Provider
    client_token: str
    provider_token: str
    funds: str  # where the client's money is, in words


def _user(username: str, *, is_client: bool = False, is_provider: bool = False) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = accounts.user_create(
            username=username, password=DEMO_PASSWORD, is_client=is_client, is_provider=is_provider
        )
    return user


DEMO_ADMIN = "demo-admin"  # the operator of the demo: the Django admin at /admin/


def _admin() -> User:
    admin = User.objects.filter(username=DEMO_ADMIN).first()
    return admin or User.objects.create_superuser(username=DEMO_ADMIN, email="", password=DEMO_PASSWORD)


@transaction.atomic
def seed_demo() -> Demo:
    _admin()
    client = _user("demo-client", is_client=True)
    provider_user = _user("demo-provider", is_provider=True)
    provider = Provider.objects.filter(user=provider_user).first() or providers.provider_register(
        user=provider_user,
        name="Demo GPU Cloud",
        region="eu-central-1",
        attributes={"tier": "datacenter", "network": "25 Gbit/s"},
    )
    gpus = [providers.GpuReport(model=model, total=count, free=count) for model, count, _ in DEMO_GPUS]
    hosts = {name: providers.HostReport(total=amount, free=amount) for name, amount in DEMO_HOST.items()}
    providers.inventory_report(
        provider=provider,
        gpus=gpus,
        **hosts,
        nodes=[providers.NodeReport(name=DEMO_NODE, gpus=gpus, **hosts)],
        prices=DEMO_PRICES,
    )
    funds = escrow().demo_fund(client=client, provider_user=provider_user, amount=DEMO_BALANCE)
    return _issue_tokens(client, provider, provider_user, funds=funds)


def _issue_tokens(client: User, provider: Provider, provider_user: User, *, funds: str) -> Demo:
    for user in (client, provider_user):
        for token in ApiToken.objects.filter(user=user, name=DEMO_TOKEN_NAME, revoked_at__isnull=True):
            accounts.token_revoke(user=user, token_id=token.pk)
    client_token = accounts.token_issue(user=client, name=DEMO_TOKEN_NAME, scope=TokenScope.CLIENT)
    provider_token = accounts.token_issue(user=provider_user, name=DEMO_TOKEN_NAME, scope=TokenScope.PROVIDER)
    return Demo(
        client=client,
        provider=provider,
        client_token=client_token.secret,
        provider_token=provider_token.secret,
        funds=funds,
    )


def demo_agent_config(
    demo: Demo, *, path: Path, marketplace_url: str, docker_network: str = "bridge", container_prefix: str = ""
) -> Path:
    """Write the demo provider's agent configuration (and its signing key) next to ``path``.

    The agent declares the demo's GPUs instead of discovering them (a development machine seldom
    has eight H100s), bids by the demo's prices, and runs leases as Docker containers without
    GPUs, publishing their ports on 127.0.0.1. Usage reports are signed with a key linked to the
    demo provider: on the in-process chain, its wallet's own key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key_file = path.with_name("signing-key.hex")
    existing = key_file.read_text().strip() if key_file.exists() else ""
    key = escrow().demo_signing_key() or existing or Account.create().key.hex()
    address = Account.from_key(key).address
    wallet, _ = Wallet.objects.get_or_create(address=address, defaults={"user": demo.provider.user})
    if wallet.user_id != demo.provider.user_id:
        raise ValueError(f"{key_file} belongs to another account's wallet: remove it and seed again.")
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    # the agent's configuration file (agent/config.py reads it; tests/marketplace/test_demo.py
    # loads what this writes through it): the marketplace writes it as text, importing no agent code
    text = yaml.safe_dump(
        {
            "marketplace_url": marketplace_url,
            "token": demo.provider_token,
            "signing_key_file": str(key_file),
            "state_dir": str(path.with_name("state")),
            "pricing": {"per_gpu_hour": dict(DEMO_PRICES)},
            "docker": {
                "network": docker_network,
                "host_address": "127.0.0.1",
                "gpus": False,
                **({"name_prefix": container_prefix} if container_prefix else {}),
            },
            "declared_inventory": {
                "gpus": [{"model": model, "count": count} for model, count, _ in DEMO_GPUS],
                "node": DEMO_NODE,
                **DEMO_HOST,
            },
        },
        sort_keys=False,
    )
    path.write_text(text)
    os.chmod(path, 0o600)  # it holds the provider token
    return path
