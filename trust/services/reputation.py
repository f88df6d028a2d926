"""Providers' reputation: scored from their record by the pure rules of ``trust.reputation``, stored
on the provider when it changes (after every verdict, and by the nightly sweep)."""

import logging
from datetime import datetime

from django.utils import timezone

from core.bulk import update_column
from providers.models import Provider
from trust import reputation
from trust.selectors import reputation_records

logger = logging.getLogger(__name__)


def reputations_update(*, provider_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Score providers from their record (``trust.reputation``) and store what changed; returns
    how many changed. All providers unless ``provider_ids`` names some."""
    now = now or timezone.now()
    providers = Provider.objects.all() if provider_ids is None else Provider.objects.filter(pk__in=provider_ids)
    records = reputation_records(provider_ids=provider_ids, now=now)
    changed = {}
    for provider_id, current in providers.values_list("pk", "reputation"):
        score = reputation.score(records[provider_id])
        if score != current:
            changed[provider_id] = score
    update_column(Provider, "reputation", changed)
    return len(changed)
