"""Compile the Vyper contracts into the committed artifacts, and check that they match.

    python manage.py chain_compile            # rewrite chain/artifacts/*.json
    python manage.py chain_compile --check    # exit 1 if an artifact differs from its source

Artifacts hold the ABI, the deployment bytecode, the runtime bytecode, the compiler version and
a SHA-256 of the source, so a drifted artifact is caught even without recompiling. The compiler
(``vyper``) and snekmate are development dependencies: production only reads the artifacts.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

CHAIN_DIR = Path(__file__).resolve().parent
CONTRACTS_DIR = CHAIN_DIR / "contracts"
ARTIFACTS_DIR = CHAIN_DIR / "artifacts"
CONTRACTS = ("DevUSD", "Escrow")


def compile_contract(name: str) -> dict[str, Any]:
    import vyper
    from vyper.cli.vyper_compile import compile_files

    source_path = CONTRACTS_DIR / f"{name}.vy"
    source = source_path.read_text()
    out = compile_files([str(source_path)], ["abi", "bytecode", "bytecode_runtime"], include_sys_path=True)
    compiled = next(iter(out.values()))
    return {
        "contractName": name,
        "compiler": f"vyper {vyper.__version__}",
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": compiled["abi"],
        "bytecode": compiled["bytecode"],
        "bytecodeRuntime": compiled["bytecode_runtime"],
    }


def artifact_text(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts() -> list[Path]:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = ARTIFACTS_DIR / f"{name}.json"
        path.write_text(artifact_text(compile_contract(name)))
        written.append(path)
    return written


def drifted_artifacts() -> list[str]:
    """Names of contracts whose committed artifact differs from a fresh compilation."""
    drifted = []
    for name in CONTRACTS:
        path = ARTIFACTS_DIR / f"{name}.json"
        if not path.exists() or path.read_text() != artifact_text(compile_contract(name)):
            drifted.append(name)
    return drifted


def load_artifact(name: str) -> dict[str, Any]:
    """A committed artifact (what the adapter deploys and talks to)."""
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
