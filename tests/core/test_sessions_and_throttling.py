import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.api.throttling import TokenRateThrottle
from tests import factories as f
from tests.conftest import clear_our_cache

pytestmark = pytest.mark.django_db


def test_web_session_login_then_the_api_works_with_the_session(client) -> None:  # type: ignore[no-untyped-def]
    from core import services

    services.user_create(username="carol", password="a-long-passphrase-42", is_client=True)
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    bad = client.post("/accounts/login/", {"username": "carol", "password": "wrong"})
    assert bad.status_code == 200 and b"correct username and password" in bad.content
    good = client.post("/accounts/login/", {"username": "carol", "password": "a-long-passphrase-42"})
    assert good.status_code == 302
    assert client.get("/api/v1/account/").json()["username"] == "carol"


def test_session_writes_need_csrf() -> None:
    from core import services

    services.user_create(username="dave", password="a-long-passphrase-42", is_client=True)
    c = APIClient(enforce_csrf_checks=True)
    assert c.login(username="dave", password="a-long-passphrase-42")
    response = c.post("/api/v1/orders/", f.spec_payload(), format="json")
    assert response.status_code == 403
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_a_form_posted_without_its_csrf_token_gets_the_error_page() -> None:
    page = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "a", "password": "b"})
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    assert "This form has expired or came from another site." in page.content.decode()
    script = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "a"}, HTTP_ACCEPT="application/json"
    )
    assert script.status_code == 403 and script.json()["error"]["code"] == "csrf_failed"


def test_requests_are_throttled_per_token(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clear_our_cache()
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/minute"})
    user = f.client_user()
    first, second = f.api(user, f.CLIENT), f.api(user, f.CLIENT)
    codes = [first.get("/api/v1/account/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = first.get("/api/v1/account/")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0
    assert second.get("/api/v1/account/").status_code == 200  # another token has its own budget
    clear_our_cache()


def test_password_guessing_is_locked_out_without_checking_the_password(settings) -> None:  # type: ignore[no-untyped-def]
    clear_our_cache()
    settings.LOGIN_FAILURES_PER_ACCOUNT, settings.LOGIN_FAILURES_PER_ADDRESS = 3, 100
    user = f.client_user()
    user.set_password("right horse battery staple")
    user.save()
    guesser = Client()
    for attempt in range(3):
        wrong = guesser.post("/accounts/login/", {"username": user.username, "password": f"guess {attempt}"})
        assert wrong.status_code == 200 and "correct username and password" in wrong.content.decode()
    locked = guesser.post(
        "/accounts/login/", {"username": user.username.upper(), "password": "right horse battery staple"}
    )
    assert locked.status_code == 429 and int(locked["Retry-After"]) == settings.LOGIN_LOCKOUT_SECONDS
    assert "Too many failed attempts" in locked.content.decode()  # even the right password: no oracle
    assert "_auth_user_id" not in guesser.session
    other = f.client_user()
    other.set_password("another good passphrase")
    other.save()
    assert (
        Client()
        .post("/accounts/login/", {"username": other.username, "password": "another good passphrase"})
        .status_code
        == 302
    )
    clear_our_cache()
    assert (
        guesser.post(
            "/accounts/login/", {"username": user.username, "password": "right horse battery staple"}
        ).status_code
        == 302
    )


def test_one_address_cannot_spray_passwords_over_many_accounts(settings) -> None:  # type: ignore[no-untyped-def]
    clear_our_cache()
    settings.LOGIN_FAILURES_PER_ACCOUNT, settings.LOGIN_FAILURES_PER_ADDRESS = 100, 4
    sprayer = Client(REMOTE_ADDR="198.51.100.7")
    codes = [
        sprayer.post("/accounts/login/", {"username": f"user{i}", "password": "Winter2026!"}).status_code
        for i in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]
    assert (
        Client(REMOTE_ADDR="198.51.100.8").post("/accounts/login/", {"username": "user9", "password": "x"}).status_code
        == 200
    )
    # behind the ingress every request comes from its address: the client's is the one it appended
    settings.NUM_PROXIES = 1
    ingress = Client(REMOTE_ADDR="10.0.0.5")
    spoofed = {"HTTP_X_FORWARDED_FOR": "203.0.113.1, 198.51.100.7"}  # the client claims 203.0.113.1
    assert ingress.post("/accounts/login/", {"username": "a", "password": "x"}, **spoofed).status_code == 429
    fresh = {"HTTP_X_FORWARDED_FOR": "198.51.100.9"}
    assert ingress.post("/accounts/login/", {"username": "a", "password": "x"}, **fresh).status_code == 200
    clear_our_cache()


def test_bids_and_token_creation_have_budgets_of_their_own(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clear_our_cache()
    monkeypatch.setattr(
        TokenRateThrottle, "THROTTLE_RATES", {"token": "1000/minute", "bids": "2/minute", "tokens": "2/hour"}
    )
    provider = f.provider()
    api = f.api(provider.user, f.PROVIDER)
    orders = [f.order(f.client_user()) for _ in range(3)]
    codes = [
        api.post(f"/api/v1/orders/{o.pk}/bids/", {"price_per_hour": 1_000_000}, format="json").status_code
        for o in orders
    ]
    assert codes == [201, 201, 429]
    assert api.get(f"/api/v1/orders/{orders[0].pk}/bids/").status_code == 200  # reading is not bidding
    user = f.client_user()
    tokens = f.api(user, f.CLIENT)
    made = [
        tokens.post("/api/v1/tokens/", {"name": f"t{i}", "scope": "client"}, format="json").status_code
        for i in range(3)
    ]
    assert made == [201, 201, 429]
    clear_our_cache()
