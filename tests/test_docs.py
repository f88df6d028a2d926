"""The threat model and the fault matrix name the tests that show each mitigation: every one
they name exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("document", "least"), [("SECURITY.md", 15), ("RELIABILITY.md", 20)])
def test_every_test_the_documents_name_exists(document: str, least: int) -> None:
    text = (ROOT / "docs" / document).read_text()
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
    assert named >= least
