"""The README's curl walk-through, run verbatim against a live server."""

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from django.db import connection

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
    worker = None
    if escrow == "chain":
        from leases.tasks import sync_chain

        # the worker's first periodic sync brings the demo deposit into the ledger a little after
        # the start: the walk-through waits for it before it accepts a bid
        def sync_as_the_worker() -> None:
            try:
                sync_chain()
            finally:
                connection.close()  # this thread's own

        worker = threading.Timer(3, sync_as_the_worker)
        worker.start()
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
    if worker is not None:
        worker.join()
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


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq (CI installs them)")
@pytest.mark.django_db(transaction=True)
def test_every_wait_in_the_walkthrough_gives_up_in_time(live_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Run before the demo deposit arrives (and it never does here), the walk-through stops at its
    first wait with a message, rather than accepting into a 402 and looping on ``leases//``."""
    script = walkthrough_script().replace("wait_for 60 ", "wait_for 2 ")
    assert not re.search(r"^\s*(until|while)\b", script, re.M)  # every loop is wait_for's, which ends
    result = subprocess.run(
        ["bash", "-uo", "pipefail", "-c", script],  # as pasted into a terminal: no -e
        cwd=tmp_path,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "BASE": live_server.url,
            "CLIENT_TOKEN": "x",
            "PROVIDER_TOKEN": "y",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "gave up waiting for the demo deposit after 2s" in result.stderr
    assert "gave up waiting for the escrow to fund the lease after 2s" in result.stderr
