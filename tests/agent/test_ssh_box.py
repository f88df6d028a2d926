"""The SSH box, end to end: a client adds its key on the account, rents a box, and a real ``ssh``
client logs into the real container the Docker runtime started, over the loopback address, with
that key (the container published on a network made for tenants, with no capabilities)."""

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from agent.client import MarketplaceClient
from agent.lifecycle import reconcile_leases
from agent.runtimes.docker_runtime import DockerRuntime
from core import services as accounts
from core.models import TokenScope
from leases.models import Lease
from marketplace import services as market
from tests import factories as f
from tests.agent.images import CONTAINERS, SSH_IMAGE, our_containers, ssh_box_image
from tests.factories import USD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("ssh"), reason="needs an OpenSSH client"),
]


@pytest.fixture
def tenants_network(engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A network of this run's own for tenants, as a provider makes one: a bridge on a /24 of
    198.18.0.0/15 (the benchmarking range: no private range, no route out), its ports published
    on the host's loopback. Another run's network is never touched; a taken range, another tried."""
    from docker.errors import APIError

    name = f"{CONTAINERS}net"
    start = sum(name.encode()) % 512
    for step in range(512):
        block = (start + step) % 512
        subnet = f"198.{18 + block // 256}.{block % 256}.0/24"
        try:
            network = engine.networks.create(name, driver="bridge", ipam=_ipam(subnet))
            break
        except APIError as exc:
            if "overlap" not in str(exc).lower():
                raise
    else:  # pragma: no cover - 512 runs at once
        pytest.skip("no free /24 in 198.18.0.0/15 for a test network")
    try:
        yield name
    finally:
        network.remove()


def _ipam(subnet: str):  # type: ignore[no-untyped-def]
    from docker.types import IPAMConfig, IPAMPool

    return IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])


def test_a_client_logs_into_its_ssh_box_with_its_account_key(  # type: ignore[no-untyped-def]
    live_server, engine, tenants_network: str, tmp_path: Path
) -> None:
    missing = ssh_box_image(engine)
    if missing:
        pytest.skip(missing)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", str(key)], check=True)
    client = f.client_user(balance=100 * USD)
    added = f.api(client, f.CLIENT).post(
        "/api/v1/account/ssh-keys/",
        {"name": "laptop", "public_key": (tmp_path / "id_ed25519.pub").read_text()},
        format="json",
    )
    assert added.status_code == 201
    provider = f.provider()
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    order = f.order(
        client,
        # as the SSH box template fills it: the image starts its server; USER_NAME names its user
        workload={
            "image": SSH_IMAGE,
            "command": [],
            "args": [],
            "ports": [2222],
            "env": [{"name": "USER_NAME", "value": "box"}],
        },
        resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1, "gpu_count": 1},
    )
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    runtime = DockerRuntime(
        client=engine,
        name_prefix=CONTAINERS,
        network=tenants_network,
        host_address="127.0.0.1",
        gpus=False,
        pull_images=False,
    )
    agent = MarketplaceClient(live_server.url, token)
    try:
        first = reconcile_leases(agent, runtime)
        lease.refresh_from_db()
        assert first.deployed == [lease.pk], lease.close_reason
        deadline = time.monotonic() + 20
        while Lease.objects.get(pk=lease.pk).status != Lease.Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
            reconcile_leases(agent, runtime)
        lease.refresh_from_db()
        assert lease.status == Lease.Status.RUNNING
        [endpoint] = lease.endpoints
        assert endpoint.startswith("127.0.0.1:")

        # the command the lease page gives its client, as typed (with the key the client holds)
        page = Client()
        page.force_login(client)
        shown = re.search(
            r'<p id="ssh-command">.*?<code>(ssh -p \d+ box@127\.0\.0\.1)</code>',
            page.get(f"/leases/{lease.pk}/").content.decode(),
        )
        assert shown, "the lease page shows no ssh command"
        typed = shown[1].split()
        command = [
            typed[0], "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "ConnectTimeout=5",
            *typed[1:], "echo hello from $(hostname) as $(id -un)",
        ]  # fmt: skip
        deadline = time.monotonic() + 20
        while True:  # the server starts within a second or two of the container
            logged_in = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if logged_in.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert logged_in.returncode == 0, logged_in.stderr
        assert logged_in.stdout.startswith("hello from ") and logged_in.stdout.strip().endswith(" as box")

        # another key is refused: only the account's keys open the box
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        refused = subprocess.run([*command[:2], str(other), *command[3:]], capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr

        f.api(client, f.CLIENT).post(f"/api/v1/leases/{lease.pk}/close/")
        assert reconcile_leases(agent, runtime).torn_down == [lease.pk]
    finally:
        for container in our_containers(engine, lease.pk):
            container.remove(force=True)
