import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from core.api.throttling import TokenRateThrottle
from tests import factories as f

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


def test_requests_are_throttled_per_token(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache.clear()
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/minute"})
    user = f.client_user()
    first, second = f.api(user, f.CLIENT), f.api(user, f.CLIENT)
    codes = [first.get("/api/v1/account/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = first.get("/api/v1/account/")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0
    assert second.get("/api/v1/account/").status_code == 200  # another token has its own budget
    cache.clear()
