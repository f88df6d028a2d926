"""Agent benchmarks: award → container running on Docker, and inventory of an emulated 100-node cluster.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gpumarket REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python benchmarks/agent.py [--leases 20] [--nodes 100]

1. **Award → running.** A scratch database next to DATABASE_URL's (``<name>_bench_agent``), the
   marketplace's ASGI application on uvicorn (REST and the push socket), and the agent's own loop
   (``agent.runner.Agent``) in this process with the Docker runtime and the push
   listener, as ``gpumarket-agent run`` runs it. Each round: a client accepts a bid, and the clock
   runs from the award's commit until the marketplace has the lease ``running`` (the agent heard
   the push, read the manifest, reported ``deploying``, started the container and reported
   ``running``). The image is present (built locally, as in the tests); containers use network
   ``none``. This host has no GPUs, so the agent's inventory heartbeat is held back (it would
   report zero GPUs and the next award would find no capacity) and containers get no GPUs.
2. **Inventory.** ``KubernetesRuntime.inventory_report()`` over real HTTP against the emulated
   API (kmock, as in the tests) holding ``--nodes`` GPU nodes and four pods on each.

Needs PostgreSQL, Redis (the channel layer between the web server and the award) and Docker.
Prints Markdown for ``benchmarks/RESULTS.md``; raw numbers go to ``benchmarks/out/agent.json``.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from benchmarks.auction import prepare_django, scratch_database  # noqa: E402

PRODUCTS = [("NVIDIA-H100-80GB-HBM3", 81559), ("NVIDIA-A100-SXM4-80GB", 81920), ("NVIDIA-L40S", 46068)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def inventory_benchmark(nodes: int, runs: int) -> dict:
    from agent.runtimes.kubernetes_runtime import KubernetesRuntime
    from tests.agent.kube import Cluster, running_status

    with Cluster() as cluster:
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for index in range(nodes):
            product, memory = PRODUCTS[index % len(PRODUCTS)]
            cluster.add_node(f"gpu-{index:03d}", gpus=8, product=product, memory_mib=memory)
            for pod in range(4):
                cluster.set_pod(
                    f"team-{pod}",
                    f"job-{index:03d}-{pod}",
                    labels={"app": "job"},
                    node=f"gpu-{index:03d}",
                    gpus=pod % 3,
                    **running_status(started),
                )
        runtime = KubernetesRuntime(cluster.api_client())
        runtime.inventory_report()  # warm the connection pool
        times = []
        for _ in range(runs):
            begin = time.perf_counter()
            report = runtime.inventory_report()
            times.append((time.perf_counter() - begin) * 1000)
    gpus = sum(line["total"] for line in report["gpus"])
    free = sum(line["free"] for line in report["gpus"])
    return {"nodes": nodes, "pods": nodes * 4, "gpus": gpus, "free": free, "runs_ms": times}


def start_asgi(port: int):  # type: ignore[no-untyped-def]
    import uvicorn

    from config.asgi import application

    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def award_benchmark(rounds: int, port: int) -> dict:
    import docker
    from eth_account import Account

    from agent.config import validate
    from agent.runner import Agent
    from agent.runtimes.docker_runtime import DockerRuntime
    from chain.models import Wallet
    from core import services as accounts
    from core.models import TokenScope
    from leases import services as lease_services
    from leases.models import Lease
    from marketplace import services as market
    from tests import factories as f
    from tests.agent.images import IMAGE, engine_with_test_image
    from tests.factories import USD

    engine, missing = engine_with_test_image()
    if engine is None:
        sys.exit(missing)

    server = start_asgi(port)
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=provider.user, name="agent", scope=TokenScope.PROVIDER).secret
    client = f.client_user(balance=10_000 * USD)
    state = tempfile.mkdtemp(prefix="agent-bench-")
    key = Account.create()
    Path(state, "signing-key.hex").write_text(key.key.hex())
    Wallet.objects.create(user=provider.user, address=key.address)
    cfg = validate(
        {
            "marketplace_url": f"http://localhost:{port}",
            "token": token,
            "state_dir": state,
            "signing_key_file": str(Path(state, "signing-key.hex")),
        }
    )
    runtime = DockerRuntime(client=docker.from_env(), network="none", gpus=False, pull_images=False)
    agent = Agent(cfg, runtime=runtime)
    agent.schedule.next_at["inventory"] = float("inf")  # this host has no GPUs to report (see above)
    stopping = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stopping.is_set,), daemon=True)
    loop.start()
    assert agent.listener is not None and agent.listener.connected.wait(10), "the push socket did not connect"
    time.sleep(1)  # let the first passes settle
    times = []
    try:
        for _ in range(rounds):
            order = f.order(
                client,
                workload={"image": IMAGE, "command": ["sleep", "600"]},
                resources={"cpu_cores": 1, "memory_gib": 1, "storage_gib": 1},
            )
            bid = f.bid(provider, order, USD)
            lease = market.order_accept(client=client, order_id=order.pk, bid_id=bid.pk)
            begin = time.perf_counter()
            while Lease.objects.filter(pk=lease.pk, status="running").count() == 0:
                if time.perf_counter() - begin > 30:
                    raise SystemExit(f"lease {lease.pk} did not run within 30 s")
                time.sleep(0.005)
            times.append((time.perf_counter() - begin) * 1000)
            lease_services.lease_close(user=client, lease_id=lease.pk, roles={"client"})
            deadline = time.monotonic() + 30
            while lease.pk in runtime.owned() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stopping.set()
        loop.join(timeout=10)
        server.should_exit = True
        for lease_id in runtime.owned():
            runtime.teardown(lease_id)
    return {"rounds": rounds, "runs_ms": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--inventory-runs", type=int, default=20)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("needs REDIS_URL: the award and the web server talk through the Redis channel layer")
    bench_url = scratch_database(os.environ.get("DATABASE_URL", ""), suffix="_bench_agent")
    prepare_django(bench_url, CELERY_TASK_ALWAYS_EAGER="true", ALLOWED_HOSTS="localhost,127.0.0.1")

    print(f"inventory: {args.nodes} nodes, {args.inventory_runs} runs", flush=True)
    inventory = inventory_benchmark(args.nodes, args.inventory_runs)
    print(f"award → running: {args.leases} leases on Docker", flush=True)
    award = award_benchmark(args.leases, args.port)
    results = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "inventory": inventory,
        "award_to_running": award,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "agent.json").write_text(json.dumps(results, indent=2))
    runs, inv = award["runs_ms"], inventory["runs_ms"]
    print()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| award → running on Docker, p50 / p90 / max of {len(runs)} | {statistics.median(runs):.0f} / "
        f"{percentile(runs, 0.9):.0f} / {max(runs):.0f} ms | p50 < 2 s |"
    )
    print(
        f"| inventory of {inventory['nodes']} nodes ({inventory['pods']} pods, {inventory['gpus']} GPUs, "
        f"{inventory['free']} free), p50 / max of {len(inv)} | {statistics.median(inv):.0f} / {max(inv):.0f} ms | |"
    )


if __name__ == "__main__":
    main()
