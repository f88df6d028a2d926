"""A real Docker engine and a test image built here (no image can be pulled)."""

import io
import tarfile
from pathlib import Path

import pytest

IMAGE = "gpumarket-test/busybox:1"
BUSYBOX = Path("/bin/busybox")


def _engine():  # type: ignore[no-untyped-def]
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    """The Docker engine, with ``IMAGE`` imported from a busybox root filesystem."""
    client = _engine()
    if client is None:
        pytest.skip("needs a Docker engine (CI starts dockerd)")
    if not BUSYBOX.exists():
        pytest.skip("needs /bin/busybox to build the test image (CI installs busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.api.import_image_from_data(buffer.getvalue(), repository=IMAGE.split(":")[0], tag="1")
    return client
