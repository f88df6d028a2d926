"""Writes for accounts and API tokens."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from core.models import ApiToken, SshKey, TokenScope, User
from core.ssh import KeyProblem, parse_public_key
from core.validation import check_display_name

TOKEN_PREFIX = "gpm_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the whole bearer string; shown once, never stored


def user_create(
    *,
    username: str,
    email: str = "",
    password: str | None = None,
    is_client: bool = False,
    is_provider: bool = False,
) -> User:
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"A user named {username!r} already exists.", code="user_exists")
    try:
        with transaction.atomic():
            user = User(username=username, email=email, is_client=is_client, is_provider=is_provider)
            user.full_clean(exclude=["password"])
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"A user named {username!r} already exists.", code="user_exists") from exc
    return user


def user_grant_role(*, user: User, role: str) -> User:
    if role == TokenScope.CLIENT:
        user.is_client = True
    elif role == TokenScope.PROVIDER:
        user.is_provider = True
    else:
        raise ValidationFailed(f"Unknown role {role!r}.", fields={"role": ["Unknown role."]})
    user.save(update_fields=["is_client", "is_provider"])
    return user


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# What a token may create or revoke: tokens of its own scope or narrower. A web session (no token)
# may create any scope its user's roles allow.
WITHIN_SCOPE = {
    TokenScope.CLIENT: {TokenScope.CLIENT, TokenScope.READ_ONLY},
    TokenScope.PROVIDER: {TokenScope.PROVIDER, TokenScope.READ_ONLY},
    TokenScope.READ_ONLY: {TokenScope.READ_ONLY},
}


def _check_within_scope(scope: str, by_scope: str | None, *, doing: str) -> None:
    if by_scope is not None and scope not in WITHIN_SCOPE[TokenScope(by_scope)]:
        allowed = " or ".join(sorted(WITHIN_SCOPE[TokenScope(by_scope)]))
        raise NotAllowed(
            f"A {by_scope} token cannot {doing} a {scope} token: only {allowed} ones. "
            "Use the account page (signed in) for the others.",
            code="scope_escalation",
            fields={"scope": [f"With this token: {allowed}."]},
        )


def token_issue(*, user: User, name: str, scope: str, by_scope: str | None = None) -> IssuedToken:
    """Create a token for ``user``. The returned secret is the only copy. ``by_scope``: the scope
    of the token asking (None: the user's web session); a token creates its scope or narrower."""
    name = check_display_name(name, field="name")
    if scope not in TokenScope.values:
        raise ValidationFailed(
            "Unknown token scope.",
            fields={"scope": [f"Must be one of: {', '.join(TokenScope.values)}."]},
        )
    if scope == TokenScope.CLIENT and not user.is_client:
        raise NotAllowed("Only clients can hold client tokens.", code="role_required")
    if scope == TokenScope.PROVIDER and not user.is_provider:
        raise NotAllowed("Only providers can hold provider tokens.", code="role_required")
    _check_within_scope(scope, by_scope, doing="create")
    for _ in range(5):
        prefix = secrets.token_hex(ApiToken.PREFIX_LENGTH // 2)
        secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    user=user, name=name, scope=scope, prefix=prefix, digest=_digest(secret)
                )
        except IntegrityError:  # prefix collision: draw again
            continue
        return IssuedToken(token=token, secret=secret)
    raise RuntimeError("could not draw a unique token prefix")  # pragma: no cover


def token_revoke(*, user: User, token_id: int, by_scope: str | None = None) -> ApiToken:
    """Revoke one of ``user``'s tokens (a token revokes its scope or narrower, as it creates)."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound("No such token.")
    _check_within_scope(token.scope, by_scope, doing="revoke")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token for a bearer string, or None. Records when it was last used."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    prefix, _, rest = secret[len(TOKEN_PREFIX) :].partition("_")
    if len(prefix) != ApiToken.PREFIX_LENGTH or not rest:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    resolution = timedelta(seconds=settings.TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


MAX_SSH_KEYS = 20  # per account


def ssh_key_add(*, user: User, name: str, public_key: str) -> SshKey:
    """Add an OpenSSH public key to ``user``'s account (ed25519, ECDSA, or RSA of 2048 bits or
    more); its leases receive it."""
    name = check_display_name(name, field="name")
    try:
        parsed = parse_public_key(public_key)
    except KeyProblem as exc:
        raise ValidationFailed(
            "Invalid public key.", code="invalid_ssh_key", fields={"public_key": [str(exc)]}
        ) from exc
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one add at a time: the count holds
        if SshKey.objects.filter(user=user).count() >= MAX_SSH_KEYS:
            raise Conflict(f"An account holds at most {MAX_SSH_KEYS} SSH keys: remove one first.", code="too_many_keys")
        existing = SshKey.objects.filter(user=user, fingerprint=parsed.fingerprint).first()
        if existing is not None:
            raise Conflict(
                f"This key is already on your account, as {existing.name!r}.",
                code="duplicate_ssh_key",
                fields={"public_key": [f"Already added as {existing.name!r} ({parsed.fingerprint})."]},
            )
        return SshKey.objects.create(
            user=user, name=name, public_key=parsed.line, kind=parsed.kind, fingerprint=parsed.fingerprint
        )


def ssh_key_remove(*, user: User, key_id: int) -> None:
    """Remove one of ``user``'s SSH keys (leases deployed from now on no longer receive it)."""
    deleted, _ = SshKey.objects.filter(user=user, pk=key_id).delete()
    if not deleted:
        raise NotFound("No such SSH key.")
