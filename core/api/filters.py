"""Query filters that refuse what they cannot read, rather than quietly ignoring it."""

from typing import Any

from django import forms
from django_filters import rest_framework as filters


class _StrictBooleanField(forms.Field):
    widget = forms.TextInput

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    """``true``/``false`` (or ``1``/``0``); anything else is a 400."""

    field_class = _StrictBooleanField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput)  # django-filter's own widget reads junk as "any"
        super().__init__(*args, **kwargs)
