"""A real Docker engine and a test image built here from a busybox root filesystem (no image can be
pulled). Shared by the tests and the agent benchmark."""

import io
import tarfile
from pathlib import Path
from typing import Any

IMAGE = "gpumarket-test/busybox:1"
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
