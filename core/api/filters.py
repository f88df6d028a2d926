"""Query filters that refuse what they cannot read, rather than quietly ignoring it."""

from typing import Any

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import ChoiceField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from core.validation import MAX_ID


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


class _PresentChoiceField(ChoiceField):
    def clean(self, value: Any) -> Any:
        if value == "":  # the parameter given, but empty (absent is None)
            raise forms.ValidationError("Use one of the listed values, or leave the parameter out.", code="invalid")
        return super().clean(value)


class StrictChoiceFilter(filters.ChoiceFilter):
    """One of the choices. Given but empty (``?kind=``) is a 400 like any other value not among
    them; django-filter's own reads it as "any"."""

    field_class = _PresentChoiceField


@extend_schema_field(OpenApiTypes.INT)
class WholeNumberFilter(filters.NumberFilter):
    """A whole number; a decimal is a 400 (django-filter's own reads it and drops the fraction)."""

    field_class = forms.IntegerField


class IdFilter(WholeNumberFilter):
    """An object's id: a whole number the database's ids can hold (1 to 2^63 - 1). Anything else is a
    400; a number past the column's range would fail in the database (SQLite cannot bind it at all)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)
