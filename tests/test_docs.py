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


def test_the_architecture_shows_the_lease_states_the_code_has() -> None:
    from leases.states import diagram

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    shown = re.search(r"```mermaid\n(.*?)\n```", text, re.DOTALL)
    assert shown is not None and shown.group(1) == diagram(), "run `python manage.py lease_states` into the doc"


def test_every_module_the_architecture_names_exists() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = re.findall(r"`((?:[a-z_]+/)+[a-z_]*(?:\.py)?)`", text)
    assert len(named) > 20
    for path in named:
        assert (ROOT / path).exists(), path


def test_every_function_the_architecture_names_is_where_it_says() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/" in line]
    checked = 0
    for row in rows:
        modules = re.findall(r"`((?:[a-z_]+/)+[a-z_]*(?:\.py)?)`", row)
        files = [p for m in modules for p in ([ROOT / m] if m.endswith(".py") else (ROOT / m).rglob("*.py"))]
        source = "\n".join(p.read_text() for p in files)
        for name in re.findall(r"`([A-Za-z_][\w.]*)`", row):
            last = name.split(".")[-1]
            assert re.search(rf"^\s*(def|class) {last}\b|^{last} = ", source, re.MULTILINE), f"{name}: {row}"
            checked += 1
    assert checked > 20
