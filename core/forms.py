"""Forms of the web UI's account pages: they check input; services do the work."""

from django import forms
from django.contrib.auth import password_validation

from core.models import TokenScope, User

ROLE_CHOICES = [
    ("client", "Rent GPUs"),
    ("provider", "Provide GPUs"),
    ("both", "Both"),
]


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
