"""The load benchmark: clients and 1,000 simulated provider agents (benchmarks/load/locustfile.py)
against the production server setup on PostgreSQL and Redis, with 1 and then 2 web workers.

    DATABASE_URL=postgres://… REDIS_URL=redis://… .venv/bin/python benchmarks/load/run.py \\
        [--agents 1000] [--clients 20] [--seconds 120] [--workers 1 2]
    … benchmarks/load/run.py --soak --seconds 600 --workers 2      # the soak: memory and CPU over time

Per run, in a fresh scratch database next to DATABASE_URL's: seed the agents' providers (8 H100s
each, a token, a usage-signing key linked as a wallet) and the clients (a token, a balance); start
gunicorn (config/gunicorn.py, ``--workers``), a Celery worker (deadline awards, settlement) and
Celery beat, as the chart runs them; run Locust headless for ``--seconds`` with every user spawned
in the first ten seconds; sample the server processes' CPU. Prints Markdown for
benchmarks/RESULTS.md; Locust's CSVs, the raw numbers and the plot (load.png) go to benchmarks/out/.
"""

import argparse
import contextlib
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT))

from benchmarks.auction import prepare_django, scratch_database, seed_providers, wait_healthy  # noqa: E402


def seed(*, agents: int, clients: int, path: Path) -> None:
    """The agents' providers (as the auction benchmark seeds them), each with a usage-signing key
    linked as its wallet; the clients, with tokens and balances."""
    from django.conf import settings
    from eth_account import Account

    from chain.models import Wallet
    from core import services as accounts
    from core.models import TokenScope, User
    from ledger import services as ledger

    tokens = seed_providers(agents, prefix="load")
    users = {u.username: u for u in User.objects.filter(username__startswith="load-provider-")}
    keys = [Account.create() for _ in tokens]
    Wallet.objects.bulk_create(
        Wallet(user=users[f"load-provider-{i}"], address=key.address) for i, key in enumerate(keys)
    )
    buyers = []
    for i in range(clients):
        user = accounts.user_create(username=f"load-client-{i}", is_client=True)
        ledger.deposit(user=user, amount=10**13, key=f"load:client:{i}")
        buyers.append({"token": accounts.token_issue(user=user, name="load", scope=TokenScope.CLIENT).secret})
    providers = [{"token": token, "key": key.key.hex()} for token, key in zip(tokens, keys, strict=True)]
    path.write_text(
        json.dumps({"providers": providers, "clients": buyers, "chain_id": settings.USAGE_SIGNING_CHAIN_ID})
    )


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU of the processes and their children (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for task in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB (from /proc)."""
    total = 0
    for task in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{task}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def _children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return found + [grandchild for child in found for grandchild in _children(child)]


def run(args: argparse.Namespace, workers: int) -> dict:
    database = scratch_database(os.environ["DATABASE_URL"], suffix=f"_load_w{workers}")
    env = prepare_django(
        database,
        REDIS_URL=os.environ["REDIS_URL"],
        DB_POOL="false",
        DB_CONN_MAX_AGE="600",
        API_THROTTLE_RATE="100000/minute",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    credentials = OUT / f"load-credentials-w{workers}.json"
    started = time.perf_counter()
    seed(agents=args.agents, clients=args.clients, path=credentials)
    seeding = time.perf_counter() - started
    from django.db import connections

    connections.close_all()
    port = 18500 + workers
    multiproc = OUT / f"prometheus-w{workers}"
    server_env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "config.wsgi:application",
                "--access-logfile",
                "/dev/null",
            ],
            cwd=ROOT,
            env=server_env,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel=WARNING",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel=WARNING",
                f"--schedule={OUT}/beat-w{workers}",
                "--pidfile=",
            ],
            cwd=ROOT,
            env=env,
        ),
    ]
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=60)
        prefix = OUT / f"load-w{workers}"
        before, clock = cpu_seconds([p.pid for p in processes[:1]]), time.monotonic()
        worker_before = cpu_seconds([p.pid for p in processes[1:]])
        machine_before, children_before = machine_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        locust = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "benchmarks" / "load" / "locustfile.py"),
                "--headless",
                "--host",
                f"http://127.0.0.1:{port}",
                "-u",
                str(args.agents + args.clients),
                "-r",
                str((args.agents + args.clients) // 10 + 1),
                "-t",
                f"{args.seconds}s",
                "--csv",
                str(prefix),
                "--csv-full-history",
                "--only-summary",
                "--loglevel",
                "WARNING",
                "--stop-timeout",
                "10",
            ],
            cwd=ROOT,
            env={
                **env,
                "LOAD_CREDENTIALS": str(credentials),
                "LOAD_AGENTS": str(args.agents),
                "LOAD_CLIENTS": str(args.clients),
            },
        )
        samples = []
        while locust.poll() is None:  # memory and CPU of the server processes every 10 s
            samples.append(
                {
                    "t": round(time.monotonic() - clock),
                    "web_rss_mib": rss_mib(processes[0].pid),
                    "celery_rss_mib": rss_mib(processes[1].pid),
                    "beat_rss_mib": rss_mib(processes[2].pid),
                    "web_cpu_seconds": round(cpu_seconds([processes[0].pid]) - before, 1),
                    "celery_cpu_seconds": round(cpu_seconds([p.pid for p in processes[1:]]) - worker_before, 1),
                }
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                locust.wait(timeout=10)
        elapsed = time.monotonic() - clock
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        locust_cpu = (
            children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
        ) / elapsed
        busy, total = (after - first for after, first in zip(machine_cpu(), machine_before, strict=True))
        web_cpu = (cpu_seconds([p.pid for p in processes[:1]]) - before) / elapsed
        worker_cpu = (cpu_seconds([p.pid for p in processes[1:]]) - worker_before) / elapsed
        from leases.models import Lease
        from marketplace.models import Bid, Order

        counts = {
            "orders": Order.objects.count(),
            "bids": Bid.objects.count(),
            "leases": Lease.objects.count(),
            "leases_settled": Lease.objects.filter(settled_amount__gt=0).count(),
        }
        connections.close_all()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    stats = list(csv.DictReader(Path(f"{prefix}_stats.csv").read_text().splitlines()))
    return {
        "workers": workers,
        "seeding_seconds": round(seeding, 1),
        "web_cpu_cores": round(web_cpu, 2),
        "celery_cpu_cores": round(worker_cpu, 2),
        "locust_cpu_cores": round(locust_cpu, 2),
        "machine_busy_share": round(busy / total, 2),
        "counts": counts,
        "endpoints": [
            {
                "name": row["Name"],
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": number(row["Requests/s"]),
                "p50": number(row["50%"]),
                "p95": number(row["95%"]),
                "p99": number(row["99%"]),
            }
            for row in stats
        ],
        "history": f"{prefix}_stats_history.csv",
        "samples": samples,
    }


def number(text: str) -> float:
    """A Locust CSV cell: N/A (no request yet) counts as nothing."""
    try:
        return float(text)
    except ValueError:
        return 0.0


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for result in results:
        rows = csv.DictReader(Path(result["history"]).read_text().splitlines())
        history = [r for r in rows if r["Name"] == "Aggregated"]
        start = int(history[0]["Timestamp"]) if history else 0
        left.plot(
            [int(r["Timestamp"]) - start for r in history],
            [number(r["Requests/s"]) for r in history],
            label=f"{result['workers']} web worker{'s' * (result['workers'] > 1)}",
        )
        right.plot(
            [int(r["Timestamp"]) - start for r in history],
            [number(r["95%"]) for r in history],
            label=f"{result['workers']} web worker{'s' * (result['workers'] > 1)}",
        )
    left.set(title="Throughput, all requests", xlabel="seconds", ylabel="requests per second")
    right.set(title="p95 latency, all requests", xlabel="seconds", ylabel="milliseconds")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("1,000 simulated agents and 20 clients on 2 vCPUs (gunicorn, Celery, PostgreSQL, Redis, Locust)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d}, {cpu_model()}, {os.cpu_count()} vCPUs; "
        f"{args.agents} agents and {args.clients} clients for {args.seconds} s.",
        "",
        "| endpoint | "
        + " | ".join(
            f"{r['workers']} worker{'s' * (r['workers'] > 1)}: req/s, p50 / p95 / p99 ms, failures" for r in results
        )
        + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    names = [e["name"] for e in results[0]["endpoints"]]
    for name in names:
        cells = []
        for r in results:
            e = next((e for e in r["endpoints"] if e["name"] == name), None)
            cells.append(
                "—"
                if e is None
                else f"{e['rps']:.1f}, {e['p50']:.0f} / {e['p95']:.0f} / {e['p99']:.0f}, {e['failures']}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['workers']} worker(s): the machine {r['machine_busy_share']:.0%} busy; web {r['web_cpu_cores']} "
            f"cores, Celery {r['celery_cpu_cores']}, Locust {r['locust_cpu_cores']}; "
            f"{r['counts']['orders']} orders, {r['counts']['bids']} bids, {r['counts']['leases']} leases "
            f"({r['counts']['leases_settled']} settled at least once)."
        )
    return "\n".join(lines)


def soak_markdown(result: dict, args: argparse.Namespace, *, warm_up: int = 120) -> str:
    """The soak: memory after the warm-up and at the end, CPU per window, failures."""
    samples = result["samples"]
    warm = next((s for s in samples if s["t"] >= warm_up), samples[0])
    last = samples[-1]
    aggregated = next(e for e in result["endpoints"] if e["name"] == "Aggregated")
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d}, {cpu_model()}, {os.cpu_count()} vCPUs; {args.agents} agents and "
        f"{args.clients} clients for {args.seconds} s, {result['workers']} web workers.",
        "",
        f"{aggregated['requests']} requests ({aggregated['rps']:.1f} a second), {aggregated['failures']} failures; "
        f"{result['counts']['orders']} orders, {result['counts']['bids']} bids, {result['counts']['leases']} leases "
        f"({result['counts']['leases_settled']} settled at least once).",
        "",
        "| process | RSS at 2 min (MiB) | RSS at the end (MiB) | highest (MiB) | change after the warm-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, key in (("gunicorn (master and workers)", "web"), ("Celery worker", "celery"), ("Celery beat", "beat")):
        field = f"{key}_rss_mib"
        start, end, high = warm[field], last[field], max(s[field] for s in samples)
        change = f"{(end - start) / start:+.1%}" if start else "—"
        lines.append(f"| {name} | {start} | {end} | {high} | {change} |")
    lines += ["", "| minutes | web CPU (cores) | Celery CPU (cores) |", "| --- | --- | --- |"]
    window = 120  # the first sample of each two-minute window, and the last
    marks = [next(s for s in samples if s["t"] >= start) for start in range(0, last["t"] + 1, window)]
    marks += [last] if marks[-1] is not last else []
    for first, second in pairwise(marks):
        span = second["t"] - first["t"]
        if span < window / 2:  # the few seconds after the last full window
            continue
        lines.append(
            f"| {first['t'] // 60}–{second['t'] // 60} | "
            f"{(second['web_cpu_seconds'] - first['web_cpu_seconds']) / span:.2f} | "
            f"{(second['celery_cpu_seconds'] - first['celery_cpu_seconds']) / span:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one run, its JSON
    parser.add_argument("--report", action="store_true", help="plot and print the runs already in benchmarks/out")
    parser.add_argument(
        "--soak", action="store_true", help="one long run (e.g. --seconds 600 --workers 2): memory and CPU over time"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.soak:
        [workers] = args.workers
        common = ["--agents", str(args.agents), "--clients", str(args.clients), "--seconds", str(args.seconds)]
        subprocess.run([sys.executable, __file__, "--one", "--workers", str(workers), *common], cwd=ROOT, check=True)
        result = json.loads((OUT / f"load-w{workers}.json").read_text())
        (OUT / "soak.json").write_text(json.dumps(result, indent=2))
        print(soak_markdown(result, args))
        return
    if args.one:
        [workers] = args.workers
        (OUT / f"load-w{workers}.json").write_text(json.dumps(run(args, workers), indent=2))
        return
    for workers in [] if args.report else args.workers:  # a process per run: Django is set up once per process
        common = ["--agents", str(args.agents), "--clients", str(args.clients), "--seconds", str(args.seconds)]
        subprocess.run([sys.executable, __file__, "--one", "--workers", str(workers), *common], cwd=ROOT, check=True)
    results = [json.loads((OUT / f"load-w{workers}.json").read_text()) for workers in args.workers]
    (OUT / "load.json").write_text(json.dumps(results, indent=2))
    plot(results, OUT / "load.png")
    print(markdown(results, args))


if __name__ == "__main__":
    main()
