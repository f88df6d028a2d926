"""Idempotency keys for POSTs that create things (the Stripe model).

The first request with a key records it as in progress, in its own committed transaction, before
any work; its response is then stored. A replay with the same key and the same body gets the
stored response; the same key with a different body is refused (422); a replay while the first is
still running is refused (409). A request that ended in a server error frees its key.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, DomainError, ValidationFailed
from core.models import IdempotencyRecord, User
from core.validation import storable_json

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(DomainError):
    status_code = 422
    default_code = "idempotency_key_reused"


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


def fingerprint(*, method: str, path: str, payload: Any, caller: str = "") -> str:
    """The request a key stands for. ``caller``: the credential's scope, so that a key is replayed
    only to the same kind of credential (a provider token never reads what a client token made)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path} {caller}\n{canonical}".encode()).hexdigest()


def idempotency_begin(*, user: User, key: str, fingerprint: str) -> tuple[IdempotencyRecord | None, Replay | None]:
    """Claim ``key`` for a new request, or return the stored response to replay."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            "Invalid Idempotency-Key header.",
            code="invalid_idempotency_key",
            fields={"Idempotency-Key": [f"1 to {MAX_KEY_LENGTH} printable characters."]},
        )
    expiry = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=expiry).delete()
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(user=user, key=key, fingerprint=fingerprint)
        return record, None
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if existing is None:  # freed between our insert and read: the caller may simply retry
        raise Conflict("This Idempotency-Key is being reused concurrently; retry.", code="idempotency_in_progress")
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.",
        )
    if existing.state == IdempotencyRecord.State.IN_PROGRESS:
        raise Conflict("A request with this Idempotency-Key is still in progress.", code="idempotency_in_progress")
    return None, Replay(status=existing.response_status or 200, body=existing.response_body)


def idempotency_finish(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    if status >= 500:
        record.delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.DONE, response_status=status, response_body=storable_json(body)
    )


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    record.delete()
