"""``gpumarket``: rent GPUs from a terminal.

    gpumarket login --url https://market.example.com      # asks for an API token (client scope)
    gpumarket offers gpu=h100 vram>=80 price<2.5 verified
    gpumarket deploy deploy.yaml --hours 24               # an Akash SDL file or our workload file
    gpumarket leases
    gpumarket logs 42 -f
    gpumarket shell 42
    gpumarket top-up 42 10                                # dollars
    gpumarket close 42
    gpumarket statement 42 --csv

``--json`` (before or after the command) prints what the API answered, for scripts. Exit codes:
0 done; 1 the marketplace refused (its message is printed); 2 the command line is wrong; 3 not
logged in, or the token is refused; 4 nothing came of it (no bid before the order's deadline, a
lease that failed); 5 the marketplace cannot be reached; 130 interrupted. ``gpumarket shell``
exits with the remote shell's own status.
"""

import argparse
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gpumarket_client.client import Client
from gpumarket_client.errors import ApiError, TransportError
from gpumarket_client.models import Bid, Lease, Order, micros, usd
from gpumarket_client.query import QueryError, parse

OK, REFUSED, USAGE, NOT_LOGGED_IN, NOTHING, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
SETTLED = ("running", "closed", "insufficient_funds")


class Exit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


# --- where the login is kept --------------------------------------------------------------
def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpumarket" / "config.json"


def load_login() -> tuple[str, str]:
    url, token = os.environ.get("GPUMARKET_URL", ""), os.environ.get("GPUMARKET_TOKEN", "")
    path = config_path()
    if path.exists() and not (url and token):
        saved = json.loads(path.read_text())
        url, token = url or saved.get("url", ""), token or saved.get("token", "")
    if not url or not token:
        raise Exit(NOT_LOGGED_IN, "Not logged in: run `gpumarket login` (or set GPUMARKET_URL and GPUMARKET_TOKEN).")
    return url, token


def save_login(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # written with 0600 from the start: the token is never readable by others, not even briefly
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


# --- output ----------------------------------------------------------------------------------
class Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str))

    def say(self, text: str) -> None:
        if self.as_json:
            self.errors.print(text)
        else:
            self.console.print(text)


def dollars(text: str) -> int:
    amount = micros(text)
    if amount is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in dollars (e.g. 2.50)")
    if amount <= 0:
        raise argparse.ArgumentTypeError("an amount above $0")
    return amount


def is_sdl(text: str) -> bool:
    """An Akash SDL file (services, profiles, deployment at the top) rather than our workload file."""
    tops = {line.split(":", 1)[0].strip() for line in text.splitlines() if line and not line[0].isspace()}
    return "services" in tops and ("profiles" in tops or "deployment" in tops)


# --- commands --------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace, out: Out) -> int:
    url = (args.url or os.environ.get("GPUMARKET_URL") or "").rstrip("/")
    if not url:
        raise Exit(USAGE, "Give the marketplace's address: gpumarket login --url https://…")
    token = args.token or os.environ.get("GPUMARKET_TOKEN") or ""
    if not token:
        if not sys.stdin.isatty():
            token = sys.stdin.readline().strip()
        else:
            import getpass

            token = getpass.getpass("API token (Account → API tokens, client scope): ").strip()
    with Client(url, token) as market:
        account = market.account()
    path = save_login(url, token)
    if out.as_json:
        out.data({"url": url, "config": str(path), "account": account})
    else:
        out.say(f"Logged in to {url} as [bold]{account.get('username', '?')}[/]; the token is kept in {path} (0600).")
    return OK


def cmd_offers(args: argparse.Namespace, out: Out, market: Client) -> int:
    try:
        query = parse(args.query)
    except QueryError as exc:
        raise Exit(USAGE, str(exc)) from None
    offers = [o for o in market.offers(**query.params) if query.matches(o)]
    if out.as_json:
        out.data([o.raw for o in offers])
        return OK
    if not offers:
        out.say("No offer matches. Loosen a term, or deploy anyway: providers who come online bid.")
        return OK
    table = Table("GPU", "VRAM", "Free", "Provider", "Region", "Reliability", "Per GPU-hour", "Verified")
    for o in offers:
        table.add_row(
            str(o.gpu_model.get("name")),
            f"{o.gpu_model.get('vram_gib')} GiB",
            str(o.available),
            str(o.provider.get("name")),
            str(o.provider.get("region")),
            f"{round(int(o.provider.get('reputation') or 0) / 10)} %",
            usd(o.price_per_gpu_hour),
            "yes" if o.verified else "",
        )
    out.console.print(table)
    return OK


def _bids_table(order: Order, bids: list[Bid]) -> Table:
    left = max(0, int(_seconds_until(order.deadline)))
    table = Table(
        "#", "Provider", "GPU", "Per hour", "Per GPU-hour", "Verified", title=f"Order #{order.id}: bids ({left} s left)"
    )
    for index, bid in enumerate(sorted(bids, key=lambda b: b.price_per_hour), start=1):
        model = bid.gpu_model.get("name") if isinstance(bid.gpu_model, dict) else bid.gpu_model
        table.add_row(
            str(index),
            bid.provider_name,
            str(model),
            usd(bid.price_per_hour),
            usd(bid.price_per_gpu_hour),
            "yes" if bid.gpu_verified else "",
        )
    return table


def _seconds_until(moment: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() - time.time()
    except ValueError:
        return 0.0


def cmd_deploy(args: argparse.Namespace, out: Out, market: Client) -> int:
    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        raise Exit(USAGE, f"Cannot read {args.file}: {exc.strerror}.") from None
    terms: dict[str, Any] = {}
    if args.hours is not None:
        terms["duration_hours"] = args.hours
    if args.max_price is not None:
        terms["max_price_per_gpu_hour"] = args.max_price
    if args.bid_window is not None:
        terms["bid_window_seconds"] = args.bid_window
    if is_sdl(text):
        order = market.create(sdl=text, **terms)
    elif terms:
        raise Exit(
            USAGE, "--hours, --max-price and --bid-window are for an SDL file; our workload file says them itself."
        )
    else:
        order = market.create(workload_file=text)
    out.say(f"Order #{order.id} posted: bids until {order.deadline}.")
    for note in order.workload_file.get("notes") or []:
        (out.errors if out.as_json else out.console).print(f"  {note}", markup=False, style="dim")

    bids: dict[int, Bid] = {}
    stop_at = time.monotonic() + args.wait
    with Live(
        _bids_table(order, []), console=out.errors if out.as_json else out.console, transient=out.as_json
    ) as live:
        for bid in market.watch_bids(order.id, timeout=max(1.0, min(args.wait, _seconds_until(order.deadline)))):
            bids[bid.id] = bid
            live.update(_bids_table(order, list(bids.values())))
            if time.monotonic() >= stop_at:
                break
        order = market.get_order(order.id)
        bids = {b.id: b for b in market.open_bids(order.id)} if order.status == "open" else bids
        live.update(_bids_table(order, list(bids.values())))
    if order.status == "awarded" and order.lease:  # the deadline came first: the auction awarded it
        lease = market.get_lease(order.lease)
    elif order.status != "open":
        raise Exit(NOTHING, f"Order #{order.id} is {order.status}: {order.raw.get('status_reason') or 'no bid came'}.")
    elif not bids:
        market.cancel_order(order.id)
        raise Exit(NOTHING, f"No bid in {args.wait} s: order #{order.id} is cancelled. Try a higher --max-price.")
    else:
        ranked = sorted(bids.values(), key=lambda b: b.price_per_hour)
        chosen = _pick(ranked, out) if args.pick else ranked[0]
        lease = market.accept_bid(order.id, chosen.id)
        out.say(f"Accepted {chosen.provider_name} at {usd(chosen.price_per_hour)}/h: lease #{lease.id}.")
    if not args.no_wait:
        lease = _until_settled(market, lease, out, timeout=args.start_timeout)
    if out.as_json:
        out.data(lease.raw)
    else:
        _show_lease(lease, out)
    return OK if lease.status != "closed" else NOTHING


def _pick(ranked: list[Bid], out: Out) -> Bid:
    if not sys.stdin.isatty():
        raise Exit(USAGE, "--pick needs a terminal to ask in.")
    while True:
        answer = out.console.input(f"Accept which bid (1-{len(ranked)})? ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(ranked):
            return ranked[int(answer) - 1]


def _until_settled(market: Client, lease: Lease, out: Out, *, timeout: float) -> Lease:
    deadline = time.monotonic() + timeout
    with out.console.status(f"Lease #{lease.id}: {lease.status}…") as spinner:
        while lease.status not in SETTLED and time.monotonic() < deadline:
            time.sleep(1)
            lease = market.get_lease(lease.id)
            spinner.update(f"Lease #{lease.id}: {lease.status}…")
    return lease


def _show_lease(lease: Lease, out: Out) -> None:
    out.say(
        f"Lease #{lease.id}: [bold]{lease.status}[/] at {usd(lease.price_per_hour)}/h, deposit {usd(lease.deposit)}"
    )
    for endpoint in lease.endpoints:
        out.say(f"  endpoint {endpoint}")
    if lease.close_reason:
        out.say(f"  {lease.close_reason}")


def cmd_leases(args: argparse.Namespace, out: Out, market: Client) -> int:
    leases = market.leases(status=args.status)
    if out.as_json:
        out.data([lease.raw for lease in leases])
        return OK
    table = Table("Lease", "Status", "GPU", "Provider", "Per hour", "Cost so far", "Ends", "Endpoints")
    for lease in leases:
        model = lease.gpu_model.get("name") if isinstance(lease.gpu_model, dict) else lease.gpu_model
        table.add_row(
            str(lease.id),
            lease.status,
            f"{lease.gpu_count} × {model}",
            str(lease.provider.get("name", "")),
            usd(lease.price_per_hour),
            usd(lease.accrued),
            str(lease.ends_at or ""),
            " ".join(lease.endpoints),
        )
    out.console.print(table)
    return OK


def cmd_logs(args: argparse.Namespace, out: Out, market: Client) -> int:
    shown = ""
    while True:
        log = market.get_logs(args.lease)
        text = log.text or ""
        new = _after(shown, text)
        if out.as_json and not args.follow:
            out.data(log.raw)
            return OK
        if new:
            sys.stdout.write(new)
            sys.stdout.flush()
        shown = text
        if not args.follow:
            return OK
        if market.get_lease(args.lease).status == "closed":
            return OK
        time.sleep(args.interval)


def _after(shown: str, text: str) -> str:
    """What of ``text`` (the log's latest tail) was not printed yet."""
    if text.startswith(shown):
        return text[len(shown) :]
    lines = shown.splitlines(keepends=True)
    for start in range(len(lines)):  # the tail moved on: find where the printed part ends in it
        overlap = "".join(lines[start:])
        if overlap and text.startswith(overlap):
            return text[len(overlap) :]
    return text


def cmd_shell(args: argparse.Namespace, out: Out, market: Client) -> int:
    from gpumarket_client.terminal import run_shell

    url, headers, origin = market.websocket_url(f"/ws/leases/{args.lease}/shell/")
    status, message = run_shell(url, headers, origin)
    if message:
        out.errors.print(f"\r\n{message}", markup=False)
    return status


def cmd_top_up(args: argparse.Namespace, out: Out, market: Client) -> int:
    top_up = market.top_up(args.lease, args.amount)
    if out.as_json:
        out.data(top_up)
    else:
        out.say(f"Added {usd(args.amount)} to lease #{args.lease} ({top_up.get('status', '')}).")
    return OK


def cmd_close(args: argparse.Namespace, out: Out, market: Client) -> int:
    lease = Lease.from_dict(market.close(args.lease))
    deadline = time.monotonic() + args.timeout
    while lease.status != "closed" and not args.no_wait and time.monotonic() < deadline:  # the escrow settles it
        time.sleep(1)
        lease = market.get_lease(lease.id)
    if out.as_json:
        out.data(lease.raw)
    elif lease.status != "closed":
        out.say(f"Lease #{lease.id} is {lease.status}: the escrow settles it shortly.")
    else:
        out.say(
            f"Lease #{lease.id} closed: {usd(lease.paid_to_provider)} paid, {usd(lease.refunded_to_client)} back to "
            "your balance."
        )
    return OK


def cmd_statement(args: argparse.Namespace, out: Out, market: Client) -> int:
    if args.csv:
        sys.stdout.write(market.statement(args.lease, csv=True))
        return OK
    statement = market.statement(args.lease)
    if out.as_json:
        out.data(statement)
        return OK
    table = Table("Period", "Run seconds", "GPU-seconds", "Amount", title=f"Lease #{args.lease}")
    for period in statement.get("periods") or []:
        table.add_row(
            f"{period.get('period_start')} – {period.get('period_end')}",
            str(period.get("run_seconds")),
            str(period.get("gpu_seconds")),
            usd(period.get("amount")),
        )
    out.console.print(table)
    out.say(
        f"Paid to the provider {usd(statement.get('paid_to_provider'))}, refunded "
        f"{usd(statement.get('refunded_to_client'))} of the {usd(statement.get('deposit'))} deposit."
    )
    return OK


# --- the command line --------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the API's answer as JSON"
    )
    top = argparse.ArgumentParser(prog="gpumarket", description="Rent GPUs from a terminal.", parents=[json_flag])
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[json_flag])

    login = command("login", "keep the marketplace's address and your API token")
    login.add_argument("--url", help="the marketplace, e.g. https://market.example.com")
    login.add_argument("--token", help="an API token (asked for when not given)")
    offers = command("offers", "what providers offer now: gpu=h100 vram>=80 price<2.5 verified region=eu")
    offers.add_argument("query", nargs="*")
    deploy = command("deploy", "post an Akash SDL file or our workload file, watch the bids, accept one")
    deploy.add_argument("file")
    deploy.add_argument("--hours", type=int, help="how long; without it, open-ended: it runs while funded")
    deploy.add_argument(
        "--max-price", type=dollars, help="the most per GPU-hour, in dollars (an SDL file in AKT needs it)"
    )
    deploy.add_argument("--bid-window", type=int, help="seconds providers have to bid (default 120)")
    deploy.add_argument(
        "--wait", type=float, default=15.0, help="seconds to watch the bids before accepting (default 15)"
    )
    deploy.add_argument("--pick", action="store_true", help="choose the bid yourself")
    deploy.add_argument("--no-wait", action="store_true", help="do not wait for the lease to run")
    deploy.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for it to run")
    leases = command("leases", "your leases")
    leases.add_argument("--status")
    logs = command("logs", "what the workload writes")
    logs.add_argument("lease", type=int)
    logs.add_argument("-f", "--follow", action="store_true", help="keep following until the lease closes")
    logs.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    shell = command("shell", "a shell in the lease's container")
    shell.add_argument("lease", type=int)
    top_up = command("top-up", "add money to a lease: it runs longer")
    top_up.add_argument("lease", type=int)
    top_up.add_argument("amount", type=dollars, help="dollars")
    close = command("close", "stop the lease: pay for what ran, get the rest back")
    close.add_argument("lease", type=int)
    close.add_argument("--no-wait", action="store_true", help="do not wait for the escrow to settle it")
    close.add_argument("--timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    statement = command("statement", "what a lease cost, period by period")
    statement.add_argument("lease", type=int)
    statement.add_argument("--csv", action="store_true")
    return top


COMMANDS = {
    "offers": cmd_offers,
    "deploy": cmd_deploy,
    "leases": cmd_leases,
    "logs": cmd_logs,
    "shell": cmd_shell,
    "top-up": cmd_top_up,
    "close": cmd_close,
    "statement": cmd_statement,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Out(as_json=getattr(args, "json", False))
    try:
        if args.command == "login":
            return cmd_login(args, out)
        url, token = load_login()
        with Client(url, token) as market:
            return COMMANDS[args.command](args, out, market)
    except Exit as exc:
        if exc.message:
            out.errors.print(exc.message, markup=False)
        return exc.code
    except ApiError as exc:
        out.errors.print(str(exc), markup=False, style="red")
        return NOT_LOGGED_IN if exc.status == 401 else REFUSED
    except TransportError as exc:
        out.errors.print(str(exc), markup=False, style="red")
        return UNREACHABLE
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
