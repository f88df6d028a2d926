import functools
import os

import pytest
from django.db import connection

from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

# Tests that time real processes against each other (an agent's passes against its usage period,
# a browser against a page's socket): `make test` runs them after the parallel part, one a core, so
# that the load of four workers on two cores does not stretch their clocks.
SERIAL = ("tests/faults/", "tests/web/test_browser.py", "tests/agent/test_agent_e2e.py", "tests/agent/test_cli.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _books_balance(request: pytest.FixtureRequest):
    """After every test that touched the database: the ledger balances, to the micro-dollar."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up before us, so torn down after us
    yield
    if connection.needs_rollback:
        return
    assert_books_balance()


def assert_books_balance() -> None:
    from django.db.models import Sum

    total = LedgerEntry.objects.aggregate(s=Sum("amount"))["s"] or 0
    assert total == 0, f"ledger entries sum to {total}, not 0"
    for txn in LedgerTransaction.objects.annotate(s=Sum("entries__amount")).exclude(s=0):
        raise AssertionError(f"transaction {txn.idempotency_key} is unbalanced ({txn.s})")
    for account in LedgerAccount.objects.annotate(s=Sum("entries__amount")):
        assert account.balance == (account.s or 0), f"{account} caches {account.balance}, entries say {account.s}"
        if account.kind != LedgerAccount.Kind.EXTERNAL:
            assert account.balance >= 0, f"{account} is negative"


@pytest.fixture(autouse=True)
def _no_process_left_behind():  # type: ignore[no-untyped-def]
    """Whatever a test started through ``tests.processes`` is killed when it ends, passed or not
    (after its own fixtures have stopped what they started)."""
    from tests import processes

    position = processes.mark()
    yield
    processes.kill_started_since(position)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """The test databases are this run's own (``TEST_RUN``, which ``make test`` sets per run) as
    well as each worker's (pytest-django's ``_gwN``): two runs on one machine never share one."""
    from django.conf import settings

    run = os.environ.get("TEST_RUN", "")
    if not run.isalnum():
        return
    for database in settings.DATABASES.values():
        if database["ENGINE"].endswith("sqlite3"):
            continue  # an in-memory database a process, already its own
        test = database.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + database['NAME']}_run{run}"


SLOW_HASHERS: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> None:
    """Passwords are hashed with a fast hasher in the tests (Django's PBKDF2 takes a quarter of a
    second a password here); ``production_hashers`` gives a test the real ones."""
    from django.conf import settings

    SLOW_HASHERS[:] = settings.PASSWORD_HASHERS
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def production_hashers(settings):  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = SLOW_HASHERS


@functools.cache
def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url)


def clear_our_cache() -> None:
    """Forget the cache and the rate-limit counters: this run's alone (on Redis, the keys under its
    ``REDIS_KEY_PREFIX``; never another run's, as a flush would)."""
    from django.conf import settings
    from django.core.cache import cache

    if not settings.REDIS_URL:
        cache.clear()  # this process's memory
        return
    client = _redis(settings.REDIS_URL)  # one connection for the run, not one a test
    keys = list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Every test starts with no throttle counts and no cached values: ids (and the loopback
    address) come back from test to test, and so would their counters."""
    clear_our_cache()


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """The Docker engine, with the test image (``tests.agent.images.IMAGE``) imported from
    a busybox root filesystem (no image can be pulled)."""
    from tests.agent.images import engine_with_test_image

    client, missing = engine_with_test_image()
    if client is None:
        pytest.skip(missing)
    return client


@pytest.fixture
def anvil():  # type: ignore[no-untyped-def]
    """A fresh Anvil node per test (it starts in well under a second)."""
    from chain.devnode import Anvil, anvil_binary

    binary = anvil_binary()
    if binary is None:
        pytest.skip("needs anvil: `make tools` installs it (CI does)")
    node = Anvil(binary)
    yield node
    node.stop()


@pytest.fixture(params=["embedded", "anvil"])
def chain(request, settings):  # type: ignore[no-untyped-def]
    """The escrow on the in-process EVM, or on a real Anvil node through the RPC backend."""
    from chain import adapter

    settings.ESCROW_BACKEND = "chain"
    if request.param == "embedded":
        settings.CHAIN_BACKEND = "embedded"
        adapter._embedded.clear()  # a fresh in-process chain for each test
        yield adapter.escrow_client()
        adapter._embedded.clear()
        return
    yield on_anvil(settings, request.getfixturevalue("anvil"))


def on_anvil(settings, node):  # type: ignore[no-untyped-def]
    """Point the RPC backend at an Anvil node and deploy the contracts there."""
    from chain import adapter

    owner, operator, verifier = node.accounts[:3]
    settings.CHAIN_BACKEND = "rpc"
    settings.CHAIN_RPC_URL = node.url
    settings.CHAIN_OPERATOR_KEY = operator.key.hex()
    settings.CHAIN_VERIFIER_KEY = verifier.key.hex()
    settings.CHAIN_ESCROW_ADDRESS = settings.CHAIN_TOKEN_ADDRESS = ""
    adapter.deploy_contracts(
        w3=node.web3(),
        owner=owner,
        operator=operator.address,
        verifier=verifier.address,
        token_address=None,
        unstake_delay=60,
    )
    return adapter.escrow_client()


@pytest.fixture
def asgi_server():  # type: ignore[no-untyped-def]
    """The real ASGI application (HTTP and WebSockets) on uvicorn, on a free loopback port."""
    import threading
    import time

    import uvicorn
    from django.db import connections

    from chain.devnode import free_port
    from config.asgi import application

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://localhost:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    # the server's requests drew connections from the pool: give them back, or the test database
    # cannot be dropped at the end of the run
    for wrapper in connections.all():
        if hasattr(wrapper, "close_pool"):
            wrapper.close_pool()


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    """An integrator's webhook endpoint on loopback (``tests.webhook_receiver.Receiver``)."""
    from tests.webhook_receiver import Receiver

    running = Receiver()
    yield running
    running.server.shutdown()


@pytest.fixture
def fake_stripe(tmp_path):  # type: ignore[no-untyped-def]
    """localstripe on a free loopback port, with the Stripe settings pointing at it."""
    from tests.payments.fake_stripe import run_fake_stripe

    yield from run_fake_stripe(tmp_path)


@pytest.fixture
def nras(tmp_path, settings):  # type: ignore[no-untyped-def]
    """NVIDIA's attestation service as the marketplace sees it: its key set at a URL on loopback,
    its root on disk (``tests/trust/nras.py`` makes the keys and signs the tokens)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from django.core.cache import cache

    from tests.trust.nras import Nras
    from trust import services

    service = Nras.create()
    body = json.dumps(service.jwks()).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    roots = tmp_path / "roots.pem"
    roots.write_text(service.root_pem())
    settings.ATTESTATION_ROOT_CERTS = str(roots)
    settings.ATTESTATION_JWKS_URL = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    cache.delete(services.JWKS_CACHE_KEY)
    yield service
    server.shutdown()
    cache.delete(services.JWKS_CACHE_KEY)


@pytest.fixture
def demo_agent(asgi_server: str, settings, tmp_path):  # type: ignore[no-untyped-def]
    """What ``make run`` starts: the demo seed on embedded defaults and the demo provider's real
    agent (declared GPUs, Docker without GPUs), running until the test ends."""
    import subprocess
    import sys

    from chain import adapter
    from marketplace.demo import demo_agent_config, seed_demo
    from tests import processes
    from tests.agent.images import CONTAINERS, engine_with_test_image

    engine, missing = engine_with_test_image()
    if engine is None:
        pytest.skip(missing)
    settings.ESCROW_BACKEND, settings.CHAIN_BACKEND = "chain", "embedded"
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.DEMO_CREDIT_CENTS = 100_000
    adapter._embedded.clear()
    demo = seed_demo()
    # the test network has no Docker bridge: containers get none (make run uses the bridge)
    config = demo_agent_config(
        demo,
        path=tmp_path / "agent" / "agent.yaml",
        marketplace_url=asgi_server,
        docker_network="none",
        container_prefix=CONTAINERS,  # this run's containers, apart from any other's on the engine
    )
    process = processes.start(
        [sys.executable, "-m", "agent.cli", "--config", str(config), "run"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "agent.log").open("w"),
    )
    yield {"demo": demo, "engine": engine, "log": tmp_path / "agent.log"}
    process.terminate()
    process.wait(timeout=20)
    for container in engine.containers.list(all=True, filters={"name": f"^/{CONTAINERS}"}):
        container.remove(force=True)
    adapter._embedded.clear()
