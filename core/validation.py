"""Small validators shared by every app's services and serializers."""

import unicodedata
from typing import Any

from core.errors import ValidationFailed

MAX_ID = 2**63 - 1  # the largest id a row can have (a signed 64-bit key); past it SQLite cannot even bind it

# Bidirectional overrides and isolates can make a name display as something else.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# Control, surrogate, private-use and unassigned code points never belong in a display name.
_REJECTED_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}


def display_name_problem(value: str, *, max_length: int = 100, allow_empty: bool = False) -> str | None:
    """Why ``value`` is not an acceptable display name, or None if it is."""
    if not isinstance(value, str):
        return "Must be a string."
    if not value.strip():
        return None if allow_empty else "Must not be blank."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    for ch in value:
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in _REJECTED_CATEGORIES:
            return f"Contains a control or invisible character (U+{ord(ch):04X})."
    return None


def check_display_name(value: str, *, field: str, max_length: int = 100, allow_empty: bool = False) -> str:
    problem = display_name_problem(value, max_length=max_length, allow_empty=allow_empty)
    if problem:
        raise ValidationFailed(f"Invalid {field}.", fields={field: [problem]})
    return unicodedata.normalize("NFC", value.strip())


def storable_json(value: Any) -> Any:
    """``value`` as a JSON column can keep it: PostgreSQL's jsonb refuses the NUL character in any
    string, key or value, so each becomes U+FFFD (what a request echoed back, such as the name of
    a field it sent that does not exist, can hold)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable_json(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
