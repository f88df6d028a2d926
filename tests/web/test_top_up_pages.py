"""The card top-up pages against localstripe: amounts are checked, the payment page gets the
intent's client secret, and returning from Stripe credits the balance once, even before (or
without) the webhook."""

import pytest
from django.test import override_settings

from payments.models import CardTopUp
from tests import factories as f
from tests.factories import USD
from tests.payments.fake_stripe import pay_on_the_page
from tests.web.test_pages import browser, post

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_amount_is_checked_and_the_pay_page_mounts_stripe_with_the_intent(fake_stripe: str) -> None:
    user = f.client_user(balance=0)
    c = browser(user)
    assert "Add funds" in c.get("/account/").content.decode()
    for amount, problem in (("abc", "An amount in dollars"), ("1", "From $5.00"), ("12.345", "Dollars and cents only")):
        response = post(c, "/account/top-up/", {"amount": amount})
        assert response.status_code == 400 and problem in response.content.decode(), amount
    assert not CardTopUp.objects.exists()
    page = post(c, "/account/top-up/", {"amount": "25"})
    html = page.content.decode()
    top_up = CardTopUp.objects.get()
    assert page.status_code == 200 and "Pay $25.00" in html and top_up.amount_cents == 2500
    assert f'src="{fake_stripe}/js.stripe.com/v3/"' in html
    assert f"{top_up.payment_intent}_secret_" in html and '"key": "pk_test_x"' in html
    # this page alone lets Stripe's script, API and frames in
    policy = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";"))
    assert fake_stripe in policy["script-src"].split() and "https://js.stripe.com" in policy["script-src"]
    assert fake_stripe in policy["frame-src"].split() and fake_stripe in policy["connect-src"].split()
    assert "stripe" not in c.get("/account/")["Content-Security-Policy"]


def test_returning_from_stripe_credits_the_balance_once(fake_stripe: str) -> None:
    user = f.client_user(balance=0)
    c = browser(user)
    post(c, "/account/top-up/", {"amount": "40"})
    top_up = CardTopUp.objects.get()
    pending = c.get(f"/account/top-ups/{top_up.pk}/").content.decode()
    assert "Waiting for the card" in pending and 'hx-trigger="every 2s"' in pending
    pay_on_the_page(fake_stripe, top_up.payment_intent)  # no webhook configured: the page asks Stripe
    for _ in range(2):
        done = c.get(f"/account/top-ups/{top_up.pk}/").content.decode()
        assert "Credited" in done and "$40.00" in done
    top_up.refresh_from_db()
    assert top_up.credited == 40 * USD
    from leases.selectors import account_summary

    assert account_summary(user=user).balance == 40 * USD
    assert browser(f.client_user()).get(f"/account/top-ups/{top_up.pk}/").status_code == 404


@override_settings(STRIPE_SECRET_KEY="", STRIPE_PUBLISHABLE_KEY="")
def test_without_stripe_the_page_says_so() -> None:
    html = browser(f.client_user()).get("/account/top-up/").content.decode()
    assert "Card payments are not set up" in html
