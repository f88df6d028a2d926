"""The demo seed and the configuration it writes for the demo provider's agent (what `make run` starts)."""

import stat
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from eth_account import Account

from agent.config import load
from agent.inventory import declared
from chain.evm import DEMO_PROVIDER_ACCOUNT, embedded_account
from chain.models import Wallet
from marketplace.demo import DEMO_GPUS, DEMO_NODE
from providers.models import Provider

pytestmark = pytest.mark.django_db


def test_the_demo_agent_configuration_is_valid_and_its_key_signs_for_the_demo_provider(
    tmp_path: Path, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.ESCROW_BACKEND = "ledger"
    path = tmp_path / "agent" / "agent.yaml"
    args = ["--quiet", "--agent-config", str(path), "--marketplace-url", "http://127.0.0.1:8123"]
    call_command("seed_demo", *args, "--docker-network", "none", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the provider token
    cfg = load(path, environ={})
    assert cfg.marketplace_url == "http://127.0.0.1:8123" and cfg.docker.network == "none" and not cfg.docker.gpus
    assert cfg.pricing.per_gpu_hour == {model: price for model, _, price in DEMO_GPUS}
    report = declared(cfg.declared_inventory).report()
    assert {line["model"]: line["total"] for line in report["gpus"]} == {m: n for m, n, _ in DEMO_GPUS}
    assert report["nodes"][0]["name"] == DEMO_NODE
    provider = Provider.objects.get(name="Demo GPU Cloud")
    # the seed lists what the agent will report: the same node, GPUs and prices
    assert provider.nodes[0]["name"] == DEMO_NODE
    assert {g.gpu_model_id: g.price_per_gpu_hour for g in provider.gpus.all()} == cfg.pricing.per_gpu_hour
    # usage reports are signed by a key linked to the demo provider; seeding again keeps it
    address = Account.from_key(Path(cfg.signing_key_file).read_text().strip()).address
    assert Wallet.objects.get(address=address).user == provider.user
    call_command("seed_demo", *args, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Account.from_key(Path(load(path, environ={}).signing_key_file).read_text().strip()).address == address
    assert yaml.safe_load(path.read_text())["token"] != cfg.token  # a fresh token each seed


def test_on_the_in_process_chain_the_agent_signs_with_the_demo_providers_wallet(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ESCROW_BACKEND, settings.CHAIN_BACKEND = "chain", "embedded"
    path = tmp_path / "agent.yaml"
    call_command("seed_demo", "--quiet", "--agent-config", str(path), stdout=open("/dev/null", "w"))  # noqa: SIM115
    key = Path(load(path, environ={}).signing_key_file).read_text().strip()
    assert Account.from_key(key).address == embedded_account(DEMO_PROVIDER_ACCOUNT)
