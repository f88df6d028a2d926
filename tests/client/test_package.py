"""The client is a package of its own (clients/python): installable on a laptop without the
server's dependencies, importing nothing of the server, its command named ``gpumarket``."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "python"
DECLARED = {"httpx", "websockets", "rich"}


def test_the_client_imports_only_the_standard_library_and_what_it_declares() -> None:
    imported = set()
    for source in (PACKAGE / "gpumarket_client").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"gpumarket_client"}
    assert outside == DECLARED, outside


def test_the_client_builds_as_a_wheel_with_its_command_and_three_dependencies(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # built from a copy: the build writes beside its sources
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("gpumarket_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        scripts = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "gpumarket = gpumarket_client.cli:main" in scripts
    requires = {
        line.split(":", 1)[1].strip().split(">")[0].split("<")[0]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert requires == DECLARED
    assert not [n for n in names if n.split("/")[0] in ("agent", "core", "marketplace", "protocol", "config")]
