"""Forms of the lease page."""

from decimal import Decimal, InvalidOperation

from django import forms


class TopUpForm(forms.Form):
    amount = forms.CharField(label="Add ($)", help_text="From your balance; the lease runs longer by what it buys.")

    def clean_amount(self) -> int:
        text = self.cleaned_data["amount"].strip().lstrip("$").replace(",", "")
        try:
            value = Decimal(text)
        except InvalidOperation as exc:
            raise forms.ValidationError("An amount in dollars, e.g. 10 or 12.50.") from exc
        if not value.is_finite() or value <= 0:
            raise forms.ValidationError("More than $0, please.")
        micros = value * 1_000_000
        if micros != micros.to_integral_value():
            raise forms.ValidationError("At most six decimals.")
        return int(micros)
