"""The agent answers the marketplace's proof-of-GPU checks: an honest agent's GPUs become verified on
their own. This host has no GPU, so the agent computes with NumPy (``prover: cpu``) challenges
sized for a CPU; on a GPU host the same loop runs on CUDA tensors."""

import pytest

from agent.config import validate
from agent.proving import CudaDevice, cuda_provers, provers
from agent.runner import Agent
from core import services as accounts
from core.models import TokenScope
from marketplace import services as market
from protocol.proof import protocol
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
    from agent.config import ConfigError

    with pytest.raises(ConfigError, match="prover"):
        validate({"marketplace_url": "http://127.0.0.1:8000", "token": "x", "prover": "quantum"})


def test_the_gpu_prover_picks_the_leases_own_cards_or_free_ones_of_the_model() -> None:
    devices = [
        CudaDevice("h100-sxm-80gb", "GPU-a", "cuda:0"),
        CudaDevice("h100-sxm-80gb", "GPU-b", "cuda:1"),
        CudaDevice("h100-sxm-80gb", "GPU-c", "cuda:2"),
        CudaDevice("a100-sxm-80gb", "GPU-d", "cuda:3"),
    ]
    prover_for = cuda_provers(devices, busy=lambda: {"GPU-a"}, backend=lambda name: name)
    assert prover_for("h100-sxm-80gb", 2, None) == ["cuda:1", "cuda:2"]  # free ones
    assert prover_for("h100-sxm-80gb", 3, None) is None  # one is leased: not enough free
    assert prover_for("h100-sxm-80gb", 2, ["GPU-a", "GPU-c"]) == ["cuda:0", "cuda:2"]  # the lease's, busy or not
    assert prover_for("h100-sxm-80gb", 1, []) is None  # a lease whose cards the runtime does not know
    assert prover_for("h100-sxm-80gb", 1, ["GPU-d"]) is None  # not the claimed model
    assert prover_for("l4-24gb", 1, None) is None


def test_a_spot_check_of_a_lease_is_answered_on_all_its_cards(live_server) -> None:  # type: ignore[no-untyped-def]
    from trust import services

    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    ProviderGpu.objects.filter(provider=provider).update(verified=True)
    client = f.client_user()
    order = f.order(client, resources={"gpu_count": 2})
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 5_000_000).pk)
    check = services.check_issue(
        provider=provider, gpu_model_id="h100-sxm-80gb", reason=GpuCheck.Reason.LEASE, lease_id=lease.pk, cards=2
    )
    assert check.params["rows"] == 2 * 1024  # two cards' work in one card's time
    agent_for(live_server, provider, "cpu").step()
    check.refresh_from_db()
    assert check.status == "passed" and check.lease_id == lease.pk
    assert services.measured_int8_tops(check) == pytest.approx(
        2 * protocol.Params.from_dict(check.params).multiply_accumulates / 2 / check.elapsed_seconds / 1e12
    )


def test_a_host_without_nvidias_driver_is_not_made_to_import_pytorch() -> None:
    """Finding no GPU must not cost an agent's start the seconds PyTorch takes to import."""
    import subprocess
    import sys

    from agent.proving import NVIDIA_CONTROL_DEVICE

    if NVIDIA_CONTROL_DEVICE.exists():
        pytest.skip("this host has NVIDIA's driver: PyTorch is how its cards are found")
    probe = "import sys; from agent.proving import cuda_devices; print(cuda_devices(), 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["None", "False"]
