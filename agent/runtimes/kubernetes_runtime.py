"""Leases on a Kubernetes cluster (the official ``kubernetes`` client), one namespace per lease.

Each lease gets a namespace ``<prefix><lease id>`` holding:

- a ResourceQuota that caps it at what the lease bought;
- a NetworkPolicy that keeps leases apart: ingress only from its own namespace and from outside
  the cluster's private ranges, egress to the internet and cluster DNS only;
- a Deployment (one replica, ``Recreate``) with requests = limits for CPU, memory, ephemeral
  storage and ``nvidia.com/gpu``, ``runtimeClassName: nvidia`` when it has GPUs, node affinity on
  ``nvidia.com/gpu.product`` for the lease's model, a toleration for the ``nvidia.com/gpu`` taint,
  and a restricted security context (no privilege escalation, every capability dropped, seccomp
  ``RuntimeDefault``, no service-account token, no host namespaces or paths);
- a Service (NodePort or LoadBalancer) when the workload exposes ports.

Everything carries ``app.kubernetes.io/managed-by=gpumarket-agent`` and ``gpumarket.io/lease``;
the agent finds what it owns from those labels after a restart. Deleting the namespace tears it
all down. Inventory comes from the nodes' allocatable ``nvidia.com/gpu`` and GPU Feature Discovery
labels, minus the GPUs that running pods request.
"""

import json
import threading
from collections import defaultdict
from contextlib import suppress
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream as k8s_stream
from kubernetes.stream.ws_client import (
    ERROR_CHANNEL,
    RESIZE_CHANNEL,
    STDERR_CHANNEL,
    STDIN_CHANNEL,
    STDOUT_CHANNEL,
    WSClient,
    _IgnoredIO,
)
from kubernetes.utils.quantity import parse_quantity
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import HTTPError

from agent.config import KubernetesSettings
from agent.inventory import GpuMetrics
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
from protocol.catalog import normalize_gpu_name

GPU_RESOURCE = "nvidia.com/gpu"
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # per GPU, percent
DCGM_MEMORY = "DCGM_FI_DEV_FB_USED"  # per GPU, MiB of framebuffer in use
DCGM_METRICS = frozenset({DCGM_UTIL, DCGM_MEMORY})
METRICS_TIMEOUT = 2.0  # seconds the exporter has to answer
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
WORKLOAD = "workload"
ENV_SECRET = "workload-env"  # noqa: S105 - the name of the Secret holding the lease's secret variables
SSH_KEYS = "ssh-keys"  # the Secret holding the client's keys as root's authorized_keys
# Cluster-private ranges a lease may not reach (pods, services, nodes, cloud metadata).
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]
# Container states that will not fix themselves: the lease fails with the reason.
FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}


def _selector() -> str:
    return f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _owned_labels(labels: dict | None) -> bool:
    return labels is not None and labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_LEASE, "").isdigit()


def _quantity(value: Any) -> Decimal:
    try:
        return parse_quantity(value) if value is not None else Decimal(0)
    except ValueError:
        return Decimal(0)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class KubernetesRuntime(Runtime):
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        service_type: str = "NodePort",
        node_address: str = "",
        runtime_class: str = "nvidia",
        namespace_prefix: str = "gpumarket-lease-",
        gpu_metrics_url: str = "",
        storage_classes: dict[str, str] | None = None,
    ) -> None:
        self.api = api
        self.gpu_metrics_url = gpu_metrics_url
        self.storage_classes = dict(storage_classes or {})  # a volume's class (Akash's beta3) -> a StorageClass
        self.core, self.apps, self.net = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.NetworkingV1Api(api)
        self.service_type, self.node_address = service_type, node_address
        self.runtime_class, self.prefix = runtime_class, namespace_prefix

    @classmethod
    def from_settings(cls, settings: KubernetesSettings) -> "KubernetesRuntime":
        configuration = k8s.Configuration()
        try:
            if settings.kubeconfig:
                k8s_config.load_kube_config(
                    config_file=settings.kubeconfig,
                    context=settings.context or None,
                    client_configuration=configuration,
                )
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise RuntimeError_(f"no Kubernetes cluster configured: {exc}") from exc
        return cls(
            k8s.ApiClient(configuration),
            service_type=settings.service_type,
            node_address=settings.node_address,
            runtime_class=settings.runtime_class,
            namespace_prefix=settings.namespace_prefix,
            gpu_metrics_url=settings.gpu_metrics_url,
            storage_classes=settings.storage_classes,
        )

    def namespace(self, lease_id: int) -> str:
        return f"{self.prefix}{lease_id}"

    # --- manifests ----------------------------------------------------------------------------
    def gpu_products(self, model: str) -> list[str]:
        """The ``nvidia.com/gpu.product`` values of this cluster's nodes that are catalog ``model``."""
        products = set()
        for node in self._call(self.core.list_node).items:
            labels = node.metadata.labels or {}
            product = labels.get(PRODUCT_LABEL)
            memory = labels.get(MEMORY_LABEL)
            if product and normalize_gpu_name(product, int(str(memory)) if str(memory).isdigit() else None) == model:
                products.add(product)
        return sorted(products)

    def manifests(self, manifest: LeaseManifest, *, products: list[str] | None = None) -> list[dict]:
        """Every object of a lease, as the API takes it (and ``kubernetes-validate`` checks it)."""
        lease_id, namespace = manifest.lease_id, self.namespace(manifest.lease_id)
        labels = labels_for(lease_id)
        meta = {"name": WORKLOAD, "namespace": namespace, "labels": labels}
        secrets = manifest.secret_env & manifest.env.keys()
        cpu, memory, storage = str(manifest.cpu_cores), f"{manifest.memory_gib}Gi", f"{manifest.storage_gib}Gi"
        resources: dict[str, str] = {"cpu": cpu, "memory": memory, "ephemeral-storage": storage}
        if manifest.gpu_count:
            resources[GPU_RESOURCE] = str(manifest.gpu_count)
        ports = [
            {"name": f"p{p['port']}-{p['protocol']}"[:15], "port": int(p["port"]), "protocol": p["protocol"].upper()}
            for p in manifest.ports
        ]
        pod_spec: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "restartPolicy": "Always",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": WORKLOAD,
                    "image": manifest.image,
                    **({"command": manifest.command} if manifest.command else {}),
                    **({"args": manifest.args} if manifest.args else {}),
                    # a secret's value lives in the lease's Secret, never in the Deployment's spec
                    "env": [
                        {"name": k, "valueFrom": {"secretKeyRef": {"name": ENV_SECRET, "key": k}}}
                        if k in manifest.secret_env
                        else {"name": k, "value": v}
                        for k, v in sorted(manifest.workload_env().items())
                    ],
                    "ports": [
                        {"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]} for p in ports
                    ],
                    "resources": {"requests": dict(resources), "limits": dict(resources)},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
        }
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if manifest.shm_gib:  # /dev/shm as a memory-backed volume, counted in the container's memory
            volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{manifest.shm_gib}Gi"}})
            mounts.append({"name": "shm", "mountPath": "/dev/shm"})  # noqa: S108 - the container's own
        if manifest.ssh_keys:  # for images whose SSH server reads root's authorized_keys, not PUBLIC_KEY
            volumes.append({"name": SSH_KEYS, "secret": {"secretName": SSH_KEYS, "defaultMode": 0o600}})
            mounts.append(
                {
                    "name": SSH_KEYS,
                    "mountPath": "/root/.ssh/authorized_keys",
                    "subPath": "authorized_keys",
                    "readOnly": True,
                }
            )
        for volume in manifest.volumes:  # a claim each, deleted with the lease's namespace
            claim = f"vol-{volume['name']}"
            volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
            mounts.append({"name": claim, "mountPath": volume["mount"]})
        if volumes:
            pod_spec["volumes"] = volumes
            pod_spec["containers"][0]["volumeMounts"] = mounts
        if manifest.gpu_count:
            pod_spec["runtimeClassName"] = self.runtime_class
            pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
            if products:
                pod_spec["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": PRODUCT_LABEL, "operator": "In", "values": products}]}
                            ]
                        }
                    }
                }
        quota = {
            "pods": "2",
            "services.loadbalancers": "0",
            "services.nodeports": "0",
            "persistentvolumeclaims": str(len(manifest.volumes)),
        }
        if manifest.volumes:
            quota["requests.storage"] = f"{sum(v['size_gib'] for v in manifest.volumes)}Gi"
        for name, value in resources.items():
            quota[f"requests.{name}"] = value
            if name != GPU_RESOURCE:  # extended resources are quota'd by requests only
                quota[f"limits.{name}"] = value
        if ports:
            quota["services.nodeports" if self.service_type == "NodePort" else "services.loadbalancers"] = str(
                len(ports) if self.service_type == "NodePort" else 1
            )
        objects: list[dict] = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {
                        **labels,
                        "pod-security.kubernetes.io/enforce": "baseline",
                        "pod-security.kubernetes.io/warn": "restricted",
                    },
                },
            },
            {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta, "spec": {"hard": quota}},
            *(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {**meta, "name": ENV_SECRET},
                        "type": "Opaque",
                        "immutable": True,
                        "stringData": {k: v for k, v in sorted(manifest.env.items()) if k in manifest.secret_env},
                    }
                ]
                if secrets
                else []
            ),
            *[self._claim(meta, volume) for volume in manifest.volumes],
            *(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {**meta, "name": SSH_KEYS},
                        "type": "Opaque",
                        "immutable": True,
                        "stringData": {"authorized_keys": "\n".join(manifest.ssh_keys) + "\n"},
                    }
                ]
                if manifest.ssh_keys
                else []
            ),
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta,
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {"from": [{"podSelector": {}}]},  # its own namespace
                        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]},  # the internet
                    ],
                    "egress": [
                        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]},
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                    },
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                                }
                            ],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                        },
                    ],
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},  # GPUs are not shared between old and new pods
                    "selector": {"matchLabels": {LABEL_LEASE: str(lease_id)}},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
        ]
        if ports:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta,
                    "spec": {
                        "type": self.service_type,
                        "externalTrafficPolicy": "Local",  # keeps the client's address for the NetworkPolicy
                        "selector": {LABEL_LEASE: str(lease_id)},
                        "ports": [
                            {"name": p["name"], "port": p["port"], "targetPort": p["port"], "protocol": p["protocol"]}
                            for p in ports
                        ],
                    },
                }
            )
        return objects

    # --- the runtime interface ----------------------------------------------------------------
    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ApiException:
            raise
        except (HTTPError, OSError) as exc:
            raise RuntimeUnavailable(f"the Kubernetes API is unreachable: {exc}") from exc

    def _claim(self, meta: dict, volume: dict) -> dict:
        """A volume's claim: its size, and the StorageClass the provider maps its class to
        (``storage_classes``; the cluster's default where it maps none)."""
        storage_class = self.storage_classes.get(volume.get("storage_class") or "", "")
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {**meta, "name": f"vol-{volume['name']}"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{volume['size_gib']}Gi"}},
                **({"storageClassName": storage_class} if storage_class else {}),
            },
        }

    def _create(self, manifest: dict) -> None:
        obj: Any = manifest  # the client takes a manifest as a dict as well as its model classes
        namespace = obj["metadata"].get("namespace")
        creators = {
            "Namespace": lambda: self.core.create_namespace(obj),
            "ResourceQuota": lambda: self.core.create_namespaced_resource_quota(namespace, obj),
            "NetworkPolicy": lambda: self.net.create_namespaced_network_policy(namespace, obj),
            "Deployment": lambda: self.apps.create_namespaced_deployment(namespace, obj),
            "Service": lambda: self.core.create_namespaced_service(namespace, obj),
            "Secret": lambda: self.core.create_namespaced_secret(namespace, obj),
            "PersistentVolumeClaim": lambda: self.core.create_namespaced_persistent_volume_claim(namespace, obj),
        }
        try:
            self._call(creators[obj["kind"]])
        except ApiException as exc:
            if exc.status == 409:
                return  # already there: a retried deploy, or after a restart
            if exc.status in (401, 403) or (exc.status or 500) >= 500:
                raise RuntimeUnavailable(f"Kubernetes: {exc.reason} ({exc.status})") from exc
            raise RuntimeError_(f"Kubernetes refused the {obj['kind']}: {exc.reason} ({exc.status})") from exc

    def deploy(self, manifest: LeaseManifest) -> Deployment:
        products: list[str] = []
        if manifest.gpu_count:
            products = self.gpu_products(manifest.gpu_model) if manifest.gpu_model else []
            if manifest.gpu_model and not products:
                raise RuntimeError_(f"the GPUs are gone: no node of this cluster has a {manifest.gpu_model}")
        for obj in self.manifests(manifest, products=products):
            self._create(obj)
        return self.status(manifest.lease_id)

    def _pods(self, lease_id: int) -> list[Any]:
        try:
            pods = self._call(
                self.core.list_namespaced_pod, self.namespace(lease_id), label_selector=f"{LABEL_LEASE}={lease_id}"
            ).items
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise RuntimeUnavailable(f"Kubernetes: {exc.reason} ({exc.status})") from exc
        ours = [p for p in pods if (p.metadata.labels or {}).get(LABEL_LEASE) == str(lease_id)]
        return sorted(ours, key=lambda p: str(p.metadata.creation_timestamp or ""), reverse=True)

    def status(self, lease_id: int) -> Deployment:
        try:  # 404 when the namespace is gone too
            deployment = self._call(self.apps.read_namespaced_deployment, WORKLOAD, self.namespace(lease_id))
        except ApiException as exc:
            if exc.status == 404:
                return Deployment(lease_id=lease_id, state="missing")
            raise RuntimeUnavailable(f"Kubernetes: {exc.reason} ({exc.status})") from exc
        if deployment.spec is not None and deployment.spec.replicas == 0:
            return Deployment(lease_id=lease_id, state="stopped")
        pods = self._pods(lease_id)
        if not pods:
            return Deployment(lease_id=lease_id, state="starting")
        pod = pods[0]
        statuses = (pod.status.container_statuses or []) if pod.status else []
        restarts = sum(s.restart_count or 0 for s in statuses)
        for container in statuses:
            waiting = container.state.waiting if container.state else None
            if waiting is not None and waiting.reason in FATAL_WAITING:
                error = f"{waiting.reason}: {waiting.message or 'the container cannot start'}"[:480]
                return Deployment(
                    lease_id=lease_id, state="failed", restarts=restarts, error=error, cause=failure_cause(error)
                )
            if (
                waiting is not None
                and waiting.reason == "CrashLoopBackOff"
                and (container.restart_count or 0) >= RESTARTS_BEFORE_GIVING_UP
            ):  # its own command keeps failing
                return Deployment(
                    lease_id=lease_id,
                    state="exited",
                    restarts=restarts,
                    error=f"CrashLoopBackOff: {waiting.message or 'the container keeps exiting'}"[:480],
                    cause=CAUSE_WORKLOAD,
                )
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return Deployment(lease_id=lease_id, state="exited", restarts=restarts)
        if phase == "Running" and statuses and all(s.ready for s in statuses):
            return Deployment(
                lease_id=lease_id, state="running", endpoints=self._endpoints(lease_id, pod), restarts=restarts
            )
        error = ""
        for condition in (pod.status.conditions or []) if pod.status else []:
            if condition.type == "PodScheduled" and condition.status == "False":
                error = f"not scheduled: {condition.message or condition.reason}"
        return Deployment(lease_id=lease_id, state="starting", restarts=restarts, error=error)

    def _endpoints(self, lease_id: int, pod: Any) -> list[str]:
        try:
            service = self._call(self.core.read_namespaced_service, WORKLOAD, self.namespace(lease_id))
        except ApiException:
            return []
        endpoints = []
        for port in service.spec.ports or []:
            if service.spec.type == "LoadBalancer":
                for ingress in (service.status.load_balancer.ingress or []) if service.status else []:
                    endpoints.append(f"{ingress.ip or ingress.hostname}:{port.port}")
            elif port.node_port:
                host = self.node_address or (pod.status.host_ip if pod.status else "")
                if host:
                    endpoints.append(f"{host}:{port.node_port}")
        return sorted(endpoints)

    def logs(self, lease_id: int, *, tail: int = 200) -> str:
        pods = self._pods(lease_id)
        if not pods:
            return ""
        try:
            return self._call(
                self.core.read_namespaced_pod_log, pods[0].metadata.name, self.namespace(lease_id), tail_lines=tail
            )
        except ApiException:
            return ""

    def gpu_metrics(self, lease_id: int) -> GpuMetrics | None:
        """The lease's GPUs as NVIDIA's DCGM exporter reads them: its series carry the pod's
        namespace (the GPU Operator maps GPUs to pods through the kubelet's pod-resources API), so
        those of the lease's namespace are its GPUs. None where no exporter is configured or it does
        not answer: a picture for the client, never a reason for a report to fail."""
        if not self.gpu_metrics_url:
            return None
        try:
            response = requests.get(self.gpu_metrics_url, timeout=METRICS_TIMEOUT)
            response.raise_for_status()
            families = list(text_string_to_metric_families(response.text))
        except (requests.RequestException, ValueError):
            return None
        namespace = self.namespace(lease_id)
        readings: dict[str, dict[str, float]] = defaultdict(dict)  # GPU -> metric -> value
        for family in families:
            for sample in family.samples:
                if sample.name in DCGM_METRICS and sample.labels.get("namespace") == namespace:
                    gpu = sample.labels.get("UUID") or sample.labels.get("gpu", "")
                    readings[gpu][sample.name] = sample.value
        utilization = [r[DCGM_UTIL] for r in readings.values() if DCGM_UTIL in r]
        if not utilization:
            return None
        memory = sum(r.get(DCGM_MEMORY, 0.0) for r in readings.values())
        return GpuMetrics(utilization_pct=round(sum(utilization) / len(utilization), 1), memory_mib=int(memory))

    def shell(self, lease_id: int, *, cols: int, rows: int) -> Terminal:
        """``kubectl exec -it`` into the workload container of the lease's running pod."""
        running = [p for p in self._pods(lease_id) if p.status is not None and p.status.phase == "Running"]
        if not running:
            raise RuntimeError_("the workload is not running")
        try:
            client = k8s_stream(
                self.core.connect_get_namespaced_pod_exec,
                running[0].metadata.name,
                self.namespace(lease_id),
                container=WORKLOAD,
                command=SHELL_COMMAND,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=True,
                binary=True,
                _preload_content=False,
            )
        except ApiException as exc:  # the stream says why in its reason (the handshake's answer)
            raise RuntimeError_(f"the shell could not start: {exc.reason}"[:480]) from exc
        # the client also copies all output into a buffer for ``read_all``, which ``stream`` gives
        # no way to turn off: a session may run for hours, so nothing it printed is kept there
        client._all = _IgnoredIO()
        return KubernetesTerminal(client, cols=cols, rows=rows)

    def usage(self, lease_id: int, *, start: int, end: int) -> Usage:
        pods = self._pods(lease_id)
        run_seconds, restarts = 0, 0
        for pod in pods:
            for container in (pod.status.container_statuses or []) if pod.status else []:
                restarts += container.restart_count or 0
                state = container.state
                if state is None:
                    continue
                if state.running is not None:
                    started, finished = _time(state.running.started_at), None
                elif state.terminated is not None:
                    started, finished = _time(state.terminated.started_at), _time(state.terminated.finished_at)
                    if finished is None:
                        continue
                else:
                    continue
                run_seconds = max(run_seconds, run_overlap(started=started, finished=finished, start=start, end=end))
        return Usage(run_seconds=run_seconds, restarts=restarts)

    def _scale(self, lease_id: int, replicas: int) -> None:
        try:
            self._call(
                self.apps.patch_namespaced_deployment,
                WORKLOAD,
                self.namespace(lease_id),
                {"spec": {"replicas": replicas}},
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise RuntimeUnavailable(f"Kubernetes: {exc.reason} ({exc.status})") from exc

    def suspend(self, lease_id: int) -> None:
        """Scale the workload to zero: the namespace, its volumes and the Service stay for a resume."""
        self._scale(lease_id, 0)

    def resume(self, lease_id: int) -> Deployment:
        self._scale(lease_id, 1)
        return self.status(lease_id)

    def teardown(self, lease_id: int) -> None:
        try:
            self._call(self.core.delete_namespace, self.namespace(lease_id), propagation_policy="Foreground")
        except ApiException as exc:
            if exc.status != 404:
                raise RuntimeUnavailable(f"Kubernetes: {exc.reason} ({exc.status})") from exc

    def owned(self) -> list[int]:
        namespaces = self._call(self.core.list_namespace, label_selector=_selector()).items
        return sorted(
            int(ns.metadata.labels[LABEL_LEASE])
            for ns in namespaces
            if _owned_labels(ns.metadata.labels)
            and ns.metadata.name == self.namespace(int(ns.metadata.labels[LABEL_LEASE]))
        )

    # --- inventory ----------------------------------------------------------------------------
    def inventory_report(self) -> dict:
        """GPUs by product on schedulable nodes (allocatable minus what running pods request), and
        the CPU, memory and ephemeral storage of those nodes."""
        nodes = [n for n in self._call(self.core.list_node).items if not (n.spec and n.spec.unschedulable)]
        used: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for pod in self._call(self.core.list_pod_for_all_namespaces).items:
            phase = pod.status.phase if pod.status else None
            node = pod.spec.node_name if pod.spec else None
            if not node or phase in ("Succeeded", "Failed"):
                continue
            for container in pod.spec.containers or []:
                requests = (container.resources.requests or {}) if container.resources else {}
                limits = (container.resources.limits or {}) if container.resources else {}
                for name in (GPU_RESOURCE, "cpu", "memory", "ephemeral-storage"):
                    value = requests.get(name)
                    if value is None and name == GPU_RESOURCE:  # extended resources may be set as limits only
                        value = limits.get(name)
                    used[node][name] += _quantity(value)
        lines: dict[tuple[str, int], dict] = {}
        report_nodes = []
        gib = Decimal(1024**3)
        for node in nodes:
            name = node.metadata.name
            labels = node.metadata.labels or {}
            allocatable = (node.status.allocatable or {}) if node.status else {}
            gpus = int(_quantity(allocatable.get(GPU_RESOURCE)))
            product = labels.get(PRODUCT_LABEL)
            node_lines = []
            if gpus and product:
                memory = labels.get(MEMORY_LABEL, "0")
                memory_mib = int(memory) if str(memory).isdigit() else 0
                node_line = {"model": product.replace("-", " "), "total": gpus}
                node_line["free"] = max(0, gpus - int(used[name][GPU_RESOURCE]))
                if memory_mib:
                    node_line["memory_mib"] = memory_mib
                node_lines.append(node_line)
                line = lines.setdefault((product, memory_mib), {**node_line, "total": 0, "free": 0})
                line["total"] += node_line["total"]
                line["free"] += node_line["free"]
            entry: dict = {"name": name, "gpus": node_lines}
            for key, resource, unit in (
                ("cpu_cores", "cpu", Decimal(1)),
                ("memory_gib", "memory", gib),
                ("storage_gib", "ephemeral-storage", gib),
            ):
                total = _quantity(allocatable.get(resource))
                free = max(Decimal(0), total - used[name][resource])
                entry[key] = {"total": int(total / unit), "free": int(free / unit)}
            report_nodes.append(entry)
        return {
            "gpus": list(lines.values()),
            **{
                key: {part: sum(n[key][part] for n in report_nodes) for part in ("total", "free")}
                for key in ("cpu_cores", "memory_gib", "storage_gib")
            },
            "nodes": report_nodes,
        }


class KubernetesTerminal(Terminal):
    """An exec session over the API server's WebSocket (the ``channel.k8s.io`` protocol): stdin,
    stdout and stderr, the exit status, and resize each on a channel of their own."""

    def __init__(self, client: WSClient, *, cols: int, rows: int) -> None:
        self.client = client
        self._write_lock = threading.Lock()  # the client's socket sends one frame at a time
        self.resize(cols, rows)

    def read(self, timeout: float) -> bytes | None:
        try:
            self.client.update(timeout=timeout)
        except Exception:  # noqa: BLE001 - the socket broke: the session is over
            return None
        out = b"".join(self.client.read_channel(channel, timeout=0) for channel in (STDOUT_CHANNEL, STDERR_CHANNEL))
        if not out and not self.client.is_open():
            return None
        return out

    def _send(self, channel: int, data: bytes | str) -> None:
        with self._write_lock, suppress(Exception):  # the session may have ended meanwhile
            self.client.write_channel(channel, data)

    def write(self, data: bytes) -> None:
        self._send(STDIN_CHANNEL, data)

    def resize(self, cols: int, rows: int) -> None:
        self._send(RESIZE_CHANNEL, json.dumps({"Width": cols, "Height": rows}))

    def close(self) -> None:
        with suppress(Exception):
            self.client.close()

    def exit_code(self) -> int | None:
        """From the status the API server sends on the error channel as the process ends."""
        try:
            status = json.loads(self.client.read_channel(ERROR_CHANNEL) or b"null")
        except ValueError:
            return None
        if not isinstance(status, dict):
            return None
        if status.get("status") == "Success":
            return 0
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                with suppress(TypeError, ValueError):
                    return int(cause.get("message"))
        return None
