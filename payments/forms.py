"""The card top-up form of the web UI."""

from django import forms
from django.conf import settings

from core.forms import DollarsField
from payments.services import MICROS_PER_CENT


class CardTopUpForm(forms.Form):
    amount = DollarsField(
        places=2,
        label="Amount ($)",
        initial="25",
        help_text="Charged to your card in US dollars.",
        error_messages={
            "invalid": "An amount in dollars, e.g. 25 or 12.50.",
            "precision": "Dollars and cents only, e.g. 12.50.",
        },
    )

    def clean_amount(self) -> int:
        """Whole US cents (Stripe's unit), within the configured limits."""
        low, high = settings.CARD_TOP_UP_MIN_CENTS, settings.CARD_TOP_UP_MAX_CENTS
        cents = self.cleaned_data["amount"] // MICROS_PER_CENT
        if not low <= cents <= high:
            raise forms.ValidationError(f"From ${low / 100:,.2f} to ${high / 100:,.2f}.")
        return cents
