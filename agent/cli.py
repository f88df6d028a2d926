"""``gpumarket-agent``: init, inventory, status and run."""

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from agent import config as agent_config
from agent.client import MarketplaceClient, MarketplaceError
from agent.inventory import source as inventory_source
from agent.reporting import Outbox
from agent.runner import Agent, read_key
from agent.runtimes.base import Runtime, RuntimeError_

logger = logging.getLogger("gpumarket.agent")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: easy to ship to any log system."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def cmd_init(args: argparse.Namespace) -> int:
    from eth_account import Account  # slow to import: only init needs it

    path = Path(args.config)
    if path.exists() and not args.force:
        print(f"{path} exists; pass --force to overwrite it.", file=sys.stderr)
        return 1
    cfg = agent_config.validate({"marketplace_url": args.marketplace_url, "token": args.token, "runtime": args.runtime})
    key_path = Path(args.signing_key_file or path.with_name("signing-key.hex"))
    if not key_path.exists():
        account = Account.create()
        key_path.write_text(account.key.hex() + "\n")
        os.chmod(key_path, 0o600)
    cfg.signing_key_file = str(key_path)
    path.write_text(cfg.to_yaml())
    os.chmod(path, 0o600)  # it holds the provider token
    address = Account.from_key(key_path.read_text().strip()).address
    print(f"wrote {path} and {key_path}")
    print(f"signing address: {address} (link it to your provider account as a wallet)")
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    """What this host (NVML) or, with ``runtime: kubernetes`` configured, the cluster can rent out."""
    declared = None
    if Path(args.config).exists():
        cfg = agent_config.load(args.config)
        if cfg.runtime == "kubernetes":
            runtime = _runtime(cfg)
            if runtime is None:
                return 1
            print(json.dumps(runtime.inventory_report(), indent=2))
            return 0
        declared = cfg.declared_inventory
    print(json.dumps(inventory_source(declared)().as_dict(), indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = agent_config.load(args.config)
    try:
        # a person is waiting for the answer: one quick retry, not the agent's patient backoff
        me = MarketplaceClient(cfg.marketplace_url, cfg.token, retries=1).me()
    except MarketplaceError as exc:
        print(f"marketplace: {exc}", file=sys.stderr)
        return 1
    status = {"provider": me["name"], "online": me["online"], "last_heartbeat_at": me["last_heartbeat_at"]}
    key = read_key(cfg.signing_key_file)
    if key is not None:
        from eth_account import Account  # slow to import: only status and init need it

        status["signing_address"] = Account.from_key(key).address
    status["reports_waiting"] = len(Outbox(cfg.state_dir).pending()) if Path(cfg.state_dir).exists() else 0
    print(json.dumps(status, indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = agent_config.load(args.config)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent = Agent(cfg, runtime=_runtime(cfg), runtime_factory=lambda: _runtime(cfg, quiet=True), push=not args.once)
    agent.run(lambda: stopping, once=args.once)
    return 0


def _runtime(cfg: agent_config.AgentConfig, *, quiet: bool = False) -> Runtime | None:
    """The configured runtime, or None (inventory and heartbeats only) when it is unavailable."""
    try:
        if cfg.runtime == "kubernetes":
            from agent.runtimes.kubernetes_runtime import KubernetesRuntime

            return KubernetesRuntime.from_settings(cfg.kubernetes)
        from agent.runtimes.docker_runtime import DockerRuntime

        return DockerRuntime(
            network=cfg.docker.network,
            host_address=cfg.docker.host_address,
            gpus=cfg.docker.gpus,
            pull_images=cfg.docker.pull_images,
            inventory=inventory_source(cfg.declared_inventory),
            name_prefix=cfg.docker.name_prefix,
        )
    except RuntimeError_ as exc:
        if not quiet:
            logger.warning("no runtime: leases wait until one answers", extra={"fields": {"error": str(exc)}})
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpumarket-agent", description="The GPU Market provider agent.")
    parser.add_argument("--config", default=os.environ.get("GPUMARKET_AGENT_CONFIG", "agent.yaml"))
    parser.add_argument("--log-level", default="info")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write a configuration and a signing key")
    init.add_argument("--marketplace-url", required=True)
    init.add_argument("--token", required=True, help="a provider-scoped API token")
    init.add_argument("--runtime", choices=agent_config.RUNTIMES, default="docker")
    init.add_argument("--signing-key-file")
    init.add_argument("--force", action="store_true")
    init.set_defaults(handler=cmd_init)
    sub.add_parser("inventory", help="print what this machine can rent out").set_defaults(handler=cmd_inventory)
    sub.add_parser("status", help="ask the marketplace how it sees this provider").set_defaults(handler=cmd_status)
    run = sub.add_parser("run", help="report inventory, bid, run leases and report usage until stopped")
    run.add_argument("--once", action="store_true", help="one pass of everything, then exit")
    run.set_defaults(handler=cmd_run)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return args.handler(args)
    except agent_config.ConfigError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
