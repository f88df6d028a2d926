"""The agent answers the marketplace's proof-of-GPU checks: an honest agent's GPUs become verified on
their own. This host has no GPU, so the agent computes with NumPy (``prover: cpu``) challenges
sized for a CPU; on a GPU host the same loop runs on CUDA tensors."""

import pytest

from core import services as accounts
from core.models import TokenScope
from providers.agent.config import validate
from providers.agent.proving import provers
from providers.agent.runner import Agent
from providers.models import ProviderGpu
from tests import factories as f
from trust.models import GpuCheck

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def cpu_sized_challenges(settings):  # type: ignore[no-untyped-def]
    settings.PROOF_WIDTH, settings.PROOF_ROUNDS, settings.PROOF_LEAF_ROWS = 64, 4, 128
    settings.PROOF_ROWS_PER_SECOND = {"h100-sxm-80gb": 2000.0, "a100-sxm-80gb": 2000.0}
    settings.PROOF_TARGET_SECONDS = 0.5
    settings.PROOF_ALLOWANCE_SECONDS = 10.0  # a loaded test machine is not a slow GPU


def agent_for(live_server, provider, prover: str) -> Agent:  # type: ignore[no-untyped-def]
    """An agent for ``provider`` that declares the GPUs it was given (this host has none)."""
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    declared = {
        "gpus": [
            {"model": row.gpu_model_id, "count": row.total} for row in ProviderGpu.objects.filter(provider=provider)
        ],
        "cpu_cores": 64,
        "memory_gib": 512,
        "storage_gib": 4000,
    }
    config = {"marketplace_url": live_server.url, "token": token, "prover": prover, "declared_inventory": declared}
    return Agent(validate(config), push=False)


def test_an_honest_agents_gpus_become_verified_on_their_own(live_server) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8, "a100-sxm-80gb": 4})
    agent = agent_for(live_server, provider, "cpu")
    agent.step()  # one pass of the loop: inventory, then the checks it was asked
    checks = GpuCheck.objects.filter(provider=provider)
    assert sorted((c.gpu_model_id, c.status) for c in checks) == [
        ("a100-sxm-80gb", "passed"),
        ("h100-sxm-80gb", "passed"),
    ]
    assert all(row.verified and row.verified_int8_tops for row in ProviderGpu.objects.filter(provider=provider))
    agent.step()  # nothing more to prove
    assert GpuCheck.objects.filter(provider=provider).count() == 2


def test_an_agent_without_a_gpu_prover_answers_no_checks(live_server) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    agents = [agent_for(live_server, provider, choice) for choice in ("off", "auto")]  # auto: no CUDA here
    for agent in agents:
        agent.step()
    assert provers("off") is None and provers("auto") is None
    assert not GpuCheck.objects.filter(provider=provider).exists()  # it does not even ask
    assert not ProviderGpu.objects.get(provider=provider).verified


def test_the_prover_setting_is_checked() -> None:
    from providers.agent.config import ConfigError

    with pytest.raises(ConfigError, match="prover"):
        validate({"marketplace_url": "http://127.0.0.1:8000", "token": "x", "prover": "quantum"})
