"""The threat model names the tests that show each mitigation: every one it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_security_document_names_exists() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    current = None
    named = 0
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(::test_\w+)?`", text):
        path, test = match.groups()
        if path:
            current = ROOT / path
            assert current.exists(), path
        if test:
            assert current is not None, test
            assert re.search(rf"^def {test[2:]}\(", current.read_text(), re.MULTILINE), f"{current}: {test}"
            named += 1
    assert named >= 15
