"""Production settings: Prometheus metrics at /metrics (the market's own numbers and the request
metrics), HTTPS hardening, CORS for the API only, JSON logs, Sentry; `manage.py check --deploy`
passes with the production environment the chart sets."""

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from leases import services as leases
from marketplace.models import Order
from tests import factories as f
from tests import processes
from tests.trust.test_consequences import failed_check, lease_on, small_challenges  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def scrape(client: Client, **headers: str) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.django_db
def test_metrics_report_the_market_and_the_requests(settings) -> None:  # type: ignore[no-untyped-def]
    provider = f.provider(gpus={"h100-sxm-80gb": 8})
    client = f.client_user(balance=1000 * f.USD)
    open_order = f.order(client)
    f.bid(provider, open_order, 3 * f.USD)
    lease = lease_on(provider, client, "h100-sxm-80gb", ran=600)
    leases.leases_settle()
    awarded = Order.objects.get(pk=lease.order_id)  # as if the deadline's task awarded it 2.5 s late
    now = timezone.now()
    Order.objects.filter(pk=awarded.pk).update(
        created_at=now - timedelta(minutes=3), deadline=now - timedelta(seconds=2.5), closed_at=now
    )
    failed_check(f.provider(gpus={"a100-sxm-80gb": 1}), "a100-sxm-80gb")

    samples = scrape(Client())
    assert samples["gpumarket_orders_open"][()] == 1
    assert samples["gpumarket_bids_total"][()] == 2
    assert samples["gpumarket_leases_running"][()] == 1
    assert 0 <= samples["gpumarket_settlement_lag_seconds"][()] < 60  # just settled
    assert samples["gpumarket_agents_online"][()] == 2
    assert samples["gpumarket_gpu_checks_total"][(("result", "failed"),)] == 1
    assert 2.4 < samples["gpumarket_award_latency_seconds"][(("quantile", "0.99"),)] < 3.5
    assert samples["gpumarket_award_latency_seconds_count"][()] == 1
    # django-prometheus: requests by view, responses by status
    assert any(name.startswith("django_http_requests_total_by_view") for name in samples)

    settings.METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "gpumarket_orders_open" in scrape(Client(), HTTP_AUTHORIZATION="Bearer s3cret")


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_REDIRECT_EXEMPT=[r"^healthz$", r"^readyz$", r"^metrics$"],
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    SECURE_HSTS_SECONDS=31_536_000,
)
def test_over_https_plain_http_is_redirected_except_the_probes_and_headers_are_strict() -> None:
    client = Client()
    redirected = client.get("/offers/")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    secure = client.get("/offers/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000"
    assert secure["X-Frame-Options"] == "DENY" and secure["X-Content-Type-Options"] == "nosniff"
    assert secure["Referrer-Policy"] == "same-origin" and secure["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.django_db
@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_lets_configured_origins_call_the_api_and_nothing_else() -> None:
    client = Client()
    preflight = client.options(
        "/api/v1/offers/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, idempotency-key",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "idempotency-key" in preflight["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in preflight  # tokens, not cookies
    other = client.get("/api/v1/offers/", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    page = client.get("/offers/", HTTP_ORIGIN="https://app.example.com")
    assert "Access-Control-Allow-Origin" not in page  # pages are not an API


def _environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "k" * 60, **extra}


def test_logs_are_one_json_object_a_line_when_asked() -> None:
    program = (
        "import django, logging; django.setup(); "
        "logging.getLogger('leases.services').warning('closed %d leases', 3, extra={'fields': {'lease': 7}})"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=_environment(LOG_FORMAT="json"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["event"] == "closed 3 leases" and record["level"] == "warning"
    assert record["logger"] == "leases.services" and record["fields"] == {"lease": 7} and record["timestamp"]


def test_errors_reach_sentry_where_a_dsn_is_set() -> None:
    received: list[bytes] = []

    class Sentry(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding")
            received.append({"gzip": gzip.decompress, "br": brotli.decompress}.get(encoding, bytes)(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sentry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/1"
    program = (
        "import django, sentry_sdk; django.setup(); "
        "integrations = sentry_sdk.get_client().options['integrations']; "
        "assert any(type(i).__name__ == 'DjangoIntegration' for i in integrations), integrations; "
        "sentry_sdk.capture_message('settlement lagging'); sentry_sdk.flush(5)"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=_environment(SENTRY_DSN=dsn), capture_output=True, text=True
    )
    server.shutdown()
    assert done.returncode == 0, done.stderr
    assert any(b"settlement lagging" in body for body in received)


def test_the_production_environment_passes_djangos_deployment_checks() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_environment(
            SECRET_KEY="v8%k2!qZ7#mT4@pL9&wR6^xN3*bF1$hJ5(cD0)sG8_yU2+eA7=oI4-nK6",
            DEBUG="false",
            HTTPS="true",
            ALLOWED_HOSTS="market.example.com",
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorns_workers_sum_their_request_metrics(tmp_path: Path) -> None:
    """The web process as the chart runs it: gunicorn with config/gunicorn.py, two workers, metrics
    in a shared directory; /metrics counts the requests every worker served."""
    from chain.devnode import free_port
    from tests.marketplace.test_deadline_worker import database_url

    port = free_port()
    env = _environment(
        DATABASE_URL=database_url(),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        DB_POOL="false",
    )
    server = processes.start(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import requests

        base = f"http://127.0.0.1:{port}"
        # The workers import Django before they answer: on a busy two-core machine that took over 30 s.
        deadline = time.monotonic() + 180
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
        for _ in range(40):  # spread over both workers
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        text = requests.get(f"{base}/metrics", timeout=10).text
        served = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "django_http_responses_total_by_status_view_method_total"
            and sample.labels.get("view") == "healthz"
        )
        assert served >= 41
        assert len(list((tmp_path / "prometheus").glob("*.db"))) >= 2  # both workers wrote theirs
        assert "gpumarket_orders_open 0.0" in text
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_and_only_the_payment_page_allows_stripe() -> None:
    page = Client().get("/offers/")
    policy = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"  # no inline scripts, nobody else's
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["form-action"] == "'self'" and "stripe" not in page["Content-Security-Policy"]
    templates = ROOT / "templates"
    for template in templates.rglob("*.html"):  # nothing the policy would block: no inline script or handler
        text = template.read_text()
        assert "<script>" not in text, template
        assert not re.search(r"\son(click|submit|change|load|input)=", text), template
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200 and "Content-Security-Policy" not in docs  # its own inline scripts


@pytest.mark.django_db
def test_passwords_are_stored_with_a_slow_salted_hash(production_hashers) -> None:  # type: ignore[no-untyped-def]
    """The suite hashes with a fast hasher; the product stores PBKDF2 (Django's default)."""
    from core import services as accounts

    user = accounts.user_create(username="hashed", password="a long enough passphrase")
    algorithm, iterations, salt, _ = user.password.split("$")
    assert algorithm == "pbkdf2_sha256" and int(iterations) >= 1_000_000 and len(salt) >= 16
    assert user.check_password("a long enough passphrase") and not user.check_password("another")
