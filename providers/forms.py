"""Forms of the provider pages."""

from django import forms


class ProviderRegisterForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What clients see on your bids.")
    region = forms.CharField(max_length=64, help_text="Where your GPUs are, e.g. eu-central-1 or Frankfurt.")
