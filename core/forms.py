"""Forms of the web UI's account pages: they check input; services do the work."""

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib.auth import password_validation

from core.models import TokenScope, User

ROLE_CHOICES = [
    ("client", "Rent GPUs"),
    ("provider", "Provide GPUs"),
    ("both", "Both"),
]


class DollarsField(forms.CharField):
    """An amount typed in dollars ("12.50", "$1,200") as integer micro-dollars: more than $0, with at
    most ``places`` decimals and, when given, at most ``max_dollars``."""

    default_error_messages = {
        "invalid": "An amount in dollars, e.g. 12.50.",
        "not_positive": "More than $0, please.",
        "too_large": "At most $%(limit)s.",
        "precision": "At most six decimals.",
    }

    def __init__(self, *, places: int = 6, max_dollars: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.places, self.max_dollars = places, max_dollars

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]  # typed in dollars, cleaned to micro-dollars
        text = (super().to_python(value) or "").strip().lstrip("$").replace(",", "")
        if text in self.empty_values:
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation as exc:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc
        if not amount.is_finite():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if amount <= 0:
            raise forms.ValidationError(self.error_messages["not_positive"], code="not_positive")
        if self.max_dollars is not None and amount > self.max_dollars:
            raise forms.ValidationError(
                self.error_messages["too_large"], code="too_large", params={"limit": f"{self.max_dollars:,}"}
            )
        scaled = amount.scaleb(self.places)
        if scaled != scaled.to_integral_value():
            raise forms.ValidationError(self.error_messages["precision"], code="precision")
        return int(amount.scaleb(6))


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    email = forms.EmailField(help_text="For receipts, low-balance warnings and password resets.")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="client", widget=forms.RadioSelect, label="I want to")

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        User.username_validator(username)
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That username is taken.")
        return username

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            probe = User(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “laptop” or “agent on rack 4”.")
    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.CLIENT)


class SshKeyForm(forms.Form):
    prefix = "ssh"  # the account page holds the token form too: its fields' names and ids differ

    name = forms.CharField(max_length=100, help_text="Which machine it is on, e.g. “laptop”.")
    public_key = forms.CharField(
        max_length=16_384,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off"}),
        label="Public key",
        help_text="The one line of your .pub file (cat ~/.ssh/id_ed25519.pub): ed25519, ECDSA, or RSA of 2048 "
        "bits or more. Your leases receive your keys, so that you can log into an SSH box.",
    )
