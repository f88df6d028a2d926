"""Forms of the lease page."""

from django import forms

from core.forms import DollarsField


class TopUpForm(forms.Form):
    amount = DollarsField(
        label="Add ($)",
        help_text="From your balance; the lease runs longer by what it buys.",
        error_messages={"invalid": "An amount in dollars, e.g. 10 or 12.50."},
    )


class AutoTopUpForm(forms.Form):
    limit = DollarsField(
        required=False,
        max_dollars=1_000_000_000,
        label="Add on its own, up to ($ in all)",
        help_text=(
            "When the lease runs low, the marketplace adds the deposit of its ordered duration from your "
            "balance, within this amount in all. Empty turns it off."
        ),
        error_messages={"invalid": "An amount in dollars, e.g. 50, or empty to turn it off."},
    )
