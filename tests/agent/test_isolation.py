"""Tenant isolation, asserted on every manifest the agent generates: generated leases (any image,
command, environment, ports, GPU and host sizes, hostile values included) through the Kubernetes
runtime's objects and the Docker runtime's container options. What these options do on a real
engine and an emulated API server: test_docker_runtime.py, test_kubernetes_runtime.py."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s

from agent.config import ConfigError, validate
from agent.runtimes.base import LABEL_LEASE, LABEL_MANAGED_BY, LeaseManifest
from agent.runtimes.docker_runtime import DockerRuntime
from agent.runtimes.kubernetes_runtime import PRIVATE_RANGES, KubernetesRuntime

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# other tenants and the nodes (RFC 1918), and the cloud metadata service (link-local)
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}

text = st.text(alphabet=string.printable, max_size=40)
leases = st.builds(
    LeaseManifest,
    lease_id=st.integers(1, 2**31),
    image=st.sampled_from(["ghcr.io/acme/trainer:1.4", "pytorch/pytorch:2.3", "busybox"]),
    command=st.lists(text, max_size=4),
    args=st.lists(text, max_size=4),
    # names a tenant might use to reach the provider's own services, and any others
    env=st.dictionaries(
        st.sampled_from(["KUBERNETES_SERVICE_HOST", "DOCKER_HOST", "HOSTNAME", "PATH", "HF_TOKEN", "X"]), text
    ),
    ports=st.lists(
        st.fixed_dictionaries({"port": st.integers(1, 65535), "protocol": st.sampled_from(["tcp", "udp"])}),
        max_size=6,
        unique_by=lambda p: (p["port"], p["protocol"]),
    ),
    gpu_model=st.just("h100-sxm-80gb"),
    gpu_count=st.integers(0, 8),
    cpu_cores=st.integers(1, 256),
    memory_gib=st.integers(1, 2048),
    storage_gib=st.integers(1, 50_000),
)


def walk(value: object):  # type: ignore[no-untyped-def]
    """Every (key, value) pair anywhere in a nested object."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, inner
            yield from walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from walk(inner)


@SETTINGS
@given(leases, st.sampled_from(["NodePort", "LoadBalancer"]))
def test_every_kubernetes_manifest_isolates_its_tenant(lease: LeaseManifest, service_type: str) -> None:
    runtime = KubernetesRuntime(k8s.ApiClient(), service_type=service_type)
    objects = runtime.manifests(lease, products=["NVIDIA-H100-80GB-HBM3"])
    namespace = runtime.namespace(lease.lease_id)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["Namespace", "ResourceQuota", "NetworkPolicy", "Deployment"] + ["Service"] * bool(lease.ports)
    )
    for obj in objects:  # each object is the lease's, in the lease's own namespace
        labels = obj["metadata"]["labels"]
        assert labels[LABEL_MANAGED_BY] == "gpumarket-agent" and labels[LABEL_LEASE] == str(lease.lease_id)
        assert obj["metadata"].get("namespace", namespace) == namespace
        for key, value in walk(obj):  # nowhere a door to the node
            assert key not in ("hostPath", "hostPort", "hostAliases", "nodeName"), key
            assert not (key in ("privileged", "hostNetwork", "hostPID", "hostIPC") and value is not False), key
            assert not (key == "add" and value), "capabilities added"
    by_kind = {o["kind"]: o for o in objects}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["hostNetwork"] is False and pod["hostPID"] is False and pod["hostIPC"] is False
    assert "volumes" not in pod and "serviceAccountName" not in pod
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["limits"] == container["resources"]["requests"]  # no bursting past the lease
        assert "volumeMounts" not in container
    assert by_kind["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] in (
        "baseline",
        "restricted",
    )
    policy = by_kind["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
    for rule in policy["ingress"] + policy["egress"]:  # no other tenant, no node, no cloud metadata
        for peer in rule.get("from", []) + rule.get("to", []):
            if "ipBlock" in peer:
                assert PRIVATE <= set(peer["ipBlock"]["except"]) == set(PRIVATE_RANGES)
            elif "namespaceSelector" in peer:  # DNS only
                assert rule["ports"] and {p["port"] for p in rule["ports"]} == {53}
            else:
                assert peer == {"podSelector": {}}  # its own namespace
    quota = by_kind["ResourceQuota"]["spec"]["hard"]
    assert quota["requests.cpu"] == str(lease.cpu_cores) and quota["limits.memory"] == f"{lease.memory_gib}Gi"
    assert quota.get("requests.nvidia.com/gpu", "0") == str(lease.gpu_count) and quota["pods"] == "2"
    if "Service" in by_kind:
        assert by_kind["Service"]["spec"]["externalTrafficPolicy"] == "Local"


@SETTINGS
@given(leases, st.sampled_from(["bridge", "none", "gpu-tenants"]), st.integers(1, 128))
def test_every_docker_container_isolates_its_tenant(lease: LeaseManifest, network: str, host_cpus: int) -> None:
    runtime = DockerRuntime.__new__(DockerRuntime)  # no engine needed to build the options
    runtime.host_address, runtime.network, runtime.gpus, runtime.pull_images = "127.0.0.1", network, True, False
    runtime.name_prefix = "gpumarket-lease-"
    options = runtime.container_options(lease, host_cpus=host_cpus)
    assert options["network_mode"] == network and options["privileged"] is False
    assert options["cap_drop"] == ["ALL"] and "cap_add" not in options
    assert options["security_opt"] == ["no-new-privileges"]
    for key in ("volumes", "mounts", "pid_mode", "ipc_mode", "userns_mode", "devices", "extra_hosts", "sysctls"):
        assert key not in options, key
    assert 0 < options["nano_cpus"] <= host_cpus * 10**9 and options["mem_limit"] == f"{lease.memory_gib}g"
    assert options["labels"][LABEL_LEASE] == str(lease.lease_id)
    assert options["restart_policy"]["MaximumRetryCount"] <= 3
    for binding in (options["ports"] or {}).values():  # published on the provider's chosen address only
        assert binding == ("127.0.0.1", None)
    assert options["ports"] is None or network != "none"


@pytest.mark.parametrize("network", ["host", "container:other", "default", "", "-x", "a b"])
def test_the_agent_refuses_a_network_that_is_not_the_tenants_own(network: str) -> None:
    with pytest.raises(ConfigError, match=r"docker\.network"):
        validate({"marketplace_url": "https://market.example.com", "token": "t", "docker": {"network": network}})
