"""Request parsers that bound how much they read, and a YAML parser for workload files."""

import codecs
import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import yaml
from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from core.errors import PayloadTooLarge


def _read_bounded(stream: Any) -> bytes:
    limit = settings.MAX_REQUEST_BODY_BYTES
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"Request bodies are limited to {limit} bytes.")
    return data


def _decode(data: bytes, encoding: str) -> str:
    try:
        return codecs.decode(data, encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ParseError(f"Body is not valid {encoding} text.") from exc


MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings ignored).

    Checked before parsing: the C decoder recurses once per level and a hostile body could
    exhaust the stack.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        text = _decode(_read_bounded(stream), encoding)
        if json_depth(text) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels.")
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a valid JSON number")


class _SafeLoader(yaml.SafeLoader):
    """Safe YAML with no aliases (no "billion laughs") and dates kept as strings."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases are not allowed in workload files", event.start_mark
            )
        return super().compose_node(parent, index)


# Keep timestamps as plain strings: the API has no date fields in specs.
_SafeLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """A workload file's YAML, safely (no aliases, no custom tags); raises ValueError."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"Malformed YAML: {exc}") from exc


class YAMLParser(parsers.BaseParser):
    """``application/yaml`` bodies, e.g. a workload file posted as an order."""

    media_type = "application/yaml"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        text = _decode(_read_bounded(stream), encoding)
        try:
            return load_yaml(text)
        except ValueError as exc:
            raise ParseError(str(exc)) from exc


class LegacyYAMLParser(YAMLParser):
    media_type = "application/x-yaml"


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"
