"""``gpumarket``, the client CLI, against the live marketplace (HTTP and WebSockets on uvicorn) and
the demo provider's real agent running containers on Docker: log in, find offers, deploy an Akash
SDL file, watch the agent's bid and accept it, follow the logs, open a shell (on a pseudo-terminal),
top up, close, read the statement."""

import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpumarket_client import cli
from leases.models import Lease
from marketplace.models import Order
from tests.agent.images import IMAGE

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="live bids and shells need the Redis channel layer"),
]

SDL = f"""\
version: "2.0"
services:
  box:
    image: {IMAGE}
    command: [sh, -c]
    args: ["echo Hello from the SDL box; sleep 600"]
    env: [GREETING=hi]
profiles:
  compute:
    box:
      resources:
        cpu: {{units: 0.5}}
        memory: {{size: 512Mi}}
        storage: [{{size: 1Gi}}]
        gpu:
          units: 1
          attributes: {{vendor: {{nvidia: [{{model: rtx4090}}]}}}}
  placement:
    anywhere:
      pricing:
        box: {{denom: uakt, amount: 1000}}
deployment:
  box:
    anywhere: {{profile: box, count: 1}}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GPUMARKET_URL", raising=False)
    monkeypatch.delenv("GPUMARKET_TOKEN", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(text: str):  # type: ignore[no-untyped-def]
    return json.loads(text)


def test_from_an_sdl_file_to_a_shell_and_a_statement(  # type: ignore[no-untyped-def]
    asgi_server: str, demo_agent, home: Path, capsys
) -> None:
    from core import services as accounts
    from core.models import TokenScope
    from payments import services as payments
    from tests import factories as f

    client = f.client_user(balance=0)
    payments.demo_credit_add(user=client, amount_cents=2_000)  # a newcomer's demo credit, as on the page
    token = accounts.token_issue(user=client, name="laptop", scope=TokenScope.CLIENT).secret
    assert run(capsys, "offers")[0] == cli.NOT_LOGGED_IN
    code, out, _ = run(capsys, "login", "--url", asgi_server, "--token", token)
    assert code == cli.OK and client.username in out
    config = home / "config" / "gpumarket" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    # offers, in the query language
    code, out, _ = run(capsys, "offers", "--json", "gpu=rtx4090", "price<0.5", "gpus>=2")
    assert code == cli.OK and [o["gpu_model"]["id"] for o in as_json(out)] == ["rtx-4090-24gb"]
    assert as_json(run(capsys, "offers", "--json", "gpu=h100", "price<1")[1]) == []
    code, _, err = run(capsys, "offers", "vram~80")
    assert code == cli.USAGE and "Cannot read 'vram~80'" in err

    # deploy the SDL file as it is: its price is in AKT, so the most per GPU-hour is given beside it
    (home / "deploy.yaml").write_text(SDL)
    code, _, err = run(capsys, "deploy", str(home / "deploy.yaml"))
    assert code == cli.REFUSED and "uakt has no dollar rate here" in err  # said, nothing posted
    assert not Order.objects.exists()
    code, out, err = run(
        capsys, "--json", "deploy", str(home / "deploy.yaml"), "--hours", "2", "--max-price", "0.50", "--wait", "8"
    )
    assert code == cli.OK, err
    lease = as_json(out)
    assert lease["status"] == "running" and lease["price_per_hour"] == 350_000  # the demo agent's asking price
    order = Order.objects.get(pk=lease["order"])
    assert order.workload_file["format"] == "akash-sdl" and order.max_price_per_hour == 500_000
    assert "Accepted Demo GPU Cloud at $0.35/h" in err
    lease_id = str(lease["id"])

    # the workload's output, as the agent streams it
    deadline = time.monotonic() + 30
    while "Hello from the SDL box" not in (out := run(capsys, "logs", lease_id)[1]):
        assert time.monotonic() < deadline, demo_agent["log"].read_text()[-2000:]
        time.sleep(1)

    # a shell, on a pseudo-terminal, as a person types it: its exit status is the command's
    status, said = shell(asgi_server, home, lease_id, ["echo $((6*7)) from $GREETING\r", "exit 3\r"])
    assert status == 3 and "42 from hi" in said and "The shell ended (exit status 3)." in said

    code, out, _ = run(capsys, "top-up", lease_id, "0.10")
    assert code == cli.OK and "Added $0.10" in out
    code, out, _ = run(capsys, "--json", "close", lease_id)
    closed = as_json(out)
    assert code == cli.OK and closed["status"] == "closed"
    assert closed["paid_to_provider"] + closed["refunded_to_client"] == closed["deposit"]
    code, out, _ = run(capsys, "statement", lease_id, "--csv")
    assert code == cli.OK and out.startswith("period_start,period_end,run_seconds")
    leases = as_json(run(capsys, "leases", "--json")[1])
    assert [(item["id"], item["status"]) for item in leases] == [(int(lease_id), "closed")]
    assert Lease.objects.get(pk=lease_id).status == Lease.Status.CLOSED


def shell(base: str, home: Path, lease_id: str, keys: list[str]) -> tuple[int, str]:
    """``gpumarket shell`` in a child process on a pseudo-terminal; each line typed once the prompt shows."""
    parent, child = pty.openpty()
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "gpumarket_client.cli", "shell", lease_id],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
    )
    os.close(child)
    seen = b""
    pending = list(keys)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([parent], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if pending and re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).rstrip().endswith((b"$", b"#")):
            os.write(parent, pending.pop(0).encode())
        if process.poll() is not None and not ready:
            break
    try:
        status = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(seen.decode("utf-8", "replace")) from None
    os.close(parent)
    return status, seen.decode("utf-8", "replace")


def test_what_a_script_meets_when_nothing_comes_of_it(asgi_server: str, home: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from core import services as accounts
    from core.models import TokenScope
    from tests import factories as f

    client = f.client_user()
    token = accounts.token_issue(user=client, name="cli", scope=TokenScope.CLIENT).secret
    assert run(capsys, "login", "--url", asgi_server, "--token", token)[0] == cli.OK
    # nobody offers an H200 here: no bid, the order is cancelled, and the exit status says so
    (home / "deploy.yaml").write_text(SDL.replace("model: rtx4090", "model: h200").replace("uakt", "uact"))
    code, _, err = run(capsys, "deploy", str(home / "deploy.yaml"), "--hours", "1", "--wait", "2")
    assert code == cli.NOTHING and "No bid in 2" in err
    assert Order.objects.get().status == Order.Status.CANCELLED
    # a refused token, an unreachable marketplace, a wrong amount
    os.environ["GPUMARKET_TOKEN"] = "gpm_not_a_token"
    try:
        assert run(capsys, "leases")[0] == cli.NOT_LOGGED_IN
        os.environ["GPUMARKET_URL"] = "http://127.0.0.1:9"
        code, _, err = run(capsys, "leases")
        assert code == cli.UNREACHABLE and "cannot be reached" in err
    finally:
        os.environ.pop("GPUMARKET_TOKEN", None)
        os.environ.pop("GPUMARKET_URL", None)
    with pytest.raises(SystemExit) as usage:
        cli.main(["top-up", "1", "ten"])
    assert usage.value.code == cli.USAGE
