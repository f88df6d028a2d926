"""The README's curl walk-through, run verbatim against a live server."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from leases.models import Lease
from marketplace.demo import seed_demo

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough_script() -> str:
    text = README.read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S)
    assert block, "README lost its walk-through markers"
    return block.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq (CI installs them)")
@pytest.mark.parametrize("escrow", ["ledger", "chain"])
@pytest.mark.django_db(transaction=True)
def test_readme_walkthrough_runs_as_written(live_server, tmp_path: Path, settings, escrow: str) -> None:  # type: ignore[no-untyped-def]
    from chain import adapter

    settings.ESCROW_BACKEND = escrow
    if escrow == "chain":  # as make run: the escrow contract on the in-process EVM
        settings.CHAIN_BACKEND = "embedded"
        settings.CHAIN_EMBEDDED_DEMO_FUNDS = 1_000_000_000
        adapter._embedded.clear()
    demo = seed_demo()
    if escrow == "chain":
        from leases.tasks import sync_chain

        sync_chain()  # what the worker's first periodic sync does: the demo deposit reaches the ledger
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
        cwd=tmp_path,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "BASE": live_server.url,
            "CLIENT_TOKEN": demo.client_token,
            "PROVIDER_TOKEN": demo.provider_token,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lease = Lease.objects.get()
    assert lease.status == Lease.Status.CLOSED
    assert lease.deposit == 36_000_000
    assert lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    assert '"status": "closed"' in result.stdout
    assert "Demo GPU Cloud" in result.stdout
    if escrow == "chain":
        from leases.escrow.chain import reconcile

        assert lease.open_tx_hash and lease.close_tx_hash
        assert reconcile() == []
        adapter._embedded.clear()
