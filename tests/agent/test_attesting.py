"""The agent attests its GPUs on its own where the operator set an attestation command: here the
command is a program that signs NRAS-format tokens with the test service's key (a real host runs
NVIDIA's attestation SDK instead: scripts/nvidia_attest.py)."""

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.attesting import due
from agent.config import ConfigError, validate
from agent.runner import Agent
from core import services as accounts
from core.models import TokenScope
from providers.models import ProviderGpu
from tests import factories as f
from trust.models import Attestation

pytestmark = pytest.mark.django_db(transaction=True)
SIGNER = Path(__file__).resolve().parents[1] / "trust" / "nras.py"


def agent_for(live_server, provider, command: list[str]) -> Agent:  # type: ignore[no-untyped-def]
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    declared = {
        "gpus": [{"model": "h100-sxm-80gb", "count": 2}],
        "cpu_cores": 64,
        "memory_gib": 512,
        "storage_gib": 4000,
    }
    config = {
        "marketplace_url": live_server.url,
        "token": token,
        "prover": "off",
        "attestation_command": command,
        "declared_inventory": declared,
    }
    return Agent(validate(config), push=False)


def test_the_agent_attests_its_gpus_and_attests_again_only_when_due(live_server, nras, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "nras-key.pem"
    key.write_text(nras.key_pem())
    monkeypatch.setenv("NRAS_TEST_KEY", str(key))
    monkeypatch.setenv("NRAS_TEST_GPUS", "2")
    provider = f.provider(gpus={})
    agent = agent_for(live_server, provider, [sys.executable, str(SIGNER)])
    agent.step()  # inventory, then attestation
    [record] = Attestation.objects.filter(provider=provider)
    assert record.status == "attested" and record.gpu_model_id == "h100-sxm-80gb" and len(record.gpus) == 2
    assert ProviderGpu.objects.get(provider=provider).attested
    agent.schedule.due = lambda name, now: True  # every job due again
    agent.step()
    assert Attestation.objects.filter(provider=provider).count() == 1  # still valid: not asked again


def test_a_command_that_fails_sends_nothing(live_server, nras) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={})
    agent_for(live_server, provider, [sys.executable, "-c", "import sys; sys.exit(3)"]).step()
    [record] = Attestation.objects.filter(provider=provider)
    assert record.status == "issued"  # the nonce was asked for, no token came: it expires on its own
    assert not ProviderGpu.objects.get(provider=provider).attested


def test_when_an_attestation_is_due() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert due(None, now)
    assert not due({"status": "attested", "valid_until": (now + timedelta(days=3)).isoformat()}, now)
    assert due({"status": "attested", "valid_until": (now + timedelta(hours=3)).isoformat()}, now)
    assert not due({"status": "rejected", "finished_at": (now - timedelta(minutes=5)).isoformat()}, now)
    assert due({"status": "rejected", "finished_at": (now - timedelta(hours=2)).isoformat()}, now)
    assert due({"status": "issued"}, now)
    with pytest.raises(ConfigError, match="attestation_command"):
        validate({"marketplace_url": "http://127.0.0.1:8000", "token": "x", "attestation_command": "nvidia-attest"})
