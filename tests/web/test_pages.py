"""The web UI's pages, with Django's test client: every page renders, forms keep what was typed
and show errors next to the field, nobody sees someone else's order or lease."""

import re

import pytest
from django.core import mail
from django.test import Client

from leases.models import Lease
from marketplace import presenters
from marketplace import services as market
from marketplace.models import Order
from providers.models import ProviderGpu
from tests import factories as f
from tests.factories import USD

pytestmark = pytest.mark.django_db


def browser(user=None) -> Client:  # type: ignore[no-untyped-def]
    c = Client(enforce_csrf_checks=True)
    if user is not None:
        c.force_login(user)
    return c


def post(c: Client, url: str, data: dict):  # type: ignore[no-untyped-def]
    """A form post with the CSRF token the page gave."""
    if "csrftoken" not in c.cookies:
        c.get("/")  # every page carries the token
    return c.post(url, {**data, "csrfmiddlewaretoken": c.cookies["csrftoken"].value})


def test_the_landing_page_shows_the_market_at_a_glance() -> None:
    p = f.provider(gpus={"h100-sxm-80gb": 8, "rtx-4090-24gb": 4}, verified=True)
    ProviderGpu.objects.filter(provider=p, gpu_model_id="h100-sxm-80gb").update(price_per_gpu_hour=2_500_000)
    page = browser().get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "GPUs online" in html and ">12<" in html  # 8 + 4
    assert "H100" in html and "$2.50" in html
    assert 'href="/accounts/signup/?role=provider"' in html


def test_sign_up_log_out_and_in_again() -> None:
    c = browser()
    c.get("/accounts/signup/")
    bad = c.post(
        "/accounts/signup/",
        {
            "username": "ada",
            "email": "not-an-email",
            "password": "123",
            "role": "client",
            "csrfmiddlewaretoken": c.cookies["csrftoken"].value,
        },
    )
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'value="ada"' in html  # what was typed stays
    assert "Enter a valid email address." in html and 'aria-invalid="true"' in html
    good = c.post(
        "/accounts/signup/",
        {
            "username": "ada",
            "email": "ada@example.com",
            "password": "a long enough passphrase",
            "role": "both",
            "csrfmiddlewaretoken": c.cookies["csrftoken"].value,
        },
    )
    assert good.status_code == 302 and good["Location"] == "/dashboard/"
    dashboard = c.get("/dashboard/").content.decode()
    assert "Hello, ada" in dashboard and "As a provider" in dashboard and "New order" in dashboard
    assert c.post("/accounts/logout/", {"csrfmiddlewaretoken": c.cookies["csrftoken"].value}).status_code == 302
    assert c.get("/dashboard/").status_code == 302  # to the login page
    c.get("/accounts/login/")
    login = c.post(
        "/accounts/login/",
        {
            "username": "ada",
            "password": "a long enough passphrase",
            "csrfmiddlewaretoken": c.cookies["csrftoken"].value,
        },
    )
    assert login.status_code == 302 and login["Location"] == "/dashboard/"


def test_a_form_without_its_csrf_token_is_refused() -> None:
    c = browser(f.client_user())
    assert c.post("/account/tokens/", {"name": "x", "scope": "client"}).status_code == 403


def test_password_reset_sends_a_link_that_works_once() -> None:
    from core import services as accounts

    accounts.user_create(username="bob", email="bob@example.com", password="old passphrase here")
    c = browser()
    assert post(c, "/accounts/password_reset/", {"email": "bob@example.com"}).status_code == 302
    [message] = mail.outbox
    link = next(line for line in message.body.splitlines() if "/accounts/reset/" in line)
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = c.get("/" + path, follow=True)
    assert form.status_code == 200 and "Choose a new password" in form.content.decode()
    done = c.post(
        form.redirect_chain[-1][0],
        {
            "new_password1": "a new passphrase 42",
            "new_password2": "a new passphrase 42",
            "csrfmiddlewaretoken": c.cookies["csrftoken"].value,
        },
    )
    assert done.status_code == 302
    assert "not valid any more" in c.get("/" + path, follow=True).content.decode()


def test_tokens_are_shown_once_and_can_be_revoked() -> None:
    user = f.client_user()
    c = browser(user)
    created = post(c, "/account/tokens/", {"name": "laptop", "scope": "client"})
    assert created.status_code == 200
    html = created.content.decode()
    assert "shown once" in html and "gpm_" in html
    token = user.api_tokens.get()
    secret = html.split('id="new-token">')[1].split("<")[0]
    assert secret.startswith("gpm_") and token.prefix in secret
    later = c.get("/account/").content.decode()
    assert secret not in later and token.prefix in later  # only its prefix from now on
    assert post(c, f"/account/tokens/{token.pk}/revoke/", {}).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    empty = post(c, "/account/tokens/", {"name": "", "scope": "client"})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()


ORDER_FIELDS = {
    "mode": "form",
    "template": "custom",
    "image": "ghcr.io/acme/trainer:1.4",
    "gpu_count": "1",
    "gpu_models": ["h100-sxm-80gb"],
    "cpu_cores": "8",
    "memory_gib": "64",
    "storage_gib": "100",
    "duration_hours": "3",
    "max_price_per_gpu_hour": "2.50",
    "bid_window_seconds": "60",
    "pricing_rule": "first_price",
    "verification": "none",
    "min_reliability": "0",
}


def test_the_new_order_form_validates_like_the_api_and_estimates_the_cost() -> None:
    client = f.client_user()
    c = browser(client)
    page = c.get("/orders/new/").content.decode()
    assert "PyTorch + Jupyter" in page and 'name="image"' in page
    fields = {
        **ORDER_FIELDS,
        "name": "finetune",
        "image": "Not An Image!",
        "command": "python train.py --epochs 3",
        "ports": "8888",
        "gpu_count": "2",
        "pricing_rule": "second_price",
        "min_reliability": "70",
    }
    refused = post(c, "/orders/new/", fields)
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "Not a valid image reference" in html and 'value="finetune"' in html
    assert not Order.objects.exists()
    check = post(c, "/orders/new/check/", {**fields, "image": "ghcr.io/acme/trainer:1.4"}).content.decode()
    assert "At most $15.00" in check and "$2.50 per GPU-hour" in check  # 2 GPUs x $2.50 x 3 h
    created = post(c, "/orders/new/", {**fields, "image": "ghcr.io/acme/trainer:1.4"})
    order = Order.objects.get()
    assert created.status_code == 302 and created["Location"] == f"/orders/{order.pk}/"
    assert (order.max_price_per_hour, order.gpu_count, order.duration_hours) == (5 * USD, 2, 3)
    assert order.min_reputation == 700  # "at least 70 %" reliability
    assert not order.open_ended


def test_an_open_ended_order_from_the_form_says_what_its_first_deposit_pays_for() -> None:
    client = f.client_user()
    c = browser(client)
    fields = {**ORDER_FIELDS, "image": "ghcr.io/acme/trainer:1.4", "gpu_count": "2", "open_ended": "on"}
    check = post(c, "/orders/new/check/", fields).content.decode()
    assert "At most $15.00</strong> for the first 3 h (open-ended: it runs while you top it up)" in check
    created = post(c, "/orders/new/", fields)
    order = Order.objects.get()
    assert created.status_code == 302 and (order.open_ended, order.duration_hours) == (True, 3)
    page = c.get(f"/orders/{order.pk}/").content.decode()
    assert "open-ended: runs while funded (the first deposit pays for 3 h)" in page


def env_rows(*rows: tuple[str, str, bool]) -> dict:
    """The form's environment rows as the page posts them (a Django formset)."""
    data: dict = {"env-TOTAL_FORMS": str(len(rows)), "env-INITIAL_FORMS": "0"}
    for i, (name, value, secret) in enumerate(rows):
        data |= {f"env-{i}-name": name, f"env-{i}-value": value}
        if secret:
            data[f"env-{i}-secret"] = "on"
    return data


def test_environment_variables_and_secrets_from_the_form() -> None:
    client = f.client_user()
    c = browser(client)
    page = c.get("/orders/new/").content.decode()
    assert 'name="env-TOTAL_FORMS"' in page and 'aria-label="Variable name"' in page
    assert '<template id="env-empty-row">' in page and "env-__prefix__-name" in page
    # the API's rules, each beside its row, with the rows kept as typed (a secret in a password field)
    for rows, problem in (
        ([("1BAD", "x", False)], "Letters, digits and underscores, not starting with a digit."),
        ([("TOKEN", "bad\x07value", True)], "Control characters are not allowed"),
        ([("TOKEN", "bad\x00value", True)], "Null characters are not allowed."),
        ([("MODE", "a", False), ("MODE", "b", False)], "Duplicate names: MODE."),
    ):
        refused = post(c, "/orders/new/", {**ORDER_FIELDS, **env_rows(*rows)})
        html = refused.content.decode()
        assert refused.status_code == 400 and problem in html, problem
        assert 'value="' + rows[0][0] + '"' in html
        assert not Order.objects.exists()
    kept = post(c, "/orders/new/", {**ORDER_FIELDS, **env_rows(("1BAD", "x", False), ("TOKEN", "s3cret", True))})
    assert 'type="password" name="env-1-value" id="id_env-1-value" value="s3cret"' in kept.content.decode()
    too_many = post(c, "/orders/new/", {**ORDER_FIELDS, **env_rows(*[(f"V{i}", "x", False) for i in range(65)])})
    assert too_many.status_code == 400 and not Order.objects.exists()

    # posted: a plain variable, a secret, and an empty row that is no variable
    created = post(
        c,
        "/orders/new/",
        {**ORDER_FIELDS, **env_rows(("MODE", "train", False), ("HF_TOKEN", "hf_s3cret", True), ("", "", False))},
    )
    order = Order.objects.get()
    assert created.status_code == 302
    assert order.env == [
        {"name": "MODE", "value": "train", "secret": False},
        {"name": "HF_TOKEN", "value": "hf_s3cret", "secret": True},
    ]
    # never shown again: not on the page, not in the API
    page = c.get(f"/orders/{order.pk}/").content.decode()
    assert 'HF_TOKEN</code> <span class="muted">(secret, not shown)</span>' in page and "hf_s3cret" not in page
    assert "hf_s3cret" not in f.api(client, f.CLIENT).get(f"/api/v1/orders/{order.pk}/").content.decode()
    # the provider's agent gets it to run the lease, marked secret
    provider = f.provider()
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    manifest = f.api(provider.user, f.PROVIDER).get(f"/api/v1/leases/{lease.pk}/manifest/").json()
    assert manifest["env"] == {"MODE": "train", "HF_TOKEN": "hf_s3cret"} and manifest["secret_env"] == ["HF_TOKEN"]


def test_a_form_too_large_to_read_is_a_page_that_says_what_to_do() -> None:
    """A browser without the form's own size check (or a form without one) still gets words, not
    the API's JSON: the body was never read, so Back keeps the text."""
    c = browser(f.client_user())
    c.get("/orders/new/")
    too_large = c.post(
        "/orders/new/",
        {"mode": "yaml", "workload_file": "x" * 2_000_000, "csrfmiddlewaretoken": c.cookies["csrftoken"].value},
        HTTP_ACCEPT="text/html",
    )
    assert too_large.status_code == 413 and too_large["Content-Type"].startswith("text/html")
    html = too_large.content.decode()
    assert "<h1>Too large</h1>" in html and "Go back: what you typed is still in the form" in html
    assert not Order.objects.exists()
    page = c.get("/orders/new/").content.decode()
    assert 'data-max-bytes="1048576"' in page and 'id="size-error"' in page


def test_a_workload_file_can_be_posted_from_the_yaml_tab() -> None:
    c = browser(f.client_user())
    workload = (
        "workload:\n  image: ghcr.io/acme/trainer:1.4\nresources:\n  gpu_count: 1\n  min_vram_gib: 40\n"
        "duration_hours: 2\nmax_price_per_hour: 3000000\n"
    )
    assert post(c, "/orders/new/", {"mode": "yaml", "workload_file": workload}).status_code == 302
    bad = post(c, "/orders/new/", {"mode": "yaml", "workload_file": "workload: [unclosed"})
    assert bad.status_code == 400 and "Malformed YAML" in bad.content.decode()
    missing = post(c, "/orders/new/", {"mode": "yaml", "workload_file": "duration_hours: 2\n"})
    assert "workload: This field is required." in missing.content.decode()


def test_the_order_page_lists_bids_cheapest_first_and_accepting_opens_the_lease() -> None:
    client = f.client_user()
    order = f.order(client, resources={"gpu_count": 2})
    cheap, dear = f.provider(), f.provider()
    f.bid(dear, order, 4 * USD)
    bid = f.bid(cheap, order, 3 * USD)
    c = browser(client)
    html = c.get(f"/orders/{order.pk}/").content.decode()
    assert html.index("$1.50") < html.index("$2.00")  # per GPU-hour, cheapest first
    assert f'data-live="/ws/orders/{order.pk}/"' in html
    accepted = post(c, f"/orders/{order.pk}/accept/", {"bid": bid.pk})
    lease = Lease.objects.get()
    assert accepted.status_code == 302 and accepted["Location"] == f"/leases/{lease.pk}/"
    page = c.get(f"/leases/{lease.pk}/").content.decode()
    assert "Funded" in page and "$3.00 an hour" in page and "Close the lease" in page


def test_other_people_get_a_404_page_not_someone_elses_order_or_lease() -> None:
    client = f.client_user()
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, USD).pk)
    stranger = browser(f.client_user())
    for url in (
        f"/orders/{order.pk}/",
        f"/orders/{order.pk}/live/",
        f"/leases/{lease.pk}/",
        f"/leases/{lease.pk}/live/",
    ):
        response = stranger.get(url)
        assert response.status_code == 404 and b"<h1>Not found</h1>" in response.content
    assert post(stranger, f"/leases/{lease.pk}/close/", {}).status_code == 404
    assert browser().get("/api/v1/nothing-here/").json()["error"]["code"] == "not_found"


def test_the_client_closes_and_sees_the_refund() -> None:
    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, 2 * USD).pk)
    c = browser(client)
    too_much = post(c, f"/leases/{lease.pk}/top-up/", {"amount": "1000000"})
    assert too_much.status_code == 402 and "Insufficient funds" in too_much.content.decode()
    assert post(c, f"/leases/{lease.pk}/top-up/", {"amount": "abc"}).status_code == 400
    assert post(c, f"/leases/{lease.pk}/top-up/", {"amount": "2"}).status_code == 302
    assert post(c, f"/leases/{lease.pk}/close/", {}).status_code == 302
    lease.refresh_from_db()
    assert lease.status == Lease.Status.CLOSED
    page = c.get(f"/leases/{lease.pk}/").content.decode()
    assert "Refunded to you" in page
    statement = c.get(f"/api/v1/leases/{lease.pk}/statement/?format=csv")  # the page's download link
    assert statement.status_code == 200 and b"refunded_to_client" in statement.content
    account = c.get("/account/").content.decode()
    assert "Refunded to client" in account


def test_the_client_sets_automatic_top_up_on_the_lease_page() -> None:
    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, 2 * USD).pk)
    c = browser(client)
    page = c.get(f"/leases/{lease.pk}/").content.decode()
    assert ">Automatic top-up</h2>" in page and "Off: when the paid time runs out" in page
    assert post(c, f"/leases/{lease.pk}/auto-top-up/", {"limit": "$50.25"}).status_code == 302
    lease.refresh_from_db()
    assert lease.auto_top_up_limit == 50_250_000
    page = c.get(f"/leases/{lease.pk}/").content.decode()
    assert "On: up to $50.25 in all; $0.00 added so far." in page and 'value="50.25"' in page
    # not an amount: the form comes back as typed, with why, and nothing changes
    bad = post(c, f"/leases/{lease.pk}/auto-top-up/", {"limit": "fifty"})
    assert bad.status_code == 400
    assert 'value="fifty"' in bad.content.decode() and "An amount in dollars, e.g. 50" in bad.content.decode()
    lease.refresh_from_db()
    assert lease.auto_top_up_limit == 50_250_000
    # empty turns it off
    assert post(c, f"/leases/{lease.pk}/auto-top-up/", {"limit": ""}).status_code == 302
    lease.refresh_from_db()
    assert lease.auto_top_up_limit == 0
    # someone else's lease is not found; a closed lease takes no limit and says so
    assert post(browser(f.client_user()), f"/leases/{lease.pk}/auto-top-up/", {"limit": "5"}).status_code == 404
    assert post(c, f"/leases/{lease.pk}/close/", {}).status_code == 302
    assert ">Automatic top-up</h2>" not in c.get(f"/leases/{lease.pk}/").content.decode()
    closed = post(c, f"/leases/{lease.pk}/auto-top-up/", {"limit": "5"})
    assert closed.status_code == 409 and "is closed" in closed.content.decode()


def test_the_dashboard_lists_newest_first_and_says_which_leases_failed_and_why() -> None:
    from leases import services as lease_services

    client = f.client_user(balance=100 * USD)
    p = f.provider()
    first, second = f.order(client, name="first job"), f.order(client, name="second job")
    failed = market.order_accept(client=client, order_id=first.pk, bid_id=f.bid(p, first, USD).pk)
    lease_services.lease_report_status(
        user=p.user,
        lease_id=failed.pk,
        status=Lease.Status.FAILED,
        reason="image ghcr.io/acme/nope:1 not found",
        cause=Lease.FailureCause.WORKLOAD,
    )
    running = market.order_accept(client=client, order_id=second.pk, bid_id=f.bid(p, second, USD).pk)
    page = browser(client).get("/dashboard/").content.decode()
    orders = page[page.index("Your orders") : page.index("Your leases")]
    assert orders.index("second job") < orders.index("first job")  # orders: newest first
    listed = f.api(client, f.CLIENT).get("/api/v1/orders/").json()["results"]
    assert [o["name"] for o in listed] == ["second job", "first job"]  # the API's list too
    assert page.index(f"#{running.pk}</a>") < page.index(f"#{failed.pk}</a>")  # leases too
    row = page[page.index(f"#{failed.pk}</a>") :]
    row = row[: row.index("</tr>")]
    assert '<span class="badge bad">Failed</span>' in row
    assert "The deployment failed: image ghcr.io/acme/nope:1 not found" in row
    lease_page = browser(client).get(f"/leases/{failed.pk}/").content.decode()
    assert 'id="lease-status" data-status="closed">Failed</span>' in lease_page  # closed, as it failed


def test_the_order_page_names_the_gpu_models_asked_for() -> None:
    client = f.client_user()
    named = f.order(client, resources={"gpu_models": ["h100-sxm-80gb", "a100-sxm-80gb"], "gpu_count": 1})
    page = browser(client).get(f"/orders/{named.pk}/").content.decode()
    assert "GPU models:</strong> A100 SXM 80GB, H100 SXM 80GB" in " ".join(page.split()) or (
        "GPU models:</strong> H100 SXM 80GB, A100 SXM 80GB" in " ".join(page.split())
    )
    by_memory = f.order(client, resources={"gpu_models": [], "min_vram_gib": 80, "gpu_count": 1})
    page = " ".join(browser(client).get(f"/orders/{by_memory.pk}/").content.decode().split())
    assert "GPU models:</strong> any with at least 80 GiB of memory, that is " in page and "H100 SXM 80GB" in page


def test_every_page_has_an_icon() -> None:
    assert 'rel="icon" href="/static/img/favicon.svg"' in browser().get("/").content.decode()
    icon = browser().get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"] == "/static/img/favicon.svg"


def test_reading_the_logs_asks_for_them_live_and_the_recent_log_downloads() -> None:
    from django.core.cache import cache

    from leases.models import LeaseLog

    client = f.client_user(balance=100 * USD)
    order = f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, USD).pk)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.RUNNING)
    LeaseLog.objects.create(lease=lease, text="epoch 1 loss 0.9\nepoch 2 loss 0.7\n")
    c = browser(client)
    assert cache.get(f"lease-logs-watch:{lease.pk}") is None
    page = c.get(f"/leases/{lease.pk}/").content.decode()
    assert cache.get(f"lease-logs-watch:{lease.pk}") == 1  # its agent was asked to stream
    assert "new lines show as they are written while this page is open" in page
    assert f'href="/leases/{lease.pk}/logs/download/"' in page
    download = c.get(f"/leases/{lease.pk}/logs/download/")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/plain")
    assert download["Content-Disposition"] == f'attachment; filename="lease-{lease.pk}.log"'
    assert download.content.decode() == "epoch 1 loss 0.9\nepoch 2 loss 0.7\n"
    assert browser(f.client_user()).get(f"/leases/{lease.pk}/logs/download/").status_code == 404


def test_an_ssh_box_lease_page_gives_its_client_the_ssh_command() -> None:
    from leases import services as lease_services
    from marketplace.forms import template_initial

    assert {"name": "USER_NAME", "value": "box", "secret": False} in template_initial("ssh")["env"]
    client = f.client_user(balance=100 * USD)
    order = f.order(
        client,
        workload={
            "image": "linuxserver/openssh-server:latest",
            "command": [],
            "args": [],
            "ports": [2222],
            "env": [{"name": "USER_NAME", "value": "box"}],
        },
    )
    provider = f.provider()
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    lease_services.lease_report_status(user=provider.user, lease_id=lease.pk, status=Lease.Status.DEPLOYING)
    lease_services.lease_report_status(
        user=provider.user, lease_id=lease.pk, status=Lease.Status.RUNNING, endpoints=["203.0.113.9:32768"]
    )
    html = browser(client).get(f"/leases/{lease.pk}/").content.decode()
    assert "<code>ssh -p 32768 box@203.0.113.9</code>" in html and 'href="/account/#ssh-keys"' in html
    assert 'id="ssh-command"' not in browser(provider.user).get(f"/leases/{lease.pk}/").content.decode()


def test_the_lease_page_draws_what_the_lease_used() -> None:
    from leases.charts import usage_chart
    from leases.selectors import lease_statement

    client = f.client_user(balance=100 * USD)
    order = f.order(client, max_price_per_hour=36 * USD)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(f.provider(), order, 36 * USD).pk)
    c = browser(client)
    assert 'id="usage-chart"' not in c.get(f"/leases/{lease.pk}/").content.decode()  # nothing reported yet
    f.usage(lease, seconds=60)
    f.usage(lease, seconds=60, run_seconds=30, after=60)  # it ran half of the second minute
    html = c.get(f"/leases/{lease.pk}/").content.decode()
    assert 'id="usage-chart"' in html and html.count("<rect ") == 2
    assert "ran 30 s of 60 s, $0.30" in html and "Cost so far $0.90; 2 usage periods" in html
    chart = usage_chart(lease_statement(lease=lease).periods)
    assert chart is not None
    first, second = chart.bars
    assert first.height == 2 * second.height  # the share of its period each ran
    assert chart.cost_line.startswith("M0 156.0") and chart.cost_line.endswith("L640.0 8.0")  # up to the total
    assert chart.utilization_line == "" and "dashed" not in html  # no GPU readings reported

    # the agent read its GPUs (NVML) when a period ended: a line of their utilisation, memory in the bars
    third = f.usage(lease, seconds=60, after=120)
    third.gpu_utilization_pct, third.gpu_memory_mib = 75.0, 40_960
    third.save()
    html = c.get(f"/leases/{lease.pk}/").content.decode()
    assert "the GPUs' utilisation (dashed, 0 to 100 %)" in html and "GPUs 75 % busy, 40,960 MiB of GPU memory" in html
    chart = usage_chart(lease_statement(lease=lease).periods)
    assert chart is not None and chart.utilization_line == "M640.0 45.0"
    series = f.api(client, f.CLIENT).get(f"/api/v1/leases/{lease.pk}/statement/").json()["periods"]
    assert [(p["gpu_utilization_pct"], p["gpu_memory_mib"]) for p in series] == [
        (None, None),
        (None, None),
        (75.0, 40960),
    ]


def test_offers_filter_and_sort() -> None:
    a = f.provider(gpus={"h100-sxm-80gb": 8}, verified=True, reputation=900)
    b = f.provider(gpus={"rtx-4090-24gb": 2}, region="us-east-1")
    ProviderGpu.objects.filter(provider=a).update(price_per_gpu_hour=2 * USD)
    ProviderGpu.objects.filter(provider=b).update(price_per_gpu_hour=USD // 2)
    c = browser()
    every = c.get("/offers/").content.decode()
    assert every.index("$0.50") < every.index("$2.00")
    only = c.get("/offers/?verified=yes&min_vram=40").content.decode()
    assert a.name in only and b.name not in only
    fragment = c.get("/offers/?region=us-east-1", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and b.name in fragment and a.name not in fragment
    cheap = c.get("/offers/?max_price=1").content.decode()
    assert b.name in cheap and a.name not in cheap
    # dollars and cents, as people type them
    assert a.name not in c.get("/offers/?max_price=1.99").content.decode()
    assert a.name in c.get("/offers/?max_price=%242.00").content.decode()
    assert b.name not in c.get("/offers/?max_price=0.49").content.decode()
    # what it cannot read filters nothing and says why beside the field, kept as typed; never a server error
    odd = c.get("/offers/?min_vram=99999999999999999999999&gpu_count=-1&max_price=1e9")
    assert odd.status_code == 200
    page = odd.content.decode()
    assert a.name in page and b.name in page
    assert 'value="1e9"' in page and "At most $1,000,000." in page
    assert "A price in dollars, e.g. 1.50." in c.get("/offers/?max_price=cheap").content.decode()


def test_rent_this_opens_the_order_form_filled_from_the_offer() -> None:
    a = f.provider(gpus={"h100-sxm-80gb": 8})
    ProviderGpu.objects.filter(provider=a).update(price_per_gpu_hour=2_100_000)
    offer = ProviderGpu.objects.get(provider=a)
    rows = browser().get("/offers/").content.decode()
    assert f'href="/orders/new/?offer={offer.pk}"' in rows and "Rent this" in rows
    # a visitor signs in first, and comes back to the filled form
    visitor = browser().get(f"/orders/new/?offer={offer.pk}")
    assert visitor.status_code == 302 and f"offer%3D{offer.pk}" in visitor["Location"]
    c = browser(f.client_user())
    form = c.get(f"/orders/new/?offer={offer.pk}").content.decode()
    # that model chosen, and a maximum just above the asking price (5 %, rounded up to the cent)
    assert '<option value="h100-sxm-80gb" selected>' in form
    assert 'name="max_price_per_gpu_hour" value="2.21"' in form
    assert 'name="min_vram_gib" ' in form and 'name="min_vram_gib" value=' not in form
    # the models on offer now come first, with how many and from what price
    assert '<optgroup label="On offer now">' in form
    assert "H100 SXM 80GB (80 GiB): 8 on offer from $2.10/GPU-hour" in form
    assert form.index("On offer now") < form.index("Not on offer now")
    # a template named in the link is the starting point
    ssh = c.get(f"/orders/new/?offer={offer.pk}&template=ssh").content.decode()
    assert 'value="linuxserver/openssh-server:latest"' in ssh and 'name="max_price_per_gpu_hour" value="2.21"' in ssh
    # an offer that is gone, or an id no row can have, says so and leaves the form as it starts
    for gone in ("999999", "99999999999999999999999", "x"):
        response = c.get(f"/orders/new/?offer={gone}")
        assert response.status_code == 200
        assert "That offer is no longer available" in response.content.decode()


def test_a_provider_registers_then_sees_inventory_bids_leases_and_earnings() -> None:
    from core import services as accounts

    user = accounts.user_create(username="gpu-farm", is_provider=True)
    c = browser(user)
    page = c.get("/provider/").content.decode()
    assert "Rent out your GPUs" in page
    refused = post(c, "/provider/", {"name": "", "region": "eu"})
    assert refused.status_code == 400 and "This field is required." in refused.content.decode()
    assert post(c, "/provider/", {"name": "GPU Farm", "region": "eu-west-1"}).status_code == 302
    console = c.get("/provider/").content.decode()
    assert "GPU Farm" in console and "offline" in console and "Install the agent" in console
    assert "gpumarket-agent init --marketplace-url http://testserver" in console

    provider = f.provider()  # one that reports GPUs, with a bid and a lease
    client = f.client_user()
    first, second = f.order(client), f.order(client)
    f.bid(provider, first, 2 * USD)
    market.order_accept(client=client, order_id=second.pk, bid_id=f.bid(provider, second, 3 * USD).pk)
    html = browser(provider.user).get("/provider/").content.decode()
    assert "online" in html and "H100 SXM 80GB" in html and 'id="inventory"' in html
    assert f"#{first.pk}" in html and "$2.00" in html  # the open bid
    assert "Earned (after platform fees)" in html and "Funded" in html  # the lease
    assert browser(f.client_user()).get("/provider/").status_code == 302  # clients are sent back


def test_an_order_with_many_bids_shows_the_cheapest_and_says_how_many(monkeypatch: pytest.MonkeyPatch) -> None:
    from marketplace import views

    monkeypatch.setattr(views, "BIDS_SHOWN", 2)
    client = f.client_user()
    order = f.order(client)
    for price in (3 * USD, 2 * USD, 4 * USD):
        f.bid(f.provider(), order, price)
    html = browser(client).get(f"/orders/{order.pk}/live/").content.decode()
    assert "(3, cheapest first; the 2 cheapest shown)" in re.sub(r"<[^>]+>", "", html)
    assert len(re.findall(r'data-bid="\d+"', html)) == 2 and "$4.00/h" not in html


def test_webhook_endpoints_are_managed_from_the_account_page(settings) -> None:  # type: ignore[no-untyped-def]
    from notifications.models import WebhookDelivery, WebhookEndpoint

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    user = f.client_user()
    c = browser(user)
    private = post(c, "/account/webhooks/", {"url": "https://127.0.0.1:9/hook", "events": "lease.*"})
    assert private.status_code == 400 and "not a public address" in private.content.decode()
    assert not WebhookEndpoint.objects.exists()
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # (tests only talk to loopback)
    unknown = post(c, "/account/webhooks/", {"url": "http://127.0.0.1:9/hook", "events": "nonsense.*"})
    assert unknown.status_code == 400 and "Event types:" in unknown.content.decode()
    added = post(c, "/account/webhooks/", {"url": "http://127.0.0.1:9/hook", "events": "order.*, lease.closed"})
    assert added.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["lease.closed", "order.*"]
    page = c.get("/account/").content.decode()
    assert "http://127.0.0.1:9/hook" in page and endpoint.secret in page
    old_secret = endpoint.secret
    assert post(c, f"/account/webhooks/{endpoint.pk}/roll/", {}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret
    assert post(c, f"/account/webhooks/{endpoint.pk}/ping/", {}).status_code == 302
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event_type="webhook.ping").exists()
    assert post(browser(f.client_user()), f"/account/webhooks/{endpoint.pk}/delete/", {}).status_code == 302
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()  # someone else's: refused, nothing removed
    assert post(c, f"/account/webhooks/{endpoint.pk}/delete/", {}).status_code == 302
    assert not WebhookEndpoint.objects.exists()


def test_unread_notifications_show_on_the_dashboard_until_read() -> None:
    from notifications import services as notifications

    user = f.client_user()
    note = notifications.notify(
        user=user, kind="balance.low", title="Lease 7 runs out soon", body="Top it up.", data={}, webhook=False
    )
    c = browser(user)
    assert "Lease 7 runs out soon" in c.get("/dashboard/").content.decode()
    assert post(c, f"/notifications/{note.pk}/read/", {}).status_code == 302
    assert "Lease 7 runs out soon" not in c.get("/dashboard/").content.decode()
    assert post(browser(f.client_user()), f"/notifications/{note.pk}/read/", {}).status_code == 404


def test_a_refused_accept_says_why_on_the_order_page() -> None:
    client = f.client_user(balance=USD)  # not enough for the deposit
    order = f.order(client)
    bid = f.bid(f.provider(), order, 3 * USD)
    c = browser(client)
    refused = post(c, f"/orders/{order.pk}/accept/", {"bid": bid.pk})
    assert refused.status_code == 302 and refused["Location"] == f"/orders/{order.pk}/"
    page = c.get(f"/orders/{order.pk}/").content.decode()
    assert "Insufficient funds" in page and not Lease.objects.exists()
    assert post(c, f"/orders/{order.pk}/accept/", {"bid": "nonsense"}).status_code == 302


def test_the_order_form_defaults_to_first_price_and_says_what_second_price_costs() -> None:
    html = browser(f.client_user()).get("/orders/new/").content.decode()
    # the rules are sentences: radio buttons show them whole at every width, where a select cut them off
    assert re.search(r'<input type="radio" name="pricing_rule" value="first_price"[^>]*checked>', html)
    assert "Second price (the winner is paid the next-lowest eligible bid)" in html
    assert "with a single bidder, your maximum" in html and "accept yourself is paid the price on its button" in html


def test_a_bid_events_row_reads_as_the_listed_row() -> None:
    """The page builds a live bid's row from the event's text: it must match what the list renders."""
    client = f.client_user()
    order = f.order(client, resources={"gpu_count": 4}, max_price_per_hour=10 * USD)
    placed = f.bid(f.provider(reputation=917, region="ap-south-1", verified=True), order, 7_777_777)
    html = browser(client).get(f"/orders/{order.pk}/live/").content.decode()
    row = re.search(rf'<tr data-bid="{placed.pk}" data-rank="([^"]+)">(.*?)</tr>', html, re.S)
    assert row is not None
    event = presenters.bid_row(placed)
    assert row.group(1) == event["rank"] and event["text"]["verified"] == "verified"
    for slot, text in event["text"].items():
        if slot == "accept":
            assert f'data-label="accept" aria-label="{text}"' in row.group(2)
        else:
            assert re.search(rf'data-text="{slot}">{re.escape(text)}<', row.group(2)), slot


def test_a_failed_deploy_says_whose_fault_it_was_once_on_the_lease_page() -> None:
    provider, client = f.provider(), f.client_user()
    pages = Client()
    pages.force_login(client)
    for cause, says in (("workload", "found the workload's image or command at fault"), ("provider", "host failed")):
        order = f.order(client)
        lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
        reason = f"the image is broken ({cause})"
        f.api(provider.user, f.PROVIDER).post(
            f"/api/v1/leases/{lease.pk}/status/", {"status": "failed", "reason": reason, "cause": cause}, format="json"
        )
        page = " ".join(pages.get(f"/leases/{lease.pk}/").content.decode().split())
        assert says in page
        assert page.count(reason) == 1  # the reason once, not as the state's word and the close's


def _running_lease(client, provider, **workload):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    order = f.order(client, workload=workload) if workload else f.order(client)
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, 3_600_000).pk)
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=600)
    Lease.objects.filter(pk=lease.pk).update(started_at=start, status=Lease.Status.RUNNING)
    return Lease.objects.get(pk=lease.pk)


def _timeline(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="([a-z]*)"[^>]*>([^<]+)</li>', page.split('class="timeline"')[1].split("</ol>")[0])


def test_the_timeline_marks_running_passed_only_for_a_lease_that_ran() -> None:
    provider, client = f.provider(), f.client_user()
    pages = Client()
    pages.force_login(client)
    never = _running_lease(client, provider)  # the agent said running, and never reported it running
    services_close(client, never)
    assert _timeline(pages.get(f"/leases/{never.pk}/").content.decode()) == [
        ("done", "Funding"),
        ("done", "Funded"),
        ("done", "Deploying"),
        ("skipped", "Never ran"),
        ("current", "Closed"),
    ]
    ran = _running_lease(client, provider)
    f.usage(ran, seconds=300)
    services_close(client, ran)
    assert ("done", "Running") in _timeline(pages.get(f"/leases/{ran.pk}/").content.decode())


def services_close(client, lease: Lease) -> None:  # type: ignore[no-untyped-def]
    from leases import services

    services.lease_close(user=client, lease_id=lease.pk, roles={"client"})


def test_the_cost_meter_never_runs_ahead_of_what_the_server_accrues() -> None:
    """The meter ticks in the browser only up to what the server would show on a reload: nothing
    without a usage report, at most the report's tail with one."""
    provider, client = f.provider(), f.client_user()
    pages = Client()
    pages.force_login(client)
    lease = _running_lease(client, provider)
    cost = re.compile(r'id="cost"([^>]*)>([^<]+)<')

    def meter() -> tuple[str, str]:
        return cost.search(pages.get(f"/leases/{lease.pk}/").content.decode()).groups()

    def number(name: str, attributes: str) -> int:
        return int(re.search(rf'data-meter-{name}="(\d+)"', attributes).group(1))

    attributes, shown = meter()
    assert "data-meter-rate" not in attributes and shown == "$0.00"  # nothing reported: nothing accrues
    second = 3_600_000 // 3600  # $3.60 an hour
    f.usage(lease, seconds=300)  # it ran the first five minutes, running at the end; that was 300 s ago
    attributes, shown = meter()
    assert "data-meter-rate" not in attributes  # the report's 120 s tail is spent: nothing more without a report
    assert shown == "$0.42"  # 300 s reported + 120 s tail, as a reload and the close would count it
    f.usage(lease, seconds=300, after=300)  # the next report, up to now
    attributes, _ = meter()
    assert "data-meter-rate" in attributes  # it ticks again, from the server's accrual
    assert number("base", attributes) >= 600 * second - 2 * second
    assert number("cap", attributes) - number("base", attributes) <= 120 * second  # ticks at most the tail


def test_a_port_without_an_endpoint_says_why() -> None:
    provider, client = f.provider(), f.client_user()
    pages = Client()
    pages.force_login(client)
    lease = _running_lease(client, provider, ports=[8888])
    page = " ".join(pages.get(f"/leases/{lease.pk}/").content.decode().split())
    assert "No endpoint for port 8888: the workload runs, but the provider publishes no public address" in page
    Lease.objects.filter(pk=lease.pk).update(endpoints=["203.0.113.7:31888"])
    page = pages.get(f"/leases/{lease.pk}/").content.decode()
    assert "203.0.113.7:31888" in page and "No endpoint" not in page


def test_the_account_page_says_who_holds_the_money() -> None:
    from chain.models import Wallet

    client = f.client_user()
    page = Client()
    page.force_login(client)
    said = " ".join(page.get("/account/").content.decode().split())
    assert "The marketplace holds this money for you</strong>, in its own books" in said  # the ledger is the escrow
    Wallet.objects.create(user=client, address="0x" + "ab" * 20)
    assert 'id="custody"' not in page.get("/account/").content.decode()  # its wallet holds it


def test_the_order_page_says_when_the_marketplace_signs_the_terms(settings) -> None:
    from chain.evm import DEMO_CLIENT_ACCOUNT, embedded_account
    from chain.models import Wallet

    settings.ESCROW_BACKEND, settings.CHAIN_BACKEND = "chain", "embedded"
    custody_client, demo_client = f.client_user(), f.client_user()
    Wallet.objects.create(user=demo_client, address=embedded_account(DEMO_CLIENT_ACCOUNT))
    for client, says in ((custody_client, "as the custodian of your balance"), (demo_client, "demo wallet")):
        order = f.order(client)
        page = Client()
        page.force_login(client)
        html = " ".join(page.get(f"/orders/{order.pk}/").content.decode().split())
        assert says in html and 'id="authorization"' not in html  # nothing for the client to sign


@pytest.mark.parametrize("template", ["pytorch-jupyter", "inference", "ssh", "byo"])
def test_every_template_posts_as_filled(template: str) -> None:
    """What the form holds once a template is chosen, unchanged: every field's initial value, the
    template's own fields over it (as the page's script fills them), no GPU model named, and the
    environment rows the page starts it with."""
    from marketplace.forms import TEMPLATES, OrderForm, template_initial

    c = browser(f.client_user())
    form = OrderForm()
    fields = {name: field.initial for name, field in form.fields.items() if field.initial is not None}
    filled = {**fields, **{k: v for k, v in TEMPLATES[template].items() if k != "label"}}
    filled.update(mode="form", template=template)
    rows = [(e["name"], e["value"], e["secret"]) for e in template_initial(template).get("env", [])]
    created = post(c, "/orders/new/", {**{k: "" if v is None else v for k, v in filled.items()}, **env_rows(*rows)})
    assert created.status_code == 302, created.content.decode()[:2000]
    order = Order.objects.get()
    assert order.min_vram_gib == TEMPLATES[template]["min_vram_gib"] and order.image == TEMPLATES[template]["image"]
    assert order.gpu_models.count() > 0  # every catalog model with that much memory


def test_the_inference_template_serves_the_model_named_in_its_field() -> None:
    c = browser(f.client_user())
    page = c.get("/orders/new/?template=inference").content.decode()
    assert 'value="Qwen/Qwen2.5-7B-Instruct"' in page and 'data-for-template="inference"' in page
    fields = {**ORDER_FIELDS, "template": "inference", "image": "vllm/vllm-openai:v0.11.0", "ports": "8000"}
    assert (
        post(c, "/orders/new/", {**fields, "command": "--port 8000", "model": "meta-llama/Llama-3.1-8B"}).status_code
        == 302
    )
    order = Order.objects.get()
    assert order.args == ["--model", "meta-llama/Llama-3.1-8B", "--port", "8000"]
    Order.objects.all().delete()
    replaced = {**fields, "command": "--model Qwen/Qwen2.5-7B-Instruct --port 8000", "model": "mistralai/Mistral-7B"}
    assert post(c, "/orders/new/", replaced).status_code == 302
    assert Order.objects.get().args == ["--model", "mistralai/Mistral-7B", "--port", "8000"]
    bad = post(c, "/orders/new/", {**fields, "command": "--port 8000", "model": "not a model; rm -rf /"})
    assert bad.status_code == 400 and "A Hugging Face model id" in bad.content.decode()
    # another template ignores the field
    other = {**ORDER_FIELDS, "template": "byo", "command": "sleep infinity", "model": "meta-llama/Llama-3.1-8B"}
    Order.objects.all().delete()
    assert post(c, "/orders/new/", other).status_code == 302
    assert Order.objects.get().command == ["sleep", "infinity"]


def test_the_jupyter_template_opens_jupyter_with_its_token_from_the_lease_page() -> None:
    from leases import services as lease_services

    client = f.client_user(balance=100 * USD)
    c = browser(client)
    page = c.get("/orders/new/").content.decode()  # the default template
    token = re.search(r'name="env-0-name"[^>]*value="JUPYTER_TOKEN"', page) and re.search(
        r'name="env-0-value" id="id_env-0-value" value="([^"]+)"', page
    )
    assert token and len(token[1]) >= 32
    assert (
        token[1]
        != re.search(r'name="env-0-value" id="id_env-0-value" value="([^"]+)"', c.get("/orders/new/").content.decode())[
            1
        ]
    )
    fields = {
        **ORDER_FIELDS,
        "template": "pytorch-jupyter",
        "ports": "8888",
        **env_rows(("JUPYTER_TOKEN", token[1], False)),
    }
    assert post(c, "/orders/new/", fields).status_code == 302
    order = Order.objects.get()
    provider = f.provider()
    lease = market.order_accept(client=client, order_id=order.pk, bid_id=f.bid(provider, order, USD).pk)
    lease_services.lease_report_status(user=provider.user, lease_id=lease.pk, status=Lease.Status.DEPLOYING)
    lease_services.lease_report_status(
        user=provider.user, lease_id=lease.pk, status=Lease.Status.RUNNING, endpoints=["203.0.113.9:31888"]
    )
    html = c.get(f"/leases/{lease.pk}/").content.decode()
    assert f'href="http://203.0.113.9:31888/lab?token={token[1]}"' in html and "Open Jupyter" in html
    # the token is the client's: the provider's view of the lease has no link
    provider_page = browser(provider.user).get(f"/leases/{lease.pk}/").content.decode()
    assert "Open Jupyter" not in provider_page and token[1] not in provider_page


def test_a_minimum_vram_alone_is_a_valid_choice_in_the_api_the_yaml_and_the_form() -> None:
    client = f.client_user()
    api = f.api(client, f.CLIENT)
    body = {
        "workload": {"image": "ghcr.io/acme/trainer:1.4"},
        "resources": {"gpu_count": 1, "gpu_models": [], "min_vram_gib": 40},
        "duration_hours": 1,
        "max_price_per_hour": 3 * USD,
    }
    assert api.post("/api/v1/orders/", body, format="json").status_code == 201
    neither = {**body, "resources": {"gpu_count": 1, "gpu_models": []}}
    refused = api.post("/api/v1/orders/", neither, format="json")
    assert refused.status_code == 400 and "resources" in refused.json()["error"]["fields"]
    workload = "workload:\n  image: ghcr.io/acme/trainer:1.4\nresources:\n  gpu_count: 1\n  gpu_models: []\n  min_vram_gib: 40\nduration_hours: 2\nmax_price_per_hour: 3000000\n"  # noqa: E501
    assert post(browser(client), "/orders/new/", {"mode": "yaml", "workload_file": workload}).status_code == 302


def test_an_empty_workload_file_or_an_unknown_gpu_model_says_what_to_do_and_keeps_the_text() -> None:
    c = browser(f.client_user())
    for empty in ("", "# nothing yet\n"):
        page = post(c, "/orders/new/", {"mode": "yaml", "workload_file": empty})
        assert page.status_code == 400 and "The workload file is empty" in page.content.decode()
    workload = (
        "workload:\n  image: ghcr.io/acme/trainer:1.4\nresources:\n  gpu_count: 1\n  gpu_models: [nope-9000]\n"
        "duration_hours: 2\nmax_price_per_hour: 3000000\n"
    )
    page = post(c, "/orders/new/", {"mode": "yaml", "workload_file": workload})
    html = page.content.decode()
    assert page.status_code == 400 and "Not in the catalog: nope-9000." in html
    assert "h100-sxm-80gb" in html.split("Not in the catalog")[1]  # the valid choices, named
    assert "gpu_models: [nope-9000]" in html  # what was typed is kept
    assert not Order.objects.exists()
