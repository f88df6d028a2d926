"""A Kubernetes API for tests: kmock's stateful emulator, served over real HTTP from a thread.

The official client talks to it exactly as to a cluster. kmock 0.8 keeps objects in memory but
is not a whole API server, so this wrapper adds the few things a real one does that the agent
relies on, and nothing else:

- cluster-scoped ``/api/v1/namespaces`` (kmock reads ``/namespaces/<name>`` as a namespace prefix):
  served as their own resource, and deleting a namespace deletes what is in it;
- a NodePort for each Service port on create, as the API server allocates them;
- label selectors are not applied by kmock; the agent filters what it lists by label itself;
- ``pods/<name>/exec`` over a WebSocket (the ``v4.channel.k8s.io`` protocol the API server speaks):
  the test plays the kubelet there too, running the command on this machine on a real
  pseudo-terminal, so a shell's keystrokes, resizes, Ctrl-C and exit status all really happen.

The test plays the controllers: it seeds nodes and creates or updates a lease's pod with the
status it wants the agent to see.
"""

import asyncio
import fcntl
import itertools
import json
import os
import re
import struct
import subprocess
import termios
import threading
from typing import Any

from aiohttp import WSMsgType, web
from kmock import KubernetesEmulator, Server, resource
from kubernetes import client as k8s

NAMESPACES = re.compile(r"/api/v1/namespaces(/[^/]+)?/?")
EXEC = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec")
CHANNEL_PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, ERROR, RESIZE = 0, 1, 3, 4
CLUSTER_NAMESPACES = resource("", "v1", "clusternamespaces")
RESOURCES = [
    "/v1/clusternamespaces",
    "/v1/nodes",
    "/v1/pods",
    "/v1/services",
    "/v1/resourcequotas",
    "/v1/secrets",
    "/v1/persistentvolumeclaims",
    "apps/v1/deployments",
    "networking.k8s.io/v1/networkpolicies",
]


class ClusterEmulator(KubernetesEmulator):
    execs: list[dict]  # what each exec asked for: namespace, pod and the query (command, container, tty)

    async def __call__(self, raw_request: Any) -> Any:
        exec_match = EXEC.fullmatch(raw_request.path)
        if exec_match is not None and raw_request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._exec(raw_request, *exec_match.groups())
        match = NAMESPACES.fullmatch(raw_request.path)
        if match is None:
            response = await super().__call__(raw_request)
            if raw_request.method == "POST" and raw_request.path.endswith("/services") and response.status < 300:
                self._allocate_node_ports()
            return response
        name = (match.group(1) or "").strip("/")
        rewritten = raw_request.clone(
            rel_url=raw_request.rel_url.with_path(f"/api/v1/clusternamespaces/{name}".rstrip("/"))
        )
        response = await super().__call__(rewritten)
        if raw_request.method == "DELETE" and name and response.status < 300:
            self._delete_contents(name)
        return response

    async def _exec(self, raw_request: Any, namespace: str, pod: str) -> Any:
        """The kubelet's side of ``kubectl exec -it``: the command on a pseudo-terminal here."""
        query = raw_request.rel_url.query
        self.__dict__.setdefault("execs", []).append(
            {**dict(query), "namespace": namespace, "pod": pod, "command": query.getall("command", [])}
        )
        if not any(key[1] == namespace and key[2] == pod and not obj.deleted for key, obj in self.objects.items()):
            return web.Response(status=404, text=f'pods "{pod}" not found')
        socket = web.WebSocketResponse(protocols=[CHANNEL_PROTOCOL])
        await socket.prepare(raw_request)
        master, child = os.openpty()
        process = subprocess.Popen(  # the command the exec asked for, as a kubelet runs it
            query.getall("command"),
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # the terminal controls it: Ctrl-C
            env={"PATH": "/usr/bin:/bin", "PS1": "$ "},
        )
        os.close(child)
        loop = asyncio.get_running_loop()
        output: asyncio.Queue[bytes | None] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            output.put_nowait(data or None)

        loop.add_reader(master, readable)

        async def pump() -> None:  # what the shell writes, until it ends
            while (data := await output.get()) is not None:
                await socket.send_bytes(bytes([STDOUT]) + data)

        async def keys() -> None:  # what the client sends, until it hangs up
            async for message in socket:
                if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    return
                data = message.data if isinstance(message.data, bytes) else message.data.encode()
                if data[:1] == bytes([STDIN]):
                    os.write(master, data[1:])
                elif data[:1] == bytes([RESIZE]):
                    size = json.loads(data[1:])
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(keys())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        loop.remove_reader(master)
        os.close(master)
        if tasks[0] in done:  # the shell ended: its status on the error channel, as the API server sends it
            code = await asyncio.to_thread(process.wait)
            status: dict = {"metadata": {}, "status": "Success"}
            if code:
                causes = [{"reason": "ExitCode", "message": str(code)}]
                status = {"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": causes}}
            await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        else:  # the client hung up: so does the terminal
            process.kill()
            await asyncio.to_thread(process.wait)
        await socket.close()
        return socket

    def _delete_contents(self, namespace: str) -> None:
        for key in [key for key in self.objects if key[1] == namespace]:
            if not self.objects[key].deleted:
                self.objects[key].delete()

    def _allocate_node_ports(self) -> None:
        services = [obj for (res, _, _), obj in self.objects.items() if res.plural == "services" and not obj.deleted]
        taken = {p.get("nodePort") for obj in services for p in obj.get("spec", {}).get("ports", [])}
        free = (port for port in itertools.count(30000) if port not in taken)
        for (res, _, _), obj in self.objects.items():
            if res.plural != "services" or obj.deleted:
                continue
            spec = obj.get("spec", {})
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                continue
            ports = spec.get("ports", [])
            if all(p.get("nodePort") for p in ports):
                continue
            obj.patch({"spec": {**spec, "ports": [{**p, "nodePort": next(free)} for p in ports]}})


class Cluster:
    """The emulator on a background event loop, and helpers to seed and inspect it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with ClusterEmulator() as emulator, Server(emulator) as server:
            for name in RESOURCES:
                emulator.resources[name] = {}
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "Cluster":
        self._thread.start()
        assert self._ready.wait(10), "the Kubernetes emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
        self._thread.join(timeout=10)

    def api_client(self) -> k8s.ApiClient:
        return k8s.ApiClient(k8s.Configuration(host=self.url))

    def _run(self, fn: Any) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def add_node(self, name: str, *, gpus: int = 0, product: str = "", memory_mib: int = 0, **extra: Any) -> None:
        labels = {"kubernetes.io/hostname": name}
        if product:
            labels |= {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.memory": str(memory_mib),
                "nvidia.com/gpu.count": str(gpus),
            }
        allocatable = {"cpu": "64", "memory": "512Gi", "ephemeral-storage": "1000Gi", "pods": "110"}
        if gpus:
            allocatable["nvidia.com/gpu"] = str(gpus)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": extra.get("spec", {}),
            "status": {"allocatable": allocatable, "capacity": allocatable, "addresses": []},
        }
        self._run(lambda: self.emulator.objects.__setitem__((resource("", "v1", "nodes"), None, name), node))

    def set_pod(
        self, namespace: str, name: str, *, labels: dict, node: str = "gpu-1", gpus: int = 0, **status: Any
    ) -> None:
        """Play the Deployment controller and the kubelet: a pod with this status."""
        container: dict[str, Any] = {"name": "workload", "image": "x"}
        if gpus:
            container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "containers": [container]},
            "status": {"hostIP": "198.51.100.7", **status},
        }
        self._run(lambda: self.emulator.objects.__setitem__((resource("", "v1", "pods"), namespace, name), pod))

    def objects(self, plural: str, namespace: str | None = None) -> list[dict]:
        def collect() -> list[dict]:
            return [
                obj.raw
                for (res, ns, _), obj in self.emulator.objects.items()
                if res.plural == plural and not obj.deleted and (namespace is None or ns == namespace)
            ]

        return self._run(collect)


def running_status(started_at: str, *, restarts: int = 0) -> dict:
    return {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "workload",
                "ready": True,
                "restartCount": restarts,
                "image": "x",
                "imageID": "",
                "state": {"running": {"startedAt": started_at}},
            }
        ],
    }


def waiting_status(reason: str, message: str) -> dict:
    return {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "workload",
                "ready": False,
                "restartCount": 0,
                "image": "x",
                "imageID": "",
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ],
    }
