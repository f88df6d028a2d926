"""Leases as containers on one Docker host (the official ``docker`` SDK).

A container per lease, named and labelled after it, with CPU and memory limits, GPUs by device
request (a count, or the device UUIDs the agent assigned), exposed ports bound on a configured
host address. Everything the agent owns is found again from the labels after a restart.

An agent owns the containers carrying its label whose names start with its ``name_prefix``
(``gpumarket-lease-`` unless configured): two agents on one Docker host (two marketplaces, or
staging beside production) with different prefixes never see, meter or remove each other's.
"""

import contextlib
import io
import re
import select
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, Mount

from agent.inventory import GpuMetrics, Inventory, discover, discover_gpus, gpu_metrics
from agent.runtimes.base import (
    CAUSE_WORKLOAD,
    LABEL_LEASE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    RESTARTS_BEFORE_GIVING_UP,
    SHELL_COMMAND,
    Deployment,
    LeaseManifest,
    Runtime,
    RuntimeError_,
    RuntimeUnavailable,
    Terminal,
    Usage,
    failure_cause,
    labels_for,
    run_overlap,
)

STOP_TIMEOUT_SECONDS = 10  # SIGTERM, then SIGKILL after this long, as `docker stop`


NAME_PREFIX = "gpumarket-lease-"
NAME_PREFIX_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}")  # what Docker allows a name to start with


def container_name(lease_id: int, prefix: str = NAME_PREFIX) -> str:
    return f"{prefix}{lease_id}"


class DockerRuntime(Runtime):
    def __init__(
        self,
        *,
        client: docker.DockerClient | None = None,
        host_address: str = "0.0.0.0",  # noqa: S104 - where providers publish lease ports
        network: str = "bridge",
        gpus: bool = True,
        pull_images: bool = True,
        inventory: Callable[[], Inventory] = discover,
        name_prefix: str = NAME_PREFIX,
    ) -> None:
        if not NAME_PREFIX_PATTERN.fullmatch(name_prefix):
            raise RuntimeError_(f"not a container name prefix: {name_prefix!r}")
        self.name_prefix = name_prefix
        try:
            self.client = client or docker.from_env()
        except DockerException as exc:
            raise RuntimeError_(f"no Docker engine answers: {exc}") from exc
        self.host_address, self.network, self.gpus = host_address, network, gpus
        self.pull_images = pull_images
        self.inventory = inventory
        self._cpus: int | None = None

    def _container(self, lease_id: int) -> Container | None:
        """The lease's container, freshly inspected, or None (also when it is removed meanwhile)."""
        try:
            return self.client.containers.get(container_name(lease_id, self.name_prefix))
        except NotFound:
            return None
        except (APIError, DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"the Docker engine does not answer: {exc}") from exc

    def deploy(self, manifest: LeaseManifest) -> Deployment:
        existing = self._container(manifest.lease_id)
        if existing is not None:  # a retried deploy, or a restart: never run a lease twice
            return self.status(manifest.lease_id)
        self._ensure_image(manifest.image)
        device_requests = []
        if self.gpus and manifest.gpu_count:
            uuids = manifest.gpu_uuids or self._assign_gpus(manifest.gpu_count)
            if uuids:
                device_requests.append(DeviceRequest(device_ids=list(uuids), capabilities=[["gpu"]]))
            else:
                device_requests.append(DeviceRequest(count=manifest.gpu_count, capabilities=[["gpu"]]))
        try:
            for volume in manifest.volumes:  # kept across the container's restarts, removed at teardown
                self.client.volumes.create(
                    name=self.volume_name(manifest.lease_id, volume["name"]), labels=labels_for(manifest.lease_id)
                )
            container = self.client.containers.create(
                **self.container_options(manifest, host_cpus=self._host_cpus()),
                device_requests=device_requests or None,
            )
            place_authorized_keys(container, manifest.ssh_keys)
            container.start()
        except ImageNotFound as exc:
            self._remove_quietly(manifest.lease_id)
            said = str(exc.explanation or exc)
            raise RuntimeError_(
                f"the image {manifest.image} does not exist or cannot be pulled: {said}"[:480],
                cause=failure_cause(said),
            ) from exc
        except APIError as exc:
            self._remove_quietly(manifest.lease_id)
            explanation = str(exc.explanation or exc)
            raise RuntimeError_(
                f"the container could not start: {explanation}", cause=failure_cause(explanation)
            ) from exc
        container.reload()
        return self._describe(manifest.lease_id, container)

    def container_options(self, manifest: LeaseManifest, *, host_cpus: int) -> dict:
        """How a lease's container is run (``containers.run``'s arguments, but its GPUs): the
        tenant's isolation lives here, and the tests hold every manifest to it."""
        ports = {}
        if self.network != "none":  # Docker's bridge, or a network the provider made for its tenants
            ports = {f"{p['port']}/{p.get('protocol', 'tcp')}": (self.host_address, None) for p in manifest.ports}
        return {
            "image": manifest.image,
            "entrypoint": manifest.command or None,
            "command": manifest.args or None,
            "environment": manifest.workload_env(),
            "name": container_name(manifest.lease_id, self.name_prefix),
            "labels": labels_for(manifest.lease_id),
            "nano_cpus": min(manifest.cpu_cores, host_cpus) * 1_000_000_000,
            "mem_limit": f"{manifest.memory_gib}g",
            "network_mode": self.network,
            "ports": ports or None,
            # the lease's own named volumes only, never a path of the host
            **(
                {
                    "mounts": [
                        Mount(volume["mount"], self.volume_name(manifest.lease_id, volume["name"]), type="volume")
                        for volume in manifest.volumes
                    ]
                }
                if manifest.volumes
                else {}
            ),
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "privileged": False,
            "restart_policy": {"Name": "on-failure", "MaximumRetryCount": RESTARTS_BEFORE_GIVING_UP},
            **({"shm_size": f"{manifest.shm_gib}g"} if manifest.shm_gib else {}),
        }

    def _host_cpus(self) -> int:
        """The engine's CPUs: Docker refuses a limit above them (a declared inventory may list more)."""
        if self._cpus is None:
            try:
                self._cpus = int(self.client.info().get("NCPU") or 0) or 1_000_000
            except (APIError, DockerException, OSError) as exc:
                raise RuntimeUnavailable(f"the Docker engine does not answer: {exc}") from exc
        return self._cpus

    def _assign_gpus(self, count: int) -> list[str]:
        """Free GPUs for a new lease, by UUID, so that no two leases share one. Empty when NVML
        cannot list the GPUs (Docker then picks ``count`` of them)."""
        gpus, _, _ = discover_gpus()
        if not gpus:
            return []
        busy = self.gpus_in_use()
        free = [gpu.uuid for gpu in gpus if gpu.uuid not in busy and not gpu.mig_mode]
        if len(free) < count:
            raise RuntimeError_(f"the GPUs are gone: {len(free)} of this host's GPUs are free, the lease needs {count}")
        return free[:count]

    def lease_gpus(self, lease_id: int) -> list[str]:
        container = self._container(lease_id)
        if container is None:
            return []
        requests = container.attrs.get("HostConfig", {}).get("DeviceRequests") or []
        return [uuid for request in requests for uuid in request.get("DeviceIDs") or []]

    @contextmanager
    def paused(self, lease_id: int) -> Iterator[None]:
        """``docker pause`` (the cgroup freezer) for the time of a spot check, then unpause. A
        container that is not running is left as it is."""
        container = self._container(lease_id)
        try:
            if container is not None:
                container.pause()
        except (APIError, DockerException, OSError):
            container = None
        try:
            yield
        finally:
            if container is not None:
                with contextlib.suppress(APIError, DockerException, OSError):
                    container.unpause()

    def gpus_in_use(self) -> set[str]:
        """UUIDs of the GPUs the containers this agent runs hold."""
        return {uuid for container in self._owned_containers() for uuid in _gpu_uuids(container)}

    def inventory_report(self) -> dict:
        return self.inventory().report(busy_gpu_uuids=self.gpus_in_use())

    def gpu_metrics(self, lease_id: int) -> GpuMetrics | None:
        """The lease's GPUs (its container's device request) as NVML reads them now."""
        container = self._container(lease_id)
        return None if container is None else gpu_metrics(_gpu_uuids(container))

    def _ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            if not self.pull_images:  # the provider runs only the images it has: its policy said yes
                raise RuntimeError_(f"the image {image} does not exist on this host") from None
        try:
            self.client.images.pull(image)
        except (ImageNotFound, APIError) as exc:
            said = str(getattr(exc, "explanation", None) or exc)
            raise RuntimeError_(f"the image {image} cannot be pulled: {said}"[:480], cause=failure_cause(said)) from exc

    def _describe(self, lease_id: int, container: Container) -> Deployment:
        state = container.attrs["State"]
        endpoints = []
        for bindings in (container.attrs["NetworkSettings"].get("Ports") or {}).values():
            for binding in bindings or []:
                endpoints.append(f"{binding['HostIp']}:{binding['HostPort']}")
        finished = _parse_time(state.get("FinishedAt"))
        restarts = container.attrs.get("RestartCount", 0)
        exit_code = None if state.get("Running") else state.get("ExitCode")
        status = "running" if state.get("Running") else state.get("Status", "unknown")
        error = state.get("Error", "")
        cause = ""
        if status == "exited" and exit_code and restarts >= RESTARTS_BEFORE_GIVING_UP:
            cause = CAUSE_WORKLOAD  # its own command kept failing: Docker gave up restarting it
        elif error:  # the engine could not start the container
            cause = failure_cause(error)
        return Deployment(
            lease_id=lease_id,
            state=status,
            endpoints=sorted(endpoints),
            restarts=restarts,
            exit_code=exit_code,
            error=error,
            finished_at=None if state.get("Running") or finished is None else finished.timestamp(),
            cause=cause,
        )

    def status(self, lease_id: int) -> Deployment:
        container = self._container(lease_id)
        if container is None:
            return Deployment(lease_id=lease_id, state="missing")
        return self._describe(lease_id, container)

    def logs(self, lease_id: int, *, tail: int = 200) -> str:
        container = self._container(lease_id)
        if container is None:
            return ""
        return container.logs(tail=tail).decode(errors="replace")

    def usage(self, lease_id: int, *, start: int, end: int) -> Usage:
        container = self._container(lease_id)
        if container is None:
            return Usage(run_seconds=0, restarts=0)
        state = container.attrs["State"]
        started = _parse_time(state.get("StartedAt"))
        running = bool(state.get("Running"))
        finished = None if running else _parse_time(state.get("FinishedAt"))
        run_seconds = 0
        if started is not None and (running or finished is not None):
            run_seconds = run_overlap(
                started=started.timestamp(), finished=finished.timestamp() if finished else None, start=start, end=end
            )
        return Usage(run_seconds=run_seconds, restarts=int(container.attrs.get("RestartCount", 0)))

    def shell(self, lease_id: int, *, cols: int, rows: int) -> Terminal:
        """``docker exec -it`` into the lease's container."""
        container = self._container(lease_id)
        if container is None or container.status != "running":
            raise RuntimeError_("the workload is not running")
        api = self.client.api
        try:
            exec_id = api.exec_create(container.id, SHELL_COMMAND, stdin=True, tty=True)["Id"]
            stream = api.exec_start(exec_id, socket=True, tty=True)
        except NotFound as exc:
            raise RuntimeError_("the workload is not running") from exc
        except APIError as exc:
            raise RuntimeError_(f"the shell could not start: {exc.explanation or exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"the Docker engine does not answer: {exc}") from exc
        return DockerTerminal(api, exec_id, stream, cols=cols, rows=rows)

    def suspend(self, lease_id: int) -> None:
        """``docker stop``: the container, its writable layer and volumes stay for a resume."""
        container = self._container(lease_id)
        if container is None:
            return
        try:
            container.stop(timeout=STOP_TIMEOUT_SECONDS)
        except NotFound:
            return
        except (APIError, DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"the Docker engine does not stop the container: {exc}") from exc

    def resume(self, lease_id: int) -> Deployment:
        container = self._container(lease_id)
        if container is None:
            return Deployment(lease_id=lease_id, state="missing")
        try:
            container.start()
        except APIError as exc:
            raise RuntimeError_(f"the container could not start again: {exc.explanation or exc}") from exc
        return self.status(lease_id)

    def teardown(self, lease_id: int) -> None:
        self._remove_quietly(lease_id)
        try:  # its volumes go with it (only this agent's, of this lease)
            volumes = self.client.volumes.list(filters={"label": f"{LABEL_LEASE}={lease_id}"})
        except (APIError, DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"the Docker engine does not answer: {exc}") from exc
        for volume in volumes:
            if volume.name.startswith(self.volume_name(lease_id, "")):
                with contextlib.suppress(NotFound, APIError):
                    volume.remove(force=True)

    def volume_name(self, lease_id: int, name: str) -> str:
        """A lease's volume: ``<prefix><lease>-<name>``, under this agent's prefix."""
        return f"{container_name(lease_id, self.name_prefix)}-{name}"

    def _remove_quietly(self, lease_id: int) -> None:
        container = self._container(lease_id)
        if container is not None:
            with contextlib.suppress(NotFound):
                container.remove(force=True)

    def _owned_containers(self) -> list:
        try:
            listed = self.client.containers.list(
                all=True,
                filters={"label": f"{LABEL_MANAGED_BY}={MANAGED_BY}", "name": f"^/{re.escape(self.name_prefix)}"},
                ignore_removed=True,
            )
        except (APIError, DockerException, OSError) as exc:
            raise RuntimeUnavailable(f"the Docker engine does not answer: {exc}") from exc
        # the engine's name filter is a pattern; the name itself decides
        return [c for c in listed if c.name == f"{self.name_prefix}{c.labels.get(LABEL_LEASE, '')}"]

    def owned(self) -> list[int]:
        return sorted(
            int(c.labels[LABEL_LEASE]) for c in self._owned_containers() if c.labels.get(LABEL_LEASE, "").isdigit()
        )


class DockerTerminal(Terminal):
    """An exec session's hijacked connection to the engine: with a TTY its bytes are the
    terminal's, both ways, with no stream headers."""

    READ_SIZE = 32_768

    def __init__(self, api: docker.APIClient, exec_id: str, stream: Any, *, cols: int, rows: int) -> None:
        self.api, self.exec_id = api, exec_id
        self.sock: socket.socket = getattr(stream, "_sock", stream)  # the socket under docker's wrapper
        self.sock.settimeout(None)
        self._write_lock = threading.Lock()
        self.resize(cols, rows)

    def read(self, timeout: float) -> bytes | None:
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return b""
            return self.sock.recv(self.READ_SIZE) or None
        except (OSError, ValueError):  # closed meanwhile
            return None

    def write(self, data: bytes) -> None:
        with self._write_lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(APIError, DockerException, OSError):  # the shell may have ended meanwhile
            self.api.exec_resize(self.exec_id, height=rows, width=cols)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def exit_code(self) -> int | None:
        try:
            code = self.api.exec_inspect(self.exec_id).get("ExitCode")
        except (APIError, DockerException, OSError):
            return None
        return code if isinstance(code, int) else None


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    trimmed = value.rstrip("Z")
    if "." in trimmed:
        head, fraction = trimmed.split(".", 1)
        trimmed = f"{head}.{fraction[:6]}"
    return datetime.fromisoformat(trimmed).replace(tzinfo=UTC)


def _gpu_uuids(container: Container) -> list[str]:
    """The GPUs a container holds (its device requests' UUIDs)."""
    requests = container.attrs.get("HostConfig", {}).get("DeviceRequests") or []
    return [uuid for request in requests for uuid in request.get("DeviceIDs") or []]


def place_authorized_keys(container: Container, keys: list[str]) -> None:
    """The client's keys also as ``~/.ssh/authorized_keys`` of the user the image runs as (root,
    or the image's ``USER`` found in its /etc/passwd), for images whose SSH server reads that file
    rather than ``PUBLIC_KEY``. Written into the created container before it starts; an image
    whose user has no home it names is left with ``PUBLIC_KEY`` alone."""
    if not keys:
        return
    owner = _home_of(container)
    if owner is None:
        return
    uid, gid, home = owner
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo(f"{home.strip('/')}/.ssh".lstrip("/"))
        directory.type, directory.mode, directory.uid, directory.gid = tarfile.DIRTYPE, 0o700, uid, gid
        tar.addfile(directory)
        data = ("\n".join(keys) + "\n").encode()
        file = tarfile.TarInfo(f"{directory.name}/authorized_keys")
        file.size, file.mode, file.uid, file.gid = len(data), 0o600, uid, gid
        tar.addfile(file, io.BytesIO(data))
    container.put_archive("/", buffer.getvalue())


def _home_of(container: Container) -> tuple[int, int, str] | None:
    """(uid, gid, home) of the user the container runs as, from its image's /etc/passwd."""
    user = str(container.attrs.get("Config", {}).get("User") or "root").split(":")[0]
    try:
        stream, _ = container.get_archive("/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            passwd = member.read().decode("utf-8", "replace") if member is not None else ""
    except (NotFound, APIError, tarfile.TarError, IndexError):
        passwd = ""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and user in (fields[0], fields[2]) and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3]), fields[5] or "/"
    return (0, 0, "/root") if user in ("root", "0") else None
