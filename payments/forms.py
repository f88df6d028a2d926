"""The card top-up form of the web UI."""

from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings


class CardTopUpForm(forms.Form):
    amount = forms.CharField(label="Amount ($)", initial="25", help_text="Charged to your card in US dollars.")

    def clean_amount(self) -> int:
        """Whole US cents, within the configured limits."""
        low, high = settings.CARD_TOP_UP_MIN_CENTS, settings.CARD_TOP_UP_MAX_CENTS
        text = self.cleaned_data["amount"].strip().lstrip("$").replace(",", "")
        try:
            cents = Decimal(text) * 100
        except InvalidOperation as exc:
            raise forms.ValidationError("An amount in dollars, e.g. 25 or 12.50.") from exc
        if not cents.is_finite() or cents != cents.to_integral_value():
            raise forms.ValidationError("Dollars and cents only, e.g. 12.50.")
        if not low <= cents <= high:
            raise forms.ValidationError(f"From ${low / 100:,.2f} to ${high / 100:,.2f}.")
        return int(cents)
