"""Wallets in the web UI.

Sign-In with Ethereum from the login page: the page's script asks for a challenge for the
browser wallet's address, has the wallet sign it, and posts the signature back; the account the
address is linked to is logged in. JSON in and out (read by the API's own serializers),
CSRF-protected like every form, errors in the API's shape. Failures count against the address
like failed password logins, and the same lockout applies. (The account page links a wallet
through the API's own endpoints, with the session; unlinking is a form.)"""

import json

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from rest_framework.serializers import Serializer

from chain import wallets
from chain.api.serializers import ChallengeRequestSerializer, LinkSerializer
from core.api import throttling
from core.api.errors import validation_failed
from core.errors import DomainError, ValidationFailed
from core.middleware import error_body
from core.web import AuthenticatedHttpRequest, client_address, login_address_bucket, perform

SESSION_NONCE = "siwe_sign_in_nonce"


def _read(request: HttpRequest, serializer_class: type[Serializer]) -> tuple[dict, dict]:
    """The JSON body as the API's serializer reads it: (validated data, the whole body)."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("The body must be a JSON object.", code="malformed_request") from exc
    payload = serializer_class(data=body)
    if not payload.is_valid():
        raise validation_failed(payload.errors)
    return payload.validated_data, body


def _refused(exc: DomainError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)


def _too_many(message: str) -> JsonResponse:
    response = JsonResponse(error_body("too_many_attempts", message), status=429)
    response["Retry-After"] = str(settings.LOGIN_LOCKOUT_SECONDS)
    return response


def _locked_out(request: HttpRequest) -> JsonResponse | None:
    if throttling.count_of(login_address_bucket(request)) < settings.LOGIN_FAILURES_PER_ADDRESS:
        return None
    minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
    return _too_many(f"Too many failed attempts. Try again in {minutes} minutes.")


@require_POST
def sign_in_challenge(request: HttpRequest) -> JsonResponse:
    """``{"address", "chain_id"}`` → ``{"message", "expires_at"}``: the text for the wallet to sign."""
    if (refusal := _locked_out(request)) is not None:
        return refusal
    # anyone may ask, and each challenge is a row: a bounded number per address and lockout period
    issued = throttling.hit(f"siwe:challenges:{client_address(request)}", settings.LOGIN_LOCKOUT_SECONDS)
    if issued > settings.SIWE_CHALLENGES_PER_ADDRESS:
        return _too_many("Too many sign-in attempts from here. Try again later.")
    try:
        fields, _ = _read(request, ChallengeRequestSerializer)
        challenge = wallets.siwe_challenge(
            user=None,
            address=fields["address"],
            domain=request.get_host(),
            uri=request.build_absolute_uri("/"),
            chain_id=fields["chain_id"],
        )
    except DomainError as exc:
        return _refused(exc)
    request.session[SESSION_NONCE] = challenge.nonce
    return JsonResponse({"message": challenge.message, "expires_at": challenge.expires_at.isoformat()}, status=201)


@require_POST
def sign_in(request: HttpRequest) -> JsonResponse:
    """``{"message", "signature", "next"}`` → ``{"redirect"}``, with the session logged in."""
    if (refusal := _locked_out(request)) is not None:
        return refusal
    nonce = request.session.pop(SESSION_NONCE, "")
    try:
        fields, body = _read(request, LinkSerializer)
        user = wallets.wallet_sign_in(message=fields["message"], signature=fields["signature"], nonce=nonce)
    except DomainError as exc:
        throttling.hit(login_address_bucket(request), settings.LOGIN_LOCKOUT_SECONDS)
        return _refused(exc)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    target = body.get("next") if isinstance(body.get("next"), str) else ""
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return JsonResponse({"redirect": target if safe else resolve_url(settings.LOGIN_REDIRECT_URL)})


@login_required
@require_POST
def wallet_unlink(request: AuthenticatedHttpRequest, address: str) -> HttpResponse:
    perform(
        request,
        lambda: wallets.wallet_unlink(user=request.user, address=address),
        success=f"Wallet {address} unlinked.",
    )
    return redirect(resolve_url("web:account") + "#wallets")
