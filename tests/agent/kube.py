"""A Kubernetes API for tests: kmock's stateful emulator, served over real HTTP from a thread.

The official client talks to it exactly as to a cluster. kmock 0.8 keeps objects in memory but
is not a whole API server, so this wrapper adds the few things a real one does that the agent
relies on, and nothing else:

- cluster-scoped ``/api/v1/namespaces`` (kmock reads ``/namespaces/<name>`` as a namespace prefix):
  served as their own resource, and deleting a namespace deletes what is in it;
- a NodePort for each Service port on create, as the API server allocates them;
- label selectors are not applied by kmock; the agent filters what it lists by label itself.

The test plays the controllers: it seeds nodes and creates or updates a lease's pod with the
status it wants the agent to see.
"""

import asyncio
import itertools
import re
import threading
from typing import Any

from kmock import KubernetesEmulator, Server, resource
from kubernetes import client as k8s

NAMESPACES = re.compile(r"/api/v1/namespaces(/[^/]+)?/?")
CLUSTER_NAMESPACES = resource("", "v1", "clusternamespaces")
RESOURCES = [
    "/v1/clusternamespaces",
    "/v1/nodes",
    "/v1/pods",
    "/v1/services",
    "/v1/resourcequotas",
    "/v1/secrets",
    "apps/v1/deployments",
    "networking.k8s.io/v1/networkpolicies",
]


class ClusterEmulator(KubernetesEmulator):
    async def __call__(self, raw_request: Any) -> Any:
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
