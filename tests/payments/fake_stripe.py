"""localstripe, a stateful fake Stripe server, started on 127.0.0.1 for a test (the ``fake_stripe``
fixture lives in tests/conftest.py), and what Stripe.js would do in a browser."""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import stripe
from django.test import override_settings

from chain.devnode import free_port
from tests import processes

SECRET = "whsec_test_only"


def run_fake_stripe(directory: Path) -> Iterator[str]:
    port = free_port()
    binary = Path(sys.executable).with_name("localstripe")
    process = processes.start(
        [str(binary), "--port", str(port), "--from-scratch"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # a busy two-core machine is slow to start a Python server
    while True:
        try:
            requests.get(f"{url}/v1/customers", auth=("sk_test_x", ""), timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):
            assert time.monotonic() < deadline and process.poll() is None, "localstripe did not start"
            time.sleep(0.1)
    with override_settings(
        STRIPE_SECRET_KEY="sk_test_x",
        STRIPE_PUBLISHABLE_KEY="pk_test_x",
        STRIPE_WEBHOOK_SECRET=SECRET,
        STRIPE_API_BASE=url,
        STRIPE_JS_URL=f"{url}/js.stripe.com/v3/",  # localstripe serves a Stripe.js of its own
    ):
        yield url
    process.terminate()
    process.wait(timeout=10)


def send_webhooks_to(url: str, target: str) -> None:
    """Have localstripe deliver its events, signed, to ``target``."""
    requests.post(f"{url}/_config/webhooks/market", data={"url": target, "secret": SECRET}, timeout=5)


def stripe_api(url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": url})


def pay_on_the_page(url: str, payment_intent: str) -> None:
    """What Stripe.js does in the browser: attach a card and confirm."""
    api = stripe_api(url)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = api.v1.payment_methods.create(params={"type": "card", "card": card})
    api.v1.payment_intents.update(payment_intent, params={"payment_method": method.id})
    api.v1.payment_intents.confirm(payment_intent)
