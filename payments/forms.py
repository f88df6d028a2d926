"""The top-up forms of the web UI: by card, or demo credit on demonstration servers."""

from django import forms
from django.conf import settings

from core.forms import DollarsField
from payments.services import MICROS_PER_CENT


def _dollars(*, initial: str, help_text: str) -> DollarsField:
    return DollarsField(
        places=2,
        label="Amount ($)",
        initial=initial,
        help_text=help_text,
        error_messages={
            "invalid": f"An amount in dollars, e.g. {initial} or 12.50.",
            "precision": "Dollars and cents only, e.g. 12.50.",
        },
    )


class CardTopUpForm(forms.Form):
    amount = _dollars(initial="25", help_text="Charged to your card in US dollars.")

    def clean_amount(self) -> int:
        """Whole US cents (Stripe's unit), within the configured limits."""
        low, high = settings.CARD_TOP_UP_MIN_CENTS, settings.CARD_TOP_UP_MAX_CENTS
        cents = self.cleaned_data["amount"] // MICROS_PER_CENT
        if not low <= cents <= high:
            raise forms.ValidationError(f"From ${low / 100:,.2f} to ${high / 100:,.2f}.")
        return cents


class DemoCreditForm(forms.Form):
    amount = _dollars(initial="100", help_text="Test money for trying the marketplace; no card is charged.")

    def clean_amount(self) -> int:
        """Whole US cents; the service checks what is left."""
        cents = self.cleaned_data["amount"] // MICROS_PER_CENT
        if cents <= 0:
            raise forms.ValidationError("More than $0, please.")
        return cents
