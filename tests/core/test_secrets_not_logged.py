"""Secrets never reach the logs: passwords, API tokens (good and bad), a workload's secret
environment values and webhook signing secrets, through flows that log (failed logins, refused
tokens, bad requests), with every logger captured at DEBUG, extras included."""

import logging

import pytest
from django.test import Client

from tests import factories as f

pytestmark = pytest.mark.django_db

PASSWORD = "Corr3ct-Horse-Battery-Staple"
WRONG_PASSWORD = "Wr0ng-Horse-Battery-Staple"
ENV_SECRET = "hf_do_not_log_me_4f9c2a"


class Everything(logging.Handler):
    """Every record, with its message, arguments and extras, as text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(f"{record.getMessage()} {record.args!r} {vars(record)!r}")


@pytest.fixture
def logs():  # type: ignore[no-untyped-def]
    handler, root = Everything(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_secrets_never_reach_the_logs(logs: Everything) -> None:
    user = f.client_user()
    user.set_password(PASSWORD)
    user.save()
    browser = Client()
    browser.post("/accounts/login/", {"username": user.username, "password": WRONG_PASSWORD})
    browser.post("/accounts/login/", {"username": user.username, "password": PASSWORD})

    api = f.api(user, f.CLIENT)
    token = api.post("/api/v1/tokens/", {"name": "ci", "scope": "client"}, format="json").json()["token"]
    bad_token = token[:-4] + "xxxx"
    outsider = Client()
    for secret in (token, bad_token):
        outsider.get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Bearer {secret}")
        outsider.post("/api/v1/orders/", "{", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}")

    env = [{"name": "HF_TOKEN", "value": ENV_SECRET, "secret": True}]
    assert api.post("/api/v1/orders/", f.spec_payload(workload={"env": env}), format="json").status_code == 201
    refused = f.spec_payload(workload={"env": env, "image": "NOT AN IMAGE"})
    assert api.post("/api/v1/orders/", refused, format="json").status_code == 400

    hook = api.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9/x", "events": ["order.created"]}, format="json")
    webhook_secret = hook.json()["secret"]

    text = "\n".join(logs.text)
    assert "Unauthorized" in text or "Bad Request" in text  # the flows did log
    for secret in (PASSWORD, WRONG_PASSWORD, token, bad_token, ENV_SECRET, webhook_secret):
        assert secret not in text, f"{secret[:6]}… is in the logs"
