"""A local Anvil node for tests and benchmarks (npm package @foundry-rs/anvil-linux-amd64).

`make tools` installs it into .tools/; nothing here runs in production.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
# Anvil's well-known development mnemonic: its accounts are funded on every Anvil chain.
MNEMONIC = "test test test test test test test test test test test junk"


def anvil_binary() -> str | None:
    local = ROOT / ".tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if local.exists():
        return str(local)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """An Anvil node on a free loopback port. With ``state``, the chain is written to that file when
    the node stops and read back when it starts again, as a real node keeps its chain."""

    def __init__(self, binary: str, *, state: Path | None = None) -> None:
        self.binary, self.state = binary, state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()
        Account.enable_unaudited_hdwallet_features()
        self.accounts: list[LocalAccount] = [
            Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)
        ]

    def start(self) -> None:
        args = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent", "--accounts", "10"]
        if self.state is not None:
            args += ["--state", str(self.state)]
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.web3().is_connected():
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("anvil did not start")

    def web3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 10}))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
