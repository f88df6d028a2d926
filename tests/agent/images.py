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


SSH_IMAGE = "gpumarket-test/ssh-box:1"
DROPBEAR = Path("/usr/sbin/dropbear")
# what the SSH box runs: the client's keys (PUBLIC_KEY, as the marketplace hands them to every lease)
# into authorized_keys, then Dropbear on port 2222 as the unprivileged user "box" (the lease's
# container has no capabilities), public-key logins only
SSH_BOX_START = """#!/bin/sh
set -e
mkdir -p "$HOME/.ssh"
printf '%s\\n' "$PUBLIC_KEY" > "$HOME/.ssh/authorized_keys"
chmod 700 "$HOME/.ssh"
chmod 600 "$HOME/.ssh/authorized_keys"
exec /usr/sbin/dropbear -F -E -R -s -p 2222
"""


def ssh_box_image(client: Any) -> str:
    """Import ``SSH_IMAGE`` (busybox and the host's Dropbear with its libraries, as an SSH image
    such as linuxserver/openssh-server is: a server that reads PUBLIC_KEY); "" when it is there,
    else why it cannot be built."""
    import subprocess

    if not DROPBEAR.exists():
        return "needs Dropbear to build the SSH box image (CI installs dropbear-bin)"

    def add_file(tar: tarfile.TarFile, path: str, name: str) -> None:
        real = os.path.realpath(path)
        info = tar.gettarinfo(real, arcname=name)
        info.uid = info.gid = 0
        with open(real, "rb") as data:
            tar.addfile(info, data)

    def add(tar: tarfile.TarFile, name: str, *, text: str | None = None, mode: int = 0o755, uid: int = 0) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid = mode, uid, uid
        if text is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            return
        data = text.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    libraries = subprocess.run(["ldd", str(DROPBEAR)], capture_output=True, text=True, check=True).stdout
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "etc", "tmp", "home", "usr", "usr/sbin"):
            add(tar, directory)
        add_file(tar, str(BUSYBOX), "bin/busybox")
        for applet in ("sh", "mkdir", "chmod", "printf", "echo", "cat", "id", "hostname", "sleep", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add_file(tar, str(DROPBEAR), "usr/sbin/dropbear")
        for line in libraries.splitlines():
            words = line.split()
            path = words[2] if "=>" in words and len(words) > 2 else words[0]
            if path.startswith("/"):
                add_file(tar, path, path.lstrip("/"))
        add(
            tar, "etc/passwd", text="root:x:0:0:root:/root:/bin/sh\nbox:x:1000:1000:box:/home/box:/bin/sh\n", mode=0o644
        )
        add(tar, "etc/group", text="root:x:0:\nbox:x:1000:\n", mode=0o644)
        add(tar, "etc/shells", text="/bin/sh\n", mode=0o644)
        add(tar, "etc/dropbear", mode=0o700, uid=1000)  # its host key, made at the first login
        add(tar, "home/box", uid=1000)
        add(tar, "bin/ssh-box", text=SSH_BOX_START)
    client.api.import_image_from_data(
        buffer.getvalue(),
        repository=SSH_IMAGE.split(":")[0],
        tag="1",
        changes=["USER box", "ENV HOME=/home/box", 'CMD ["/bin/ssh-box"]'],
    )
    return ""
