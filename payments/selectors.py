"""Reads for card top-ups."""

from django.db.models import QuerySet

from core.errors import NotFound
from core.models import User
from payments.models import CardTopUp


def top_ups_for(*, user: User) -> QuerySet[CardTopUp]:
    return CardTopUp.objects.filter(user=user)


def top_up_get(*, user: User, top_up_id: int) -> CardTopUp:
    top_up = CardTopUp.objects.filter(user=user, pk=top_up_id).first()
    if top_up is None:
        raise NotFound("No such top-up.")
    return top_up
