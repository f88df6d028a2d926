"""Forms of the lease page."""

from django import forms

from core.forms import DollarsField


class TopUpForm(forms.Form):
    amount = DollarsField(
        label="Add ($)",
        help_text="From your balance; the lease runs longer by what it buys.",
        error_messages={"invalid": "An amount in dollars, e.g. 10 or 12.50."},
    )
