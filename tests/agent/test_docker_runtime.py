"""The Docker runtime against a real Docker engine, with a test image built here by
``docker import`` of a busybox root filesystem (no image can be pulled)."""

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

docker = pytest.importorskip("docker")

from agent.runtimes.base import LABEL_LEASE, LeaseManifest, RuntimeError_  # noqa: E402
from agent.runtimes.docker_runtime import DockerRuntime, container_name  # noqa: E402
from tests.agent.images import CONTAINERS, IMAGE, SSH_IMAGE, ssh_box_image  # noqa: E402


@pytest.fixture
def runtime(engine) -> Iterator[DockerRuntime]:  # type: ignore[no-untyped-def]
    rt = DockerRuntime(
        client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False
    )  # nothing leaves the host
    yield rt
    for lease_id in rt.owned():
        if lease_id >= 900_000:
            rt.teardown(lease_id)


def manifest(lease_id: int, **overrides) -> LeaseManifest:  # type: ignore[no-untyped-def]
    base = {
        "lease_id": lease_id,
        "image": IMAGE,
        "command": ["sh", "-c"],
        "args": ["echo started $GREETING; sleep 600"],
        "env": {"GREETING": "hello"},
        "cpu_cores": 1,
        "memory_gib": 1,
        "gpu_count": 1,
    }
    return LeaseManifest(**{**base, **overrides})


def test_deploy_status_logs_usage_teardown(runtime: DockerRuntime) -> None:
    deployed = runtime.deploy(manifest(900_001))
    assert deployed.state == "running"
    container = runtime.client.containers.get(container_name(900_001, CONTAINERS))
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 1_000_000_000 and host["Memory"] == 1024**3
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    assert container.labels[LABEL_LEASE] == "900001"
    deadline = time.monotonic() + 10
    while "started hello" not in runtime.logs(900_001) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "started hello" in runtime.logs(900_001)
    time.sleep(2.1)
    now = int(time.time())
    used = runtime.usage(900_001, start=now - 60, end=now)
    assert 1 <= used.run_seconds <= 30 and used.restarts == 0
    assert runtime.usage(900_001, start=now - 3600, end=now - 1800).run_seconds == 0  # before it started
    assert 900_001 in runtime.owned()
    # deploying again (a retry, or after a restart) never starts a second container
    assert runtime.deploy(manifest(900_001)).state == "running"
    assert len(runtime.client.containers.list(filters={"name": container_name(900_001, CONTAINERS)})) == 1
    runtime.teardown(900_001)
    assert runtime.status(900_001).state == "missing"
    assert 900_001 not in runtime.owned()


def test_the_clients_ssh_keys_and_secrets_reach_the_container_as_its_environment(runtime: DockerRuntime) -> None:
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5", "ecdsa-sha2-nistp256 AAAAE2VjZHNh"]
    lease = manifest(
        900_011,
        args=['echo "keys: $PUBLIC_KEY"; echo "token: $HF_TOKEN"; sleep 600'],
        env={"HF_TOKEN": "hf_s3cret"},
        secret_env=frozenset({"HF_TOKEN"}),
        ssh_keys=keys,
    )
    assert runtime.deploy(lease).state == "running"
    deadline = time.monotonic() + 10
    while "token:" not in runtime.logs(900_011) and time.monotonic() < deadline:
        time.sleep(0.1)
    said = runtime.logs(900_011)
    assert f"keys: {keys[0]}\n{keys[1]}" in said and "token: hf_s3cret" in said
    runtime.teardown(900_011)


def test_a_lease_asking_more_cpus_than_the_host_has_gets_them_all(engine, runtime: DockerRuntime) -> None:  # type: ignore[no-untyped-def]
    """A declared inventory can list more cores than the host has: Docker would refuse the limit."""
    host_cpus = engine.info()["NCPU"]
    assert runtime.deploy(manifest(900_009, cpu_cores=host_cpus + 100)).state == "running"
    nano_cpus = runtime.client.containers.get(container_name(900_009, CONTAINERS)).attrs["HostConfig"]["NanoCpus"]
    assert nano_cpus == host_cpus * 1_000_000_000


def test_a_lease_with_shared_memory_gets_a_dev_shm_of_that_size(runtime: DockerRuntime) -> None:
    lease = manifest(900_012, args=["cat /proc/mounts; sleep 600"], memory_gib=2, shm_gib=1)
    assert runtime.deploy(lease).state == "running"
    container = runtime.client.containers.get(container_name(900_012, CONTAINERS))
    assert container.attrs["HostConfig"]["ShmSize"] == 1024**3
    deadline = time.monotonic() + 10
    while "/dev/shm" not in runtime.logs(900_012) and time.monotonic() < deadline:
        time.sleep(0.1)
    [shm] = [line for line in runtime.logs(900_012).splitlines() if " /dev/shm " in line]
    assert "size=1048576k" in shm
    runtime.teardown(900_012)


def test_a_fresh_runtime_finds_what_it_owns_from_the_labels(engine, runtime: DockerRuntime) -> None:  # type: ignore[no-untyped-def]
    runtime.deploy(manifest(900_002))
    restarted = DockerRuntime(
        client=docker.from_env(), name_prefix=CONTAINERS, network="none", gpus=False, pull_images=False
    )  # the agent restarted
    assert 900_002 in restarted.owned()
    assert restarted.status(900_002).state == "running"


def test_an_agent_with_another_name_prefix_never_sees_or_touches_these_containers(
    engine, runtime: DockerRuntime
) -> None:  # type: ignore[no-untyped-def]
    """Two agents on one Docker host (two marketplaces, staging beside production) keep apart."""
    runtime.deploy(manifest(900_010))
    other = DockerRuntime(
        client=engine, name_prefix=f"other-{CONTAINERS}", network="none", gpus=False, pull_images=False
    )
    assert 900_010 in runtime.owned() and 900_010 not in other.owned()
    assert other.status(900_010).state == "missing"
    other.teardown(900_010)  # removes only what would be its own
    assert runtime.status(900_010).state == "running"
    with pytest.raises(RuntimeError_, match="name prefix"):
        DockerRuntime(client=engine, name_prefix="/etc", network="none", gpus=False, pull_images=False)


def test_an_image_that_does_not_exist_is_a_clear_failure(runtime: DockerRuntime) -> None:
    with pytest.raises(RuntimeError_, match="does not exist"):
        runtime.deploy(manifest(900_003, image="gpumarket-test/no-such-image:1"))
    assert runtime.status(900_003).state == "missing"


def test_gpus_the_host_does_not_have_are_a_clear_failure(engine) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("nvidia-container-runtime"):
        pytest.skip("this host has the NVIDIA runtime")
    with_gpus = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=True, pull_images=False)
    with pytest.raises(RuntimeError_, match="could not start") as failed:
        with_gpus.deploy(manifest(900_004))
    assert failed.value.cause == "provider"  # the host's, not the workload's
    assert with_gpus.status(900_004).state == "missing"  # nothing left behind


class Registry(BaseHTTPRequestHandler):
    """A registry on loopback that has no images: the answer a real one gives for a missing tag."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v2":
            body, status = b"{}", 200
        else:
            body, status = b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_whose_fault_a_failed_pull_is_the_registry_says(engine) -> None:  # type: ignore[no-untyped-def]
    """The engine pulls from a registry on loopback: a tag it does not have is the client's mistake;
    a registry that does not answer is the provider's (its network)."""
    from chain.devnode import free_port

    pulling = DockerRuntime(client=engine, name_prefix=CONTAINERS, network="none", gpus=False, pull_images=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RuntimeError_, match="cannot be pulled") as missing:
            pulling.deploy(manifest(900_011, image=f"127.0.0.1:{server.server_port}/gpumarket-test/nope:1"))
    finally:
        server.shutdown()
    assert missing.value.cause == "workload", str(missing.value)
    with pytest.raises(RuntimeError_, match="cannot be pulled") as unreachable:
        pulling.deploy(manifest(900_012, image=f"127.0.0.1:{free_port()}/gpumarket-test/nope:1"))
    assert unreachable.value.cause == "provider", str(unreachable.value)
    assert pulling.status(900_011).state == pulling.status(900_012).state == "missing"


def test_a_command_that_cannot_run_or_keeps_failing_is_the_workloads_fault(runtime: DockerRuntime) -> None:
    with pytest.raises(RuntimeError_, match="could not start") as missing:
        runtime.deploy(manifest(900_013, command=["/no/such/program"], args=[]))
    assert missing.value.cause == "workload", str(missing.value)
    runtime.deploy(manifest(900_014, args=["exit 3"]))  # starts, fails, restarted until Docker gives up
    deadline = time.monotonic() + 60
    while (current := runtime.status(900_014)).state != "exited" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (current.state, current.exit_code, current.cause) == ("exited", 3, "workload")
    assert current.restarts == 3


def test_suspend_stops_and_keeps_the_container_and_resume_starts_it_as_it_was(runtime: DockerRuntime) -> None:
    script = "date +%s >> /starts; trap 'exit 0' TERM; sleep 600 & wait"
    assert runtime.deploy(manifest(900_005, args=[script])).state == "running"
    time.sleep(1.1)
    runtime.suspend(900_005)
    stopped = runtime.status(900_005)
    assert stopped.state == "exited" and stopped.finished_at is not None
    assert 900_005 in runtime.owned()  # kept, with its filesystem
    later = int(time.time()) + 2
    time.sleep(2.1)
    assert runtime.usage(900_005, start=later, end=later + 1).run_seconds == 0  # stopped time is not running
    resumed = runtime.resume(900_005)
    assert resumed.state == "running"
    starts = runtime.client.containers.get(container_name(900_005, CONTAINERS)).exec_run(["cat", "/starts"]).output
    assert len(starts.decode().split()) == 2  # the same container, started twice
    runtime.suspend(900_005)
    runtime.suspend(900_005)  # twice is harmless
    runtime.teardown(900_005)
    runtime.suspend(900_005)  # and so is a container that is gone
    assert runtime.resume(900_005).state == "missing"


def test_a_spot_check_pauses_the_leases_container_and_unpauses_it_after(runtime: DockerRuntime) -> None:
    assert runtime.deploy(manifest(900_007)).state == "running"
    assert runtime.lease_gpus(900_007) == []  # no GPUs on this host: none assigned by UUID
    container = runtime.client.containers.get(container_name(900_007, CONTAINERS))
    with pytest.raises(TimeoutError), runtime.paused(900_007):
        container.reload()
        assert container.status == "paused"
        raise TimeoutError  # the check went wrong: the workload is unpaused all the same
    container.reload()
    assert container.status == "running"
    runtime.suspend(900_007)
    with runtime.paused(900_007):  # stopped: nothing to pause, nothing fails
        pass
    with runtime.paused(900_999):  # gone
        pass
    assert runtime.status(900_007).state == "exited"
    runtime.teardown(900_007)


@pytest.mark.parametrize(
    ("said", "cause"),
    [
        ("manifest for ghcr.io/acme/nope:1 not found: manifest unknown: manifest unknown", "workload"),
        ("pull access denied for acme/nope, repository does not exist or may require 'docker login'", "workload"),
        ("invalid reference format: repository name (library/Acme) must be lowercase", "workload"),
        ('unable to start container process: exec: "/no/such": stat /no/such: no such file or directory', "workload"),
        ('exec: "python": executable file not found in $PATH: unknown', "workload"),
        ('error adding custom device "/dev/nvidia0": no such file or directory', "provider"),
        ("Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io: no such host", "provider"),
        ("write /var/lib/docker/tmp/x: no space left on device", "provider"),
        ('could not select device driver "" with capabilities: [[gpu]]', "provider"),
    ],
)
def test_whose_fault_the_runtimes_words_say(said: str, cause: str) -> None:
    from agent.runtimes.base import failure_cause

    assert failure_cause(said) == cause


def test_the_clients_keys_are_also_the_image_users_authorized_keys(engine, runtime: DockerRuntime) -> None:  # type: ignore[no-untyped-def]
    """For images whose SSH server reads ~/.ssh/authorized_keys rather than PUBLIC_KEY: root's, or
    the image's own user's (from its /etc/passwd), written before the container starts."""
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5 laptop", "ecdsa-sha2-nistp256 AAAAE2VjZHNh desk"]
    lease = manifest(900_013, args=["cat /root/.ssh/authorized_keys; sleep 600"], ssh_keys=keys)  # no passwd: root
    assert runtime.deploy(lease).state == "running"
    deadline = time.monotonic() + 10
    while "desk" not in runtime.logs(900_013) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runtime.logs(900_013).splitlines()[:2] == keys
    container = runtime.client.containers.get(container_name(900_013, CONTAINERS))
    _, stat = container.get_archive("/root/.ssh/authorized_keys")
    assert stat["mode"] & 0o777 == 0o600
    runtime.teardown(900_013)

    # an image whose user is not root: its home, owned by it (the SSH box image's user "box")
    missing = ssh_box_image(engine)
    if missing:
        pytest.skip(missing)
    box = manifest(900_014, image=SSH_IMAGE, command=["sh", "-c"], args=["ls -ln $HOME/.ssh; sleep 600"], ssh_keys=keys)
    assert runtime.deploy(box).state == "running"
    deadline = time.monotonic() + 10
    while "authorized_keys" not in runtime.logs(900_014) and time.monotonic() < deadline:
        time.sleep(0.1)
    [line] = [line for line in runtime.logs(900_014).splitlines() if line.endswith("authorized_keys")]
    assert line.startswith("-rw-------") and " 1000 " in line  # the user's own file
    runtime.teardown(900_014)


def test_a_leases_volume_outlives_its_containers_restarts_and_goes_with_the_lease(runtime: DockerRuntime) -> None:
    volume = {"name": "data", "mount": "/data", "size_gib": 1, "storage_class": ""}
    script = "cat /data/kept 2>/dev/null; echo run >> /data/kept; sleep 600"
    lease = manifest(900_015, args=[script], volumes=[volume])
    assert runtime.deploy(lease).state == "running"
    container = runtime.client.containers.get(container_name(900_015, CONTAINERS))
    [mount] = container.attrs["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"]) == (
        "volume",
        runtime.volume_name(900_015, "data"),
        "/data",
    )
    time.sleep(1)
    container.restart(timeout=1)  # what the engine does when the workload exits and restarts
    deadline = time.monotonic() + 10
    while "run" not in runtime.logs(900_015) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "run" in runtime.logs(900_015)  # the second run read what the first wrote
    runtime.teardown(900_015)
    assert not runtime.client.volumes.list(filters={"name": runtime.volume_name(900_015, "data")})
