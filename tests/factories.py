"""Test data built through the real services, so tests exercise the same paths as the API."""

import itertools
from datetime import datetime
from typing import Any

from rest_framework.test import APIClient

from core import services as accounts
from core.models import TokenScope, User
from ledger import services as ledger
from marketplace import services as market
from marketplace.models import Bid, Order
from marketplace.spec import OrderSpecSerializer
from providers import services as providers
from providers.models import Provider, ProviderGpu

_seq = itertools.count(1)

USD = 1_000_000


def user(*, client: bool = False, provider: bool = False, username: str | None = None) -> User:
    return accounts.user_create(username=username or f"user{next(_seq)}", is_client=client, is_provider=provider)


def api(u: User, scope: str) -> APIClient:
    issued = accounts.token_issue(user=u, name="test", scope=scope)
    api_client = APIClient()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    api_client.user = u  # type: ignore[attr-defined]
    return api_client


def client_user(*, balance: int = 1000 * USD) -> User:
    u = user(client=True)
    if balance:
        ledger.deposit(user=u, amount=balance, key=f"test:deposit:{u.pk}:{next(_seq)}")
    return u


def provider(
    *,
    gpus: dict[str, int] | None = None,
    reputation: int = 500,
    region: str = "eu-central-1",
    verified: bool = False,
    cpu: int = 256,
    memory: int = 2048,
    storage: int = 50_000,
) -> Provider:
    u = user(provider=True)
    p = providers.provider_register(user=u, name=f"Provider {u.pk}", region=region)
    gpus = {"h100-sxm-80gb": 8} if gpus is None else gpus
    providers.inventory_report(
        provider=p,
        gpus=[providers.GpuReport(model=m, total=n, free=n) for m, n in gpus.items()],
        cpu_cores=providers.HostReport(total=cpu, free=cpu),
        memory_gib=providers.HostReport(total=memory, free=memory),
        storage_gib=providers.HostReport(total=storage, free=storage),
    )
    if reputation != 500:
        Provider.objects.filter(pk=p.pk).update(reputation=reputation)
    if verified:
        ProviderGpu.objects.filter(provider=p).update(verified=True)
    p.refresh_from_db()
    return p


def spec_payload(**overrides: Any) -> dict:
    payload: dict[str, Any] = {
        "name": "test job",
        "workload": {"image": "ghcr.io/acme/trainer:1.4", "command": ["python", "train.py"]},
        "resources": {
            "gpu_count": 1,
            "gpu_models": ["h100-sxm-80gb"],
            "cpu_cores": 8,
            "memory_gib": 64,
            "storage_gib": 100,
        },
        "duration_hours": 2,
        "max_price_per_hour": 5 * USD,
        "pricing_rule": "first_price",
    }
    for key, value in overrides.items():
        if key in ("workload", "resources"):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    return payload


def order(client: User, *, now: datetime | None = None, **overrides: Any) -> Order:
    serializer = OrderSpecSerializer(data=spec_payload(**overrides))
    serializer.is_valid(raise_exception=True)
    return market.order_create(client=client, spec=serializer.validated_data["spec"], now=now)


def bid(p: Provider, o: Order, price: int, *, now: datetime | None = None, gpu_model: str | None = None) -> Bid:
    return market.bid_place(user=p.user, order_id=o.pk, price_per_hour=price, now=now, gpu_model=gpu_model)


CLIENT = TokenScope.CLIENT
PROVIDER = TokenScope.PROVIDER
READ_ONLY = TokenScope.READ_ONLY


def usage(lease: Any, *, seconds: int, run_seconds: int | None = None, after: int = 0) -> Any:
    """A usage report for ``lease``: ``seconds`` long, ``after`` seconds from its start, the workload
    running ``run_seconds`` of it (all of it by default). Its signature is checked by the API tests;
    here it is a stored fact."""
    from datetime import timedelta

    from leases.models import UsageReport

    start = lease.started_at.replace(microsecond=0) + timedelta(seconds=after)
    run = seconds if run_seconds is None else run_seconds
    return UsageReport.objects.create(
        lease=lease,
        period_start=start,
        period_end=start + timedelta(seconds=seconds),
        gpu_seconds=run * lease.gpu_count,
        run_seconds=run,
        signer="0x" + "0" * 40,
        signature="0x" + "0" * 130,
    )
