"""The Kubernetes runtime with the official client, over HTTP, against kmock's emulated API."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agent.runtimes.base import (
    LABEL_LEASE,
    LABEL_MANAGED_BY,
    LeaseManifest,
    RuntimeError_,
    RuntimeUnavailable,
)
from agent.runtimes.kubernetes_runtime import KubernetesRuntime
from tests.agent.kube import Cluster, running_status, waiting_status

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED_KUBERNETES = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]
# (API group, resource, verb) of every call the runtime makes: what its RBAC must grant
RUNTIME_CALLS = {
    ("", "nodes", "list"),  # inventory
    ("", "pods", "list"),  # inventory (all namespaces), a lease's pods
    ("", "pods/log", "get"),
    ("", "pods/exec", "get"),  # the shell: the WebSocket upgrade
    ("", "pods/exec", "create"),  # the shell, on servers that authorize the upgrade as create
    ("", "namespaces", "list"),  # what the agent owns
    ("", "namespaces", "create"),
    ("", "namespaces", "delete"),  # teardown, with everything in it
    ("", "services", "get"),
    ("", "services", "create"),
    ("", "resourcequotas", "create"),
    ("", "secrets", "create"),  # a lease's secret environment variables
    ("", "persistentvolumeclaims", "create"),  # a lease's volumes
    ("networking.k8s.io", "networkpolicies", "create"),
    ("apps", "deployments", "get"),
    ("apps", "deployments", "create"),
    ("apps", "deployments", "patch"),  # scaled to zero and back: suspend and resume
}
H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster() as running:
        running.add_node("gpu-1", gpus=8, product=H100, memory_mib=81559)
        running.add_node("gpu-2", gpus=4, product="NVIDIA-A100-SXM4-80GB", memory_mib=81920)
        running.add_node("cpu-1")
        yield running


@pytest.fixture
def runtime(cluster: Cluster) -> KubernetesRuntime:
    return KubernetesRuntime(cluster.api_client(), node_address="203.0.113.9")


def manifest(lease_id: int = 41, **overrides) -> LeaseManifest:  # type: ignore[no-untyped-def]
    fields = {
        "lease_id": lease_id,
        "image": "ghcr.io/acme/trainer:1.4",
        "command": ["python"],
        "args": ["train.py"],
        "env": {"MODE": "train", "HF_TOKEN": "hf_secret"},
        "secret_env": frozenset({"HF_TOKEN"}),
        "ports": [{"port": 8888, "protocol": "tcp"}, {"port": 9000, "protocol": "udp"}],
        "gpu_model": "h100-sxm-80gb",
        "gpu_count": 2,
        "cpu_cores": 16,
        "memory_gib": 128,
        "storage_gib": 200,
    }
    return LeaseManifest(**{**fields, **overrides})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_every_manifest_is_valid_kubernetes(runtime: KubernetesRuntime, version: str) -> None:
    bare = manifest(gpu_count=0, ports=[], command=[], args=[], env={}, secret_env=frozenset())
    keyed = manifest(shm_gib=16, ssh_keys=["ssh-ed25519 AAAAC3Nza laptop"])
    volumed = manifest(volumes=[{"name": "data", "mount": "/data", "size_gib": 20, "storage_class": "beta3"}])
    for lease in (manifest(), bare, keyed, volumed):
        for obj in runtime.manifests(lease, products=[H100]):
            kubernetes_validate.validate(obj, version, strict=True)  # raises on any unknown or wrong field
    objects = runtime.manifests(keyed)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        {"name": "ssh-keys", "secret": {"secretName": "ssh-keys", "defaultMode": 0o600}},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "ssh-keys", "mountPath": "/root/.ssh/authorized_keys", "subPath": "authorized_keys", "readOnly": True},
    ]
    [keys] = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "ssh-keys"]
    assert keys["stringData"] == {"authorized_keys": "ssh-ed25519 AAAAC3Nza laptop\n"}
    assert [o["kind"] for o in objects].index("Secret") < [o["kind"] for o in objects].index("Deployment")
    load_balanced = KubernetesRuntime(runtime.api, service_type="LoadBalancer")
    for obj in load_balanced.manifests(manifest(), products=[H100]):
        kubernetes_validate.validate(obj, SUPPORTED_KUBERNETES[-1], strict=True)


def test_a_lease_is_a_namespace_with_everything_it_needs(cluster: Cluster, runtime: KubernetesRuntime) -> None:
    deployed = runtime.deploy(manifest())
    assert deployed.state == "starting"  # nothing runs until the scheduler and the kubelet say so
    namespace = "gpumarket-lease-41"
    everything = [
        *cluster.objects("clusternamespaces"),
        *(
            obj
            for plural in ("deployments", "services", "networkpolicies", "resourcequotas", "secrets")
            for obj in cluster.objects(plural, namespace)
        ),
    ]
    assert len(everything) == 6
    for obj in everything:
        assert obj["metadata"]["labels"][LABEL_MANAGED_BY] == "gpumarket-agent"
        assert obj["metadata"]["labels"][LABEL_LEASE] == "41"

    [deployment] = cluster.objects("deployments", namespace)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    want = {"cpu": "16", "memory": "128Gi", "ephemeral-storage": "200Gi", "nvidia.com/gpu": "2"}
    assert container["resources"] == {"requests": want, "limits": want}
    assert pod["runtimeClassName"] == "nvidia"
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [H100]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod["hostNetwork"] and "volumes" not in pod and pod["automountServiceAccountToken"] is False
    # a secret variable's value is in the lease's Secret only, never in the Deployment's spec
    assert {"name": "MODE", "value": "train"} in container["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "workload-env", "key": "HF_TOKEN"}}} in (
        container["env"]
    )
    assert "hf_secret" not in str(deployment)
    [secret] = cluster.objects("secrets", namespace)
    assert secret["metadata"]["name"] == "workload-env" and secret["type"] == "Opaque" and secret["immutable"]
    assert secret["stringData"] == {"HF_TOKEN": "hf_secret"}  # the one marked secret, and no other

    [service] = cluster.objects("services", namespace)
    assert service["spec"]["type"] == "NodePort"
    assert [p["port"] for p in service["spec"]["ports"]] == [8888, 9000]
    [policy] = cluster.objects("networkpolicies", namespace)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "10.0.0.0/8" in policy["spec"]["egress"][0]["to"][0]["ipBlock"]["except"]
    [quota] = cluster.objects("resourcequotas", namespace)
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"
    assert quota["spec"]["hard"]["services.nodeports"] == "2"

    # deploying again (a retry, or a restarted agent) creates nothing new
    runtime.deploy(manifest())
    assert len(cluster.objects("deployments", namespace)) == 1


def test_running_endpoints_usage_and_teardown(cluster: Cluster, runtime: KubernetesRuntime) -> None:
    runtime.deploy(manifest())
    namespace, labels = "gpumarket-lease-41", {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: "41"}
    started = datetime.now(UTC) - timedelta(seconds=90)
    cluster.set_pod(namespace, "workload-abc", labels=labels, gpus=2, **running_status(iso(started), restarts=1))

    status = runtime.status(41)
    assert status.state == "running" and status.restarts == 1
    assert status.endpoints == ["203.0.113.9:30000", "203.0.113.9:30001"]  # the node ports the API allocated
    now = int(time.time())
    used = runtime.usage(41, start=now - 60, end=now)
    assert used.run_seconds == 60 and used.restarts == 1
    assert runtime.usage(41, start=now - 600, end=now - 300).run_seconds == 0  # before it started
    assert runtime.owned() == [41]

    runtime.teardown(41)
    assert runtime.status(41).state == "missing"
    assert runtime.owned() == []
    assert cluster.objects("deployments", namespace) == [] and cluster.objects("pods", namespace) == []
    runtime.teardown(41)  # tearing down twice is fine


def test_an_image_that_cannot_be_pulled_is_a_failure_the_client_can_read(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    runtime.deploy(manifest(42))
    labels = {LABEL_MANAGED_BY: "gpumarket-agent", LABEL_LEASE: "42"}
    cluster.set_pod(
        "gpumarket-lease-42", "w", labels=labels, **waiting_status("ImagePullBackOff", 'pull "ghcr.io/nope" failed')
    )
    status = runtime.status(42)
    assert status.state == "failed" and status.error.startswith("ImagePullBackOff: pull")


def test_gpus_the_cluster_does_not_have_are_refused_before_anything_is_created(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    with pytest.raises(RuntimeError_, match="no node of this cluster has a b200-sxm-180gb"):
        runtime.deploy(manifest(43, gpu_model="b200-sxm-180gb"))
    assert cluster.objects("clusternamespaces") == []


def test_a_fresh_runtime_finds_what_it_owns_and_ignores_the_rest(cluster: Cluster, runtime: KubernetesRuntime) -> None:
    runtime.deploy(manifest(44, gpu_count=0, ports=[]))
    runtime.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "someone-else"}})
    assert KubernetesRuntime(cluster.api_client()).owned() == [44]


def test_inventory_is_allocatable_gpus_minus_running_pods(cluster: Cluster, runtime: KubernetesRuntime) -> None:
    labels = {"app": "other"}
    cluster.set_pod("team-a", "busy", labels=labels, node="gpu-1", gpus=3, **running_status(iso(datetime.now(UTC))))
    cluster.set_pod("team-a", "done", labels=labels, node="gpu-1", gpus=4, phase="Succeeded")  # holds nothing
    report = runtime.inventory_report()
    by_model = {line["model"]: line for line in report["gpus"]}
    assert by_model["NVIDIA H100 80GB HBM3"] == {
        "model": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "total": 8,
        "free": 5,
    }
    assert by_model["NVIDIA A100 SXM4 80GB"]["free"] == 4
    assert report["cpu_cores"] == {"total": 192, "free": 192}
    assert report["memory_gib"]["total"] == 3 * 512
    # by node: what each holds and has free, adding up to the totals
    nodes = {node["name"]: node for node in report["nodes"]}
    assert nodes["gpu-1"]["gpus"] == [{"model": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "total": 8, "free": 5}]
    assert nodes["gpu-1"]["cpu_cores"] == {"total": 64, "free": 64}
    assert sum(node["memory_gib"]["total"] for node in report["nodes"]) == report["memory_gib"]["total"]
    assert [line["model"] for node in report["nodes"] for line in node["gpus"]].count("NVIDIA A100 SXM4 80GB") == 1


def test_an_unreachable_cluster_is_unavailable_not_a_failed_lease() -> None:
    from kubernetes import client as k8s

    runtime = KubernetesRuntime(k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9")))
    runtime.api.configuration.retries = 0
    with pytest.raises(RuntimeUnavailable, match="unreachable"):
        runtime.owned()
    with pytest.raises(RuntimeUnavailable):
        runtime.status(1)


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_the_documented_rbac_is_valid_and_grants_what_the_runtime_does(version: str) -> None:
    documents = list(yaml.safe_load_all((ROOT / "docs" / "agent-kubernetes.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    [role] = [d for d in documents if d["kind"] == "ClusterRole"]
    granted = {
        (group, res, verb)
        for r in role["rules"]
        for group in r["apiGroups"]
        for res in r["resources"]
        for verb in r["verbs"]
    }
    assert granted >= RUNTIME_CALLS, RUNTIME_CALLS - granted


# what NVIDIA's DCGM exporter serves at /metrics (its format, the GPU Operator's pod mapping on):
# lease 41 holds two GPUs, lease 7 one, and one is free
DCGM_EXPORTER = (Path(__file__).parent / "dcgm-exporter.txt").read_text()


@pytest.fixture
def dcgm_exporter() -> Iterator[str]:
    """NVIDIA's DCGM exporter as the agent reads it: its /metrics text (the GPU Operator's format,
    with the pod mapping on) over HTTP on loopback."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = DCGM_EXPORTER.encode() if self.path == "/metrics" else b"not found"
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_leases_gpu_readings_come_from_the_dcgm_exporter(cluster: Cluster, dcgm_exporter: str) -> None:
    runtime = KubernetesRuntime(cluster.api_client(), gpu_metrics_url=f"{dcgm_exporter}/metrics")
    readings = runtime.gpu_metrics(41)
    assert readings is not None
    assert (readings.utilization_pct, readings.memory_mib) == (75.5, 41984)  # its two GPUs, not lease 7's
    assert runtime.gpu_metrics(99) is None  # no GPU of that lease in the series
    # none configured, or the exporter not answering or not an exporter: no reading, no failure
    assert KubernetesRuntime(cluster.api_client()).gpu_metrics(41) is None
    assert KubernetesRuntime(cluster.api_client(), gpu_metrics_url=f"{dcgm_exporter}/nope").gpu_metrics(41) is None
    assert KubernetesRuntime(cluster.api_client(), gpu_metrics_url="http://127.0.0.1:9/metrics").gpu_metrics(41) is None


def test_the_gpu_metrics_url_must_be_a_url() -> None:
    from agent.config import ConfigError, validate

    base = {"marketplace_url": "http://127.0.0.1:8000", "token": "gpm_x", "runtime": "kubernetes"}
    assert validate({**base, "kubernetes": {"gpu_metrics_url": "http://dcgm:9400/metrics"}}).kubernetes.gpu_metrics_url
    with pytest.raises(ConfigError, match="gpu_metrics_url"):
        validate({**base, "kubernetes": {"gpu_metrics_url": "dcgm:9400"}})


def test_a_volume_is_a_claim_in_the_leases_namespace_of_the_class_the_provider_maps(  # type: ignore[no-untyped-def]
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    mapped = KubernetesRuntime(runtime.api, storage_classes={"beta3": "fast-nvme"})
    volumes = [
        {"name": "data", "mount": "/data", "size_gib": 20, "storage_class": "beta3"},
        {"name": "cache", "mount": "/cache", "size_gib": 5, "storage_class": "beta1"},
    ]
    objects = mapped.manifests(manifest(volumes=volumes))
    claims = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    assert claims["vol-data"]["storageClassName"] == "fast-nvme"  # mapped
    assert "storageClassName" not in claims["vol-cache"]  # not mapped: the cluster's default
    assert claims["vol-data"]["resources"] == {"requests": {"storage": "20Gi"}}
    [quota] = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert (
        quota["spec"]["hard"]["persistentvolumeclaims"] == "2" and quota["spec"]["hard"]["requests.storage"] == "25Gi"
    )
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "vol-data", "mountPath": "/data"}, {"name": "vol-cache", "mountPath": "/cache"}]
    kinds = [o["kind"] for o in objects]
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    # deployed: the claims are in the lease's namespace, and go with it
    mapped.deploy(manifest(volumes=volumes))
    names = {c["metadata"]["name"] for c in cluster.objects("persistentvolumeclaims", "gpumarket-lease-41")}
    assert names == {"vol-data", "vol-cache"}
