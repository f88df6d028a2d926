"""The main journey in a real browser (Debian's Chromium, driven by Playwright) against the real
ASGI application on uvicorn: sign up, post an order, watch bids arrive live, accept one, watch the
lease start running, close it and find the refund in the ledger. Screenshots of each page go to
``BROWSER_SCREENSHOTS`` (default ``test-artifacts/screenshots``)."""

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import connections

from chain.models import Wallet
from core import services as accounts
from core.models import TokenScope, User
from leases.escrow import chain as escrow
from leases.models import Lease
from ledger import services as ledger
from marketplace.models import Order
from payments.models import CardTopUp
from tests import factories as f
from tests.agent.images import CONTAINERS
from tests.factories import USD
from tests.payments.fake_stripe import pay_on_the_page, send_webhooks_to

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(
    os.environ.get("BROWSER_SCREENSHOTS", Path(__file__).resolve().parents[2] / "test-artifacts/screenshots")
)
# Nothing leaves the machine: every host but the test server fails to resolve, and Chromium's own
# background traffic (updates, sync, metrics) is off.
OFFLINE_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium (CI does)"),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="live pages need the Redis channel layer"),
]


@pytest.fixture
def page(asgi_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    """A browser page; it closes before the server stops (so no request is cut off half-way)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM calls
    # are ordinary blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
        page = context.new_page()
        page.set_default_timeout(10_000)
        refused: list[str] = []  # what the Content-Security-Policy blocked: nothing, on any page
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        yield page
        context.close()
        assert not refused, refused
        browser.close()
        # the test's ORM calls ran while Playwright's loop was running, in a context of their own
        # (asgiref locals): close that context's connections, or they outlive the test database
        connections.close_all()


def sign_up(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Fill in the sign-up page as ``name`` and send it."""
    page.get_by_label("Username").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.com")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign up").click()


def api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(
        method, f"{base}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture(params=["card", "embedded"])
def market(request, settings):  # type: ignore[no-untyped-def]
    """How the marketplace is set up: ``card``, paid by card (localstripe) with the escrow in the
    ledger; ``embedded``, what ``make run`` serves: the escrow on the in-process chain, no payment
    keys, and demo credit instead (the client has no wallet: custody funds its leases)."""
    if request.param == "card":
        yield {"kind": "card", "stripe": request.getfixturevalue("fake_stripe"), "prefix": ""}
        return
    from chain import adapter

    settings.ESCROW_BACKEND, settings.CHAIN_BACKEND = "chain", "embedded"
    settings.STRIPE_SECRET_KEY = settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.DEMO_CREDIT_CENTS = 100_000
    adapter._embedded.clear()
    yield {"kind": "embedded", "chain": adapter.escrow_client(), "prefix": "embedded-"}
    adapter._embedded.clear()


def test_rent_a_gpu_from_the_landing_page_to_a_refund(page, asgi_server: str, market: dict) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    base = asgi_server
    cheap, dear = f.provider(gpus={"h100-sxm-80gb": 8}), f.provider(gpus={"h100-sxm-80gb": 8}, reputation=800)
    if market["kind"] == "embedded":  # providers are paid by the contract, into their wallets
        for p, index in ((cheap, 6), (dear, 7)):
            Wallet.objects.create(user=p.user, address=market["chain"].w3.eth.accounts[index])

    def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
        page.screenshot(path=str(SCREENSHOTS / f"{market['prefix']}{name}.png"), full_page=True)

    tokens = {
        p.pk: accounts.token_issue(user=p.user, name="agent", scope=TokenScope.PROVIDER).secret for p in (cheap, dear)
    }

    # the landing page, then sign up as a client
    page.goto(base + "/")
    expect(page.locator("#gpus-online")).to_have_text("16")
    shot(page, "01-landing")
    page.get_by_role("link", name="Rent GPUs").first.click()
    sign_up(page, "grace")
    expect(page.get_by_role("heading", name="Hello, grace")).to_be_visible()
    shot(page, "02-dashboard")

    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Add funds").click()
    page.get_by_label("Amount ($)").fill("50")
    if market["kind"] == "card":
        # add $50 by card: the page mounts Stripe's Payment Element (here localstripe's Stripe.js,
        # which fakes only the older Card Element, so the card is confirmed the way Stripe.js would
        # do it); the signed webhook credits the balance and the page we return to shows it
        fake_stripe = market["stripe"]
        send_webhooks_to(fake_stripe, f"{base}/api/v1/payments/stripe/webhook/")
        page.get_by_role("button", name="Continue to payment").click()
        expect(page.get_by_role("heading", name="Pay $50.00")).to_be_visible()
        expect(page.locator("#payment-element input").first).to_be_visible()  # the element is mounted
        shot(page, "03-pay")
        top_up = CardTopUp.objects.get()
        pay_on_the_page(fake_stripe, top_up.payment_intent)
        page.goto(f"{base}/account/top-ups/{top_up.pk}/")
        expect(page.locator("#top-up-status")).to_have_text("Credited")
    else:
        # no payment keys: $50 of demo credit, held in the escrow by the marketplace's custody account
        shot(page, "03-demo-credit")
        page.get_by_role("button", name="Add credit").click()
        expect(page.get_by_text("Added $50.00 of demo credit.")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("$50.00")

    # post an order: the estimate follows the form
    page.get_by_role("navigation").get_by_role("link", name="Rent GPUs").click()
    # the default template, PyTorch + Jupyter, starts with a fresh Jupyter token
    expect(page.get_by_label("Variable name").first).to_have_value("JUPYTER_TOKEN")
    page.locator("#id_template").select_option("inference")  # a template fills the workload
    expect(page.get_by_label("Image")).to_have_value("vllm/vllm-openai:v0.11.0")
    expect(page.get_by_label("Model to serve")).to_have_value("Qwen/Qwen2.5-7B-Instruct")  # its own field shows
    expect(page.locator("#id_ports")).to_have_value("8000")
    page.get_by_label("Image").fill("ghcr.io/acme/trainer:1.4")
    page.get_by_label("GPU models").select_option("h100-sxm-80gb")
    page.get_by_label("GPUs").fill("2")
    page.get_by_label("Hours").fill("2")
    page.get_by_label("Most you pay per GPU-hour ($)").fill("2.50")
    page.get_by_label("Bid window (seconds)").fill("300")
    page.get_by_label("Bid window (seconds)").blur()
    expect(page.locator("#estimate")).to_contain_text("At most $10.00")
    # environment variables: the Jupyter template's token row was emptied when another template
    # was chosen; a plain variable, and a secret typed unseen in a row the page adds
    expect(page.get_by_label("Variable name")).to_have_count(2)
    expect(page.get_by_label("Variable name").first).to_have_value("")
    page.get_by_label("Variable name").first.fill("MODE")
    page.get_by_label("Variable value").first.fill("train")
    page.get_by_role("button", name="Add a variable").click()
    expect(page.get_by_label("Variable name")).to_have_count(3)
    page.get_by_label("Variable name").nth(2).fill("HF_TOKEN")
    page.get_by_label("Secret variable").nth(2).check()
    expect(page.get_by_label("Variable value").nth(2)).to_have_attribute("type", "password")
    page.get_by_label("Variable value").nth(2).fill("hf_typed_in_the_browser")
    shot(page, "04-new-order")
    page.get_by_role("button", name="Post the order").click()
    expect(page.get_by_role("heading", name=re.compile(r"Order #\d+"))).to_be_visible()
    order = Order.objects.get()
    assert order.env == [
        {"name": "MODE", "value": "train", "secret": False},
        {"name": "HF_TOKEN", "value": "hf_typed_in_the_browser", "secret": True},
    ]
    expect(page.locator("#order-env")).to_have_text("Environment: MODE=train, HF_TOKEN (secret, not shown)")
    assert "hf_typed_in_the_browser" not in page.content()
    expect(page.get_by_text("Waiting for bids")).to_be_visible()
    # the live socket is up (Playwright's own locator: a polled predicate string would be an eval,
    # which the pages' Content-Security-Policy refuses once the first check does not pass at once)
    expect(page.locator("#live")).to_have_attribute("data-state", "online")

    # two providers bid over the API: the page shows them as they come, cheapest first
    api(base, tokens[dear.pk], "POST", f"/orders/{order.pk}/bids/", {"price_per_hour": 4_600_000})
    expect(page.locator("#bids tbody tr")).to_have_count(1)
    api(base, tokens[cheap.pk], "POST", f"/orders/{order.pk}/bids/", {"price_per_hour": 4_000_000})
    expect(page.locator("#bids tbody tr")).to_have_count(2)
    # the socket's event carried the row: the page put it first without fetching the list
    expect(page.locator("#bids tbody tr").first).to_have_class(re.compile(r"\bfresh\b"))
    expect(page.locator("#bids tbody tr").first).to_contain_text("$2.00")  # per GPU-hour
    expect(page.locator("[data-bids-total]")).to_have_text("2")
    shot(page, "05-order-with-bids")

    # accept the cheapest (the row the page built): the lease page, funded; the provider's agent starts it
    page.locator("#bids tbody tr").first.get_by_role("button", name=re.compile("Accept")).click()
    expect(page.get_by_role("heading", name=re.compile(r"Lease #\d+"))).to_be_visible()
    lease = Lease.objects.get()
    expect(page.locator("#lease-status")).to_have_text("Funded")
    if market["kind"] == "embedded":  # funded in the contract, from custody
        chain = market["chain"]
        assert chain.lease(lease.pk).client == chain.custody_address
    expect(page.locator("#live")).to_have_attribute("data-state", "online")  # the lease page's socket
    api(base, tokens[cheap.pk], "POST", f"/leases/{lease.pk}/status/", {"status": "deploying"})
    expect(page.locator("#lease-status")).to_have_text("Deploying")
    api(
        base,
        tokens[cheap.pk],
        "POST",
        f"/leases/{lease.pk}/status/",
        {"status": "running", "endpoints": ["203.0.113.7:31888"]},
    )
    expect(page.locator("#lease-status")).to_have_text("Running")
    expect(page.locator("#endpoints")).to_contain_text("203.0.113.7:31888")
    # no usage reported yet: nothing accrues, and the meter does not tick ahead of the server
    expect(page.locator("#cost")).to_have_text("$0.00")
    expect(page.locator("#cost")).not_to_have_attribute("data-meter-rate", re.compile(".*"))
    # the agent sends the workload's log tail: it shows as it comes
    api(base, tokens[cheap.pk], "PUT", f"/leases/{lease.pk}/logs/", {"text": "Jupyter Server is running at :8888\n"})
    expect(page.locator("#logs")).to_contain_text("Jupyter Server is running at :8888")
    shot(page, "06-lease-running")

    # close, confirming the dialog: the refund shows, and in the ledger
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Close the lease").click()
    expect(page.locator("#lease-status")).to_have_text("Closed")
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED and lease.refunded_to_client > 0
    expect(page.locator("#refunded")).to_have_text(ledger.format_usd(lease.refunded_to_client))
    shot(page, "07-lease-closed")
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("cell", name=re.compile("Refunded to client")).first).to_be_visible()
    expect(page.locator("#balance")).to_have_text(ledger.format_usd(50 * USD - lease.paid_to_provider))
    shot(page, "08-account")
    if market["kind"] == "embedded":  # the books and the contract agree
        assert escrow.reconcile() == []
        assert chain.balance_of(chain.custody_address) == 50 * USD - lease.paid_to_provider

    # on a phone: nothing is wider than the screen (wide tables scroll inside their frame)
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in (("landing", "/"), ("lease", f"/leases/{lease.pk}/"), ("order", f"/orders/{order.pk}/")):
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        shot(page, f"09-phone-{name}")


def test_a_newcomer_rents_an_ssh_box_from_an_offer_row_and_works_in_it(  # type: ignore[no-untyped-def]
    page, asgi_server: str, demo_agent, tmp_path: Path
) -> None:
    """ "Done when", as after ``make run``: nobody but the newcomer and the demo provider's agent.
    Sign up, add credit and an SSH key, rent the SSH box from an offer row; the agent bids by its
    pricing policy, the client accepts at the price on the button; the lease is funded on the
    in-process chain, the agent runs the container, and the page follows its log live. A shell on
    the page finds the account's key in the box, and what it prints to the workload's output shows
    in the log as it is written. Close: the refund lands in the ledger, the statement downloads in
    dollars, the agent takes the container down. (The ``ssh`` login itself, over a published port:
    tests/agent/test_ssh_box.py.)"""
    from playwright.sync_api import expect

    from core.models import SshKey
    from tests.agent.images import SSH_IMAGE, our_containers, ssh_box_image

    missing = ssh_box_image(demo_agent["engine"])
    if missing:
        pytest.skip(missing)
    base = asgi_server

    def shot(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"journey-{name}.png"), full_page=True)

    page.goto(base + "/")
    page.get_by_role("link", name="Rent GPUs").first.click()
    sign_up(page, "ada")
    page.get_by_role("link", name="Add funds").first.click()
    page.get_by_label("Amount ($)").fill("20")
    page.get_by_role("button", name="Add credit").click()
    expect(page.locator("#balance")).to_have_text("$20.00")

    # an SSH key on the account
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    page.get_by_role("link", name="Account").click()
    page.locator("#id_ssh-name").fill("laptop")
    page.get_by_label("Public key").fill((tmp_path / "key.pub").read_text())
    page.get_by_role("button", name="Add the key").click()
    expect(page.locator("#ssh-key-list")).to_contain_text("laptop")
    key = SshKey.objects.get()
    expect(page.locator("#ssh-key-list")).to_contain_text(key.fingerprint)
    shot("01-account-key")

    # an offer row's "Rent this": the form filled with its model and a maximum just above its price;
    # the SSH box template, its image changed to one this machine has (nothing is pulled here)
    page.get_by_role("navigation").get_by_role("link", name="Offers").click()
    page.get_by_role("link", name=re.compile("Rent GeForce RTX 4090")).click()
    expect(page.get_by_label("Most you pay per GPU-hour ($)")).to_have_value(re.compile(r"^0\.3[6-9]$"))
    page.locator("#id_template").select_option("ssh")
    expect(page.get_by_label("Image")).to_have_value("linuxserver/openssh-server:latest")
    expect(page.get_by_label("Variable name").first).to_have_value("USER_NAME")
    page.get_by_label("Image").fill(SSH_IMAGE)
    page.get_by_label("Hours").fill("2")
    shot("02-rent-this")
    page.get_by_role("button", name="Post the order").click()
    expect(page.get_by_role("heading", name=re.compile(r"Order #\d+"))).to_be_visible()
    order = Order.objects.get()
    assert [m.pk for m in order.gpu_models.all()] == ["rtx-4090-24gb"]

    # the demo agent hears of the order and bids its asking price: $0.35 per GPU-hour; accepted at it
    row = page.locator("#bids tbody tr")
    expect(row).to_have_count(1, timeout=20_000)
    expect(row.first).to_contain_text("Demo GPU Cloud")
    shot("03-order-with-the-agents-bid")
    row.first.get_by_role("button", name=re.compile(r"Accept.*\$0\.35")).click()
    expect(page.get_by_role("heading", name=re.compile(r"Lease #\d+"))).to_be_visible()
    lease = Lease.objects.get()
    assert lease.price_per_hour == 350_000

    # funded on chain, then the agent starts the container and reports it running
    expect(page.locator("#lease-status")).to_have_text("Running", timeout=20_000)
    container = demo_agent["engine"].containers.get(f"{CONTAINERS}{lease.pk}")
    assert container.status == "running"

    # a shell in the box, from the page: relayed over the agent's socket to docker exec
    page.get_by_role("button", name="Open a shell").click()
    expect(page.locator("#shell-status")).to_have_text("Connected.", timeout=15_000)
    terminal = page.locator("#terminal .xterm-rows")
    expect(terminal).to_contain_text("$")  # the prompt of the box's unprivileged user
    page.locator("#terminal").click()
    page.keyboard.type("cut -c1-11 ~/.ssh/authorized_keys; echo $((6*7)) from $(id -un)")
    page.keyboard.press("Enter")
    expect(terminal).to_contain_text("ssh-ed25519", timeout=10_000)  # the account's key, in the box
    expect(terminal).to_contain_text("42 from box")
    expect(page.locator("#shell-sessions")).to_contain_text("opened a shell")
    # what the shell writes to the workload's output is in the log as it is written
    page.keyboard.type("echo Hello from your GPU box > /proc/1/fd/2")
    page.keyboard.press("Enter")
    expect(page.locator("#logs")).to_contain_text("Hello from your GPU box", timeout=20_000)
    shot("04-shell-and-live-log")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Close the lease").click()
    expect(page.locator("#lease-status")).to_have_text("Closed")
    lease.refresh_from_db()
    [session] = lease.shell_sessions.all()
    assert session.ended_at is not None and session.end_reason == "the lease stopped running"
    assert lease.refunded_to_client > 0 and lease.paid_to_provider + lease.refunded_to_client == lease.deposit
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the statement (CSV)").click()
    statement = Path(download.value.path()).read_text()
    assert statement.startswith("period_start,period_end,run_seconds,gpu_hours,price_per_hour_usd,amount_usd")
    assert "refunded_to_client," in statement
    shot("05-closed")
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("cell", name=re.compile("Refunded to client")).first).to_be_visible()
    expect(page.locator("#balance")).to_have_text(ledger.format_usd(20 * USD - lease.paid_to_provider))
    shot("06-refunded")
    assert escrow.reconcile() == []

    # the agent takes the container down once it hears the lease closed
    deadline = time.monotonic() + 20
    while our_containers(demo_agent["engine"], lease.pk):
        assert time.monotonic() < deadline, demo_agent["log"].read_text()[-2000:]
        time.sleep(0.5)


def test_a_bid_placed_before_the_pages_socket_opens_shows_when_it_opens(page, asgi_server: str) -> None:  # type: ignore[no-untyped-def]
    """An agent may bid between the order page's render and its socket's open, when nobody
    listens to the order's group (the layer keeps nothing for later): the page fetches its bids
    once the socket is open, so the bid shows at once, not at the next 20-second refresh."""
    from playwright.sync_api import expect

    base = asgi_server
    bidder = f.provider(gpus={"h100-sxm-80gb": 8})
    token = accounts.token_issue(user=bidder.user, name="agent", scope=TokenScope.PROVIDER).secret
    page.goto(base + "/accounts/signup/")
    sign_up(page, "lin")
    expect(page.get_by_role("heading", name="Hello, lin")).to_be_visible()
    client = User.objects.get(username="lin")
    ledger.deposit(user=client, amount=100 * USD, key="test:deposit:lin")
    order = f.order(client, bid_window_seconds=300)

    # the page's socket waits until the bid is in: then it reaches the server and opens
    def hold(socket) -> None:  # type: ignore[no-untyped-def]
        api(base, token, "POST", f"/orders/{order.pk}/bids/", {"price_per_hour": 4_000_000})
        socket.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/orders/\d+/$"), hold)
    page.goto(f"{base}/orders/{order.pk}/")
    expect(page.locator("#live")).to_have_attribute("data-state", "online")
    expect(page.locator("#bids tbody tr")).to_have_count(1, timeout=5_000)
    expect(page.locator("#bids tbody tr").first).to_contain_text(bidder.name)


def test_an_oversized_workload_file_is_refused_on_the_page_with_the_text_kept(page, asgi_server: str) -> None:  # type: ignore[no-untyped-def]
    """The server reads at most MAX_REQUEST_BODY_BYTES: the order form checks the size before it
    sends, says so beside the button, and keeps the file as typed (nothing is sent, nothing lost)."""
    from playwright.sync_api import expect

    page.goto(asgi_server + "/accounts/signup/")
    sign_up(page, "mo")
    page.goto(asgi_server + "/orders/new/")
    page.get_by_role("tab", name="Workload file (YAML)").click()
    expect(page.locator("#id_workload_file")).to_be_visible()
    huge = "# a very long comment\n" * 100_000  # 2.2 MB, as if pasted (typing it would take minutes)
    page.locator("#id_workload_file").evaluate("(area, text) => { area.value = text; }", huge)
    page.get_by_role("button", name="Post the order").click()
    expect(page.locator("#size-error")).to_be_visible()
    expect(page.locator("#size-error")).to_contain_text("the marketplace reads at most 1.0 MB")
    assert page.url.endswith("/orders/new/") and not Order.objects.exists()
    assert page.locator("#id_workload_file").evaluate("(area) => area.value.length") == len(huge)
    # shortened, it goes
    page.locator("#id_workload_file").evaluate(
        "(area, text) => { area.value = text; }",
        "workload:\n  image: ghcr.io/acme/trainer:1.4\nresources:\n  gpu_count: 1\n  min_vram_gib: 40\n"
        "duration_hours: 2\nmax_price_per_hour: 3000000\n",
    )
    page.get_by_role("button", name="Post the order").click()
    expect(page.get_by_role("heading", name=re.compile(r"Order #\d+"))).to_be_visible()


def test_link_a_browser_wallet_then_sign_in_with_it(page, asgi_server: str) -> None:  # type: ignore[no-untyped-def]
    """Sign-In with Ethereum with a browser wallet: the test's wallet is an EIP-1193 provider
    (``window.ethereum``, as MetaMask injects it) whose key is held by the test."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from playwright.sync_api import expect
    from web3 import Web3

    base = asgi_server
    wallet = Account.create()

    # without a wallet in the browser the button says what to do
    page.goto(base + "/accounts/login/")
    page.get_by_role("button", name="Sign in with Ethereum").click()
    expect(page.get_by_role("status")).to_contain_text("No browser wallet found")

    signed: list[str] = []

    def answer(method: str, params: list) -> object:
        if method == "eth_requestAccounts":
            return [wallet.address]
        if method == "eth_chainId":
            return "0x7a69"
        if method == "personal_sign":
            assert params[1] == wallet.address
            text = bytes.fromhex(params[0][2:]).decode()
            signed.append(text)
            return Web3.to_hex(wallet.sign_message(encode_defunct(text=text)).signature)
        raise ValueError(f"unexpected wallet request {method}")

    page.expose_function("testWallet", answer)
    page.add_init_script("window.ethereum = { request: (r) => window.testWallet(r.method, r.params || []) };")

    page.goto(base + "/accounts/signup/")
    sign_up(page, "satoshi")
    page.get_by_role("link", name="Account").click()
    page.get_by_role("button", name="Link a browser wallet").click()
    expect(page.locator("#wallet-list")).to_contain_text(wallet.address)
    assert "Link this wallet to your GPU Market account." in signed[0] and "Chain ID: 31337" in signed[0]
    page.locator("#wallets + .card").screenshot(path=str(SCREENSHOTS / "10-account-wallet.png"))

    page.get_by_role("button", name="Log out").click()
    page.goto(base + "/accounts/login/?next=/account/")
    page.get_by_role("button", name="Sign in with Ethereum").click()
    expect(page.get_by_role("heading", name="Account")).to_be_visible()
    assert "Sign in to GPU Market with this wallet." in signed[1]
    expect(page.locator("#wallet-list")).to_contain_text(wallet.address)

    # unlinked, the wallet signs nobody in, and the page says why
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Unlink {wallet.address}").click()
    expect(page.get_by_text(f"Wallet {wallet.address} unlinked.")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    page.goto(base + "/accounts/login/")
    page.get_by_role("button", name="Sign in with Ethereum").click()
    expect(page.get_by_role("status")).to_contain_text("No account has this wallet linked")
    shot_path = SCREENSHOTS / "10-login-with-ethereum.png"
    page.screenshot(path=str(shot_path), full_page=True)


def test_a_wallet_client_signs_what_it_accepts_in_its_browser_wallet(page, asgi_server: str, settings) -> None:  # type: ignore[no-untyped-def]
    """A client with its own wallet (not the demo's): the order page has its wallet sign the standing
    authorization, and the Accept button the bid's exact terms (EIP-712, ``eth_signTypedData_v4``);
    the escrow contract opens the lease from that wallet on those terms."""
    import json

    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from playwright.sync_api import expect
    from web3 import Web3

    from chain import adapter
    from chain.evm import embedded_key
    from chain.indexer import index_events
    from ledger.deposits import chain_deposits_apply
    from tests.leases.test_escrow_on_chain import fund_from_wallet

    settings.ESCROW_BACKEND, settings.CHAIN_BACKEND = "chain", "embedded"
    adapter._embedded.clear()
    try:
        chain = adapter.escrow_client()
        wallet = Account.from_key(embedded_key(8))  # not the demo's: only its owner signs for it
        base = asgi_server
        page.goto(base + "/accounts/signup/")
        sign_up(page, "vitalik")
        client = User.objects.get(username="vitalik")
        Wallet.objects.create(user=client, address=wallet.address)
        fund_from_wallet(chain, wallet.address, amount=50 * USD, allow=50 * USD)  # from its own wallet
        index_events(client=chain, confirmations=0)
        chain_deposits_apply()
        provider = f.provider(gpus={"h100-sxm-80gb": 8})
        Wallet.objects.create(user=provider.user, address=chain.w3.eth.accounts[6])
        order = f.order(client, duration_hours=2, max_price_per_hour=10 * USD, bid_window_seconds=300)
        f.bid(provider, order, 3 * USD)

        signed: list[dict] = []

        def answer(method: str, params: list) -> object:
            if method == "eth_requestAccounts":
                return [wallet.address]
            if method == "eth_signTypedData_v4":
                assert params[0] == wallet.address
                typed = json.loads(params[1])
                signed.append(typed)
                if typed["primaryType"] == "Acceptance":  # while the wallet signs, the live panel redraws
                    page.evaluate("htmx.trigger('#live', 'live')")
                    page.wait_for_timeout(1500)
                return Web3.to_hex(Account.sign_message(encode_typed_data(full_message=typed), wallet.key).signature)
            raise ValueError(f"unexpected wallet request {method}")

        page.expose_function("testWallet", answer)
        page.add_init_script("window.ethereum = { request: (r) => window.testWallet(r.method, r.params || []) };")
        page.goto(f"{base}/orders/{order.pk}/")
        page.get_by_role("button", name="Sign the standing authorization").click()
        # the wallet signs, the page posts, the server verifies: beyond expect's 5 s on a busy machine
        expect(page.locator("#authorization")).to_contain_text(
            "Your wallet signed the standing authorization", timeout=15_000
        )
        order.refresh_from_db()
        assert order.authorization["signer"] == wallet.address and signed[0]["primaryType"] == "Authorization"

        page.locator("#bids tbody tr").first.get_by_role("button", name=re.compile("Accept")).click()
        expect(page.get_by_role("heading", name=re.compile(r"Lease #\d+"))).to_be_visible()
        expect(page.locator("#lease-status")).to_have_text("Funded")
        accepted = signed[-1]
        assert accepted["primaryType"] == "Acceptance"
        assert (accepted["message"]["pricePerHour"], accepted["message"]["deposit"]) == (3 * USD, 6 * USD)
        assert accepted["message"]["provider"] == chain.w3.eth.accounts[6]
        lease = Lease.objects.get()
        on_chain = chain.lease(lease.pk)
        assert (on_chain.client, on_chain.provider, on_chain.balance) == (
            wallet.address,
            chain.w3.eth.accounts[6],
            6 * USD,
        )
    finally:
        adapter._embedded.clear()
