"""Forms of the web UI's webhook settings."""

from django import forms


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(max_length=500, label="Endpoint URL", assume_scheme="https")
    events = forms.CharField(
        max_length=500,
        initial="order.*, lease.*, balance.low",
        help_text="Event types or patterns, comma-separated: order.*, lease.*, balance.low.",
    )
    description = forms.CharField(max_length=200, required=False)

    def clean_events(self) -> list[str]:
        return [part.strip() for part in self.cleaned_data["events"].split(",") if part.strip()]
