"""The runtime interface: deploy, status, logs, usage, teardown, and what the agent owns."""

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.inventory import GpuMetrics

MANAGED_BY = "gpumarket-agent"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_LEASE = "gpumarket.io/lease"


CAUSE_WORKLOAD = "workload"
"""A failure's cause: the client's image or command (it does not count against the provider)."""
CAUSE_PROVIDER = "provider"
"""A failure's cause: the provider's host, runtime or network."""
RESTARTS_BEFORE_GIVING_UP = 3
"""How often a workload whose command exits with an error is restarted before the agent gives up."""

# What registries and container runtimes answer when the image or the command is the client's
# mistake; anything else (a registry that does not answer, a full disk, a device node that is not
# there: "no such file or directory" outside the workload's own exec) is the provider's.
_WORKLOAD_FAULTS = re.compile(
    r"manifest unknown|manifest for .* not found|not found: manifest|repository does not exist|"
    r"pull access denied|invalid reference format|InvalidImageName|name unknown|"
    r"exec: .*(executable file not found|no such file or directory|permission denied)",
    re.IGNORECASE,
)


def failure_cause(message: str) -> str:
    """Whose fault a failure to pull or start a workload is, from the runtime's own words."""
    return CAUSE_WORKLOAD if _WORKLOAD_FAULTS.search(message) else CAUSE_PROVIDER


class RuntimeError_(Exception):  # noqa: N801 - "RuntimeError" is Python's own
    """A lease could not be deployed or inspected; the message is for the client to read, and
    ``cause`` says whose fault it is (``CAUSE_WORKLOAD`` or ``CAUSE_PROVIDER``)."""

    def __init__(self, message: str, *, cause: str = CAUSE_PROVIDER) -> None:
        super().__init__(message)
        self.cause = cause


class RuntimeUnavailable(Exception):
    """The runtime cannot be reached or refuses the agent itself: nothing is wrong with the lease, and
    nothing is decided about it until the runtime answers again."""


PUBLIC_KEY = "PUBLIC_KEY"  # the variable SSH images read the authorized keys from


@dataclass(frozen=True)
class LeaseManifest:
    """What to run for a lease (from ``GET /api/v1/leases/{id}/manifest/``)."""

    lease_id: int
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: frozenset[str] = frozenset()  # of env's names, those the client marked secret
    ssh_keys: list[str] = field(default_factory=list)  # the client's SSH public keys (authorized_keys lines)
    ports: list[dict] = field(default_factory=list)  # [{"port": 8888, "protocol": "tcp"}]
    volumes: list[dict] = field(default_factory=list)  # [{"name", "mount", "size_gib", "storage_class"}]
    gpu_model: str = ""  # catalog id, e.g. "h100-sxm-80gb"
    gpu_count: int = 0
    gpu_uuids: list[str] = field(default_factory=list)
    cpu_cores: int = 1
    memory_gib: int = 1
    storage_gib: int = 1
    shm_gib: int = 0  # shared memory (/dev/shm), out of memory_gib; 0: the runtime's own

    def workload_env(self) -> dict[str, str]:
        """The container's environment: the client's, and its SSH keys as ``PUBLIC_KEY`` (what SSH
        images such as linuxserver/openssh-server read) where the client did not set that itself."""
        keys = {PUBLIC_KEY: "\n".join(self.ssh_keys)} if self.ssh_keys and PUBLIC_KEY not in self.env else {}
        return {**keys, **self.env}


@dataclass
class Deployment:
    lease_id: int
    # "running", "starting", "exited", "stopped" (suspended, kept), "failed" (cannot start), "missing"
    state: str
    endpoints: list[str] = field(default_factory=list)
    restarts: int = 0
    exit_code: int | None = None
    error: str = ""
    finished_at: float | None = None  # when it last stopped running (Unix seconds), where known
    cause: str = ""  # for "failed", and for "exited" after the restarts ran out: CAUSE_WORKLOAD or CAUSE_PROVIDER


@dataclass(frozen=True)
class Usage:
    run_seconds: int  # seconds of the period the workload was running
    restarts: int  # restarts since it was deployed


def run_overlap(*, started: float | None, finished: float | None, start: int, end: int) -> int:
    """Seconds of ``[start, end]`` during which a run that began at ``started`` (and ended at
    ``finished``, or is still going) was running."""
    if started is None:
        return 0
    stop = end if finished is None else min(finished, end)
    return max(0, int(stop - max(started, start)))


def labels_for(lease_id: int) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_LEASE: str(lease_id)}


SHELL_COMMAND = [
    "/bin/sh",
    "-c",
    "export TERM=xterm-256color; if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh",
]
"""What a shell into a lease runs: bash where the image has it, else sh, for the browser's terminal
(``TERM`` set in the command: Kubernetes' exec sets no environment)."""


class Terminal(ABC):
    """An interactive shell in a lease's workload, on a pseudo-terminal (``Runtime.shell``).
    One thread reads; another may write, resize and close."""

    @abstractmethod
    def read(self, timeout: float) -> bytes | None:
        """What the shell wrote, waiting up to ``timeout`` seconds (b"" if nothing came); None once
        the shell has ended."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Keystrokes, as the terminal sends them (Ctrl-C is the byte 0x03: the pseudo-terminal
        turns it into SIGINT for what runs in the foreground)."""

    @abstractmethod
    def resize(self, cols: int, rows: int) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Hang up: the shell and what it runs in the foreground get SIGHUP."""

    def exit_code(self) -> int | None:
        """The shell's exit status once it has ended, where the runtime says."""
        return None


class Runtime(ABC):
    @abstractmethod
    def deploy(self, manifest: LeaseManifest) -> Deployment: ...

    @abstractmethod
    def status(self, lease_id: int) -> Deployment: ...

    @abstractmethod
    def logs(self, lease_id: int, *, tail: int = 200) -> str: ...

    def gpu_metrics(self, lease_id: int) -> "GpuMetrics | None":
        """What the lease's GPUs are doing now, where this runtime can read it; None otherwise."""
        return None

    @abstractmethod
    def usage(self, lease_id: int, *, start: int, end: int) -> Usage:
        """What the workload ran between ``start`` and ``end`` (Unix seconds), for usage reports."""

    @abstractmethod
    def suspend(self, lease_id: int) -> None:
        """Stop the workload but keep it (its container, or its namespace and volumes) for a resume."""

    @abstractmethod
    def resume(self, lease_id: int) -> Deployment:
        """Start a suspended workload again, as it was."""

    @abstractmethod
    def teardown(self, lease_id: int) -> None: ...

    def gpus_in_use(self) -> set[str]:
        """UUIDs of the GPUs the leases hold, where the runtime knows them (else empty)."""
        return set()

    def lease_gpus(self, lease_id: int) -> list[str]:
        """UUIDs of the GPUs the lease's workload holds, where the runtime knows them (else empty)."""
        return []

    def shell(self, lease_id: int, *, cols: int, rows: int) -> Terminal:
        """A shell in the lease's running workload; ``RuntimeError_`` saying why where there is none."""
        raise RuntimeError_("this provider's runtime offers no shell")

    @contextmanager
    def paused(self, lease_id: int) -> Iterator[None]:
        """The lease's workload frozen for a moment (a spot check on its GPUs), where the runtime
        can; elsewhere it keeps running alongside."""
        yield

    @abstractmethod
    def inventory_report(self) -> dict:
        """What is free to rent, as ``PUT /api/v1/providers/me/inventory/`` takes it."""

    @abstractmethod
    def owned(self) -> list[int]:
        """Lease ids of everything this agent runs, read back from the runtime's labels."""
