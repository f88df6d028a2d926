import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from core import services
from core.models import ApiToken, TokenScope
from tests import factories as f

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return c


def test_token_is_shown_once_and_only_its_digest_is_stored() -> None:
    user = f.user(client=True)
    issued = services.token_issue(user=user, name="ci", scope=TokenScope.CLIENT)
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith(f"gpm_{row.prefix}_")
    assert issued.secret not in (row.digest, row.prefix, row.name)
    assert len(row.digest) == 64
    assert services.token_authenticate(secret=issued.secret) == row


def test_requests_authenticate_with_bearer_and_record_last_use() -> None:
    user = f.user(client=True)
    issued = services.token_issue(user=user, name="ci", scope=TokenScope.CLIENT)
    assert issued.token.last_used_at is None
    response = bearer(issued.secret).get("/api/v1/account/")
    assert response.status_code == 200
    assert response.json()["username"] == user.username
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer gpm_0123456789_nope", "Bearer", "Bearer a b", "Bearer gpm_", "Bearer notatoken", "Bearer gpm_ab_cd"],
)
def test_bad_tokens_get_401_in_the_error_shape(header: str) -> None:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=header)
    response = c.get("/api/v1/account/")
    assert response.status_code == 401
    body = response.json()
    assert set(body["error"]) == {"code", "message", "fields"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_credentials_is_401() -> None:
    response = APIClient().get("/api/v1/orders/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_revoked_token_stops_working() -> None:
    user = f.user(client=True)
    issued = services.token_issue(user=user, name="ci", scope=TokenScope.CLIENT)
    c = bearer(issued.secret)
    assert c.get("/api/v1/account/").status_code == 200
    response = c.post(f"/api/v1/tokens/{issued.token.pk}/revoke/")
    assert response.status_code == 200 and response.json()["active"] is False
    assert c.get("/api/v1/account/").status_code == 401


def test_tokens_api_creates_lists_and_never_shows_secrets_again() -> None:
    user = f.user(client=True)
    c = f.api(user, f.CLIENT)
    created = c.post("/api/v1/tokens/", {"name": "laptop", "scope": "read_only"})
    assert created.status_code == 201
    secret = created.json()["token"]
    listed = c.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"test", "laptop"}
    assert all("token" not in t for t in listed)
    assert secret not in str(listed)
    # the read-only token reads but cannot write
    ro = bearer(secret)
    assert ro.get("/api/v1/orders/").status_code == 200
    response = ro.post("/api/v1/orders/", f.spec_payload(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_a_client_cannot_mint_a_provider_token() -> None:
    c = f.api(f.user(client=True), f.CLIENT)
    response = c.post("/api/v1/tokens/", {"name": "x", "scope": "provider"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_required"


@pytest.mark.parametrize(
    ("held", "wanted", "allowed"),
    [
        (TokenScope.PROVIDER, TokenScope.CLIENT, False),  # a provider's agent token spending the balance
        (TokenScope.CLIENT, TokenScope.PROVIDER, False),
        (TokenScope.PROVIDER, TokenScope.PROVIDER, True),
        (TokenScope.PROVIDER, TokenScope.READ_ONLY, True),
        (TokenScope.CLIENT, TokenScope.CLIENT, True),
        (TokenScope.CLIENT, TokenScope.READ_ONLY, True),
    ],
)
def test_a_token_creates_and_revokes_only_its_scope_or_narrower(held: str, wanted: str, allowed: bool) -> None:
    both = f.user(client=True, provider=True)
    api = f.api(both, held)
    before = set(ApiToken.objects.values_list("pk", flat=True))
    response = api.post("/api/v1/tokens/", {"name": "minted", "scope": wanted})
    if allowed:
        assert response.status_code == 201, response.json()
    else:
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "scope_escalation" and "scope" in error["fields"]
        assert set(ApiToken.objects.values_list("pk", flat=True)) == before  # nothing written
    other = services.token_issue(user=both, name="other", scope=wanted)  # made on the account page
    revoked = api.post(f"/api/v1/tokens/{other.token.pk}/revoke/")
    assert revoked.status_code == (200 if allowed else 403)
    other.token.refresh_from_db()
    assert (other.token.revoked_at is not None) == allowed


def test_an_idempotency_key_replays_only_to_the_same_kind_of_credential() -> None:
    """The same escalation by replay: a provider token sending the key a client token created a
    client token with gets no secret back (the key stands for another caller's request)."""
    both = f.user(client=True, provider=True)
    payload, key = {"name": "ci", "scope": "client"}, {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    made = f.api(both, TokenScope.CLIENT).post("/api/v1/tokens/", payload, **key)
    assert made.status_code == 201
    replayed = f.api(both, TokenScope.PROVIDER).post("/api/v1/tokens/", payload, **key)
    assert replayed.status_code == 422 and made.json()["token"] not in replayed.content.decode()
    again = f.api(both, TokenScope.CLIENT).post("/api/v1/tokens/", payload, **key)
    assert again.status_code == 201 and again.json()["token"] == made.json()["token"]  # the same caller: replayed


def test_the_account_page_creates_any_scope_the_users_roles_allow() -> None:
    both = f.user(client=True, provider=True)
    for scope in TokenScope.values:
        assert services.token_issue(user=both, name=scope, scope=scope).token.scope == scope


def test_someone_elses_token_cannot_be_revoked() -> None:
    mine = f.api(f.user(client=True), f.CLIENT)
    other = services.token_issue(user=f.user(client=True), name="x", scope=TokenScope.CLIENT)
    assert mine.post(f"/api/v1/tokens/{other.token.pk}/revoke/").status_code == 404
    other.token.refresh_from_db()
    assert other.token.revoked_at is None


def test_scopes_narrow_roles() -> None:
    both = f.user(client=True, provider=True)
    as_client = f.api(both, f.CLIENT)
    as_provider = f.api(both, f.PROVIDER)
    assert as_client.post("/api/v1/providers/me/", {"name": "x", "region": "eu"}).status_code == 403
    assert as_provider.post("/api/v1/providers/me/", {"name": "x", "region": "eu"}).status_code == 201
    assert as_provider.post("/api/v1/orders/", f.spec_payload(), format="json").status_code == 403


def test_issue_token_command_creates_user_and_prints_a_working_token() -> None:
    out = io.StringIO()
    call_command("issue_token", "alice", "--role", "client", "--create", stdout=out)
    secret = out.getvalue().strip()
    assert bearer(secret).get("/api/v1/account/").json()["roles"] == ["client"]
    out = io.StringIO()
    call_command("issue_token", "alice", "--role", "provider", "--create", stdout=out)
    assert bearer(out.getvalue().strip()).get("/api/v1/account/").json()["roles"] == ["client", "provider"]


def test_issue_token_command_refuses_unknown_user_without_create() -> None:
    with pytest.raises(CommandError, match="--create"):
        call_command("issue_token", "nobody", "--role", "client", stdout=io.StringIO())


def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries) -> None:
    user = f.user(client=True)
    issued = services.token_issue(user=user, name="ci", scope=TokenScope.CLIENT)
    services.token_authenticate(secret=issued.secret)
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None and first <= timezone.now()
    with django_assert_num_queries(1):  # a read, no write
        services.token_authenticate(secret=issued.secret)
