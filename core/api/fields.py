"""Fields that read only what the schema says.

DRF reads ``42`` as the text ``"42"`` and ``"2"`` as the number 2. The API's text fields refuse
anything but text (``StrictCharField``, and ``StrictModelSerializer`` for model fields), and the
workload file's numbers anything but numbers (``StrictIntegerField``): a 400 that names the field,
so a client finds its mistake instead of a value it did not mean (in YAML, quote a name that looks
like a number: ``name: "0"``)."""

from typing import Any

from django.db import models
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A string that was a string in the document: 42 is not an image name."""

    default_error_messages = {"invalid": "Not a string: quote it."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer that is a JSON/YAML number, not a string or a float with a fraction."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            if isinstance(data, float) and data.is_integer():
                data = int(data)
            else:
                self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A number that is a JSON/YAML number: not a string, not true or false."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """A model serializer whose text fields are ``StrictCharField``."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
    }
