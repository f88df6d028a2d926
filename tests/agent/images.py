"""A real Docker engine and a test image built here from a busybox root filesystem (no image can be
pulled). Shared by the tests and the agent benchmark."""

import io
import os
import tarfile
from pathlib import Path
from typing import Any

IMAGE = "gpumarket-test/busybox:1"
# this run's (and this worker's) containers: what its agents and runtimes create and remove, so
# runs sharing the engine never touch each other's
CONTAINERS = f"gpumarket-test{os.getpid()}-lease-"
DOCKER_SETTINGS = "{network: none, gpus: false, pull_images: false, name_prefix: " + CONTAINERS + "}"


def our_containers(engine: Any, lease_id: int) -> list:
    """This run's containers of a lease now (one removed while it is listed is left out)."""
    return engine.containers.list(all=True, filters=ours(lease_id), ignore_removed=True)


def ours(lease_id: int) -> dict:
    """The engine's filter for this run's containers of a lease (labelled with it, named under this
    run's prefix)."""
    return {"label": f"gpumarket.io/lease={lease_id}", "name": f"^/{CONTAINERS}"}


BUSYBOX = Path("/bin/busybox")


def engine_with_test_image() -> tuple[Any, str]:
    """(the Docker client with ``IMAGE`` imported, "") or (None, why not)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception:
        return None, "needs a Docker engine (CI starts dockerd)"
    if not BUSYBOX.exists():
        return None, "needs /bin/busybox to build the test image (CI installs busybox-static)"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.api.import_image_from_data(buffer.getvalue(), repository=IMAGE.split(":")[0], tag="1")
    return client, ""
