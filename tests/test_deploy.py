"""The deployment artifacts: both Helm charts rendered and linted by Helm's own library (offline),
for every example values file, every object validated against the Kubernetes schema; the agent's
rendered configuration accepted by the agent; the Dockerfiles parsed, their sources present, and
the agent image's files enough to run the agent."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from agent.config import validate as agent_config
from tests.agent.test_kubernetes_runtime import SUPPORTED_KUBERNETES

ROOT = Path(__file__).resolve().parents[1]
MARKET = ROOT / "helm" / "gpumarket"
AGENT = ROOT / "helm" / "gpumarket-agent"
INLINE = {"secrets": {"secretKey": "k" * 50, "databaseUrl": "postgres://u@db/gm", "redisUrl": "redis://r:6379/0"}}
AGENT_INLINE = {"credentials": {"token": "gpm_x", "signingKey": "ab" * 32}}


def examples(chart: Path) -> list[tuple[str, dict]]:
    return [(path.name, yaml.safe_load(path.read_text())) for path in sorted((chart / "examples").glob("*.yaml"))]


def render(chart: Path, values: dict) -> list[dict]:
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(values)
        manifests = loaded.render(values, name="gm", namespace="market", is_install=True)
    return [
        document
        for name, text in sorted(manifests.items())
        if not name.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]


def dockerfile(name: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((ROOT / name).read_bytes()))


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d["kind"] == kind]


def pod_specs(documents: list[dict]) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in documents if d["kind"] in ("Deployment", "Job")]


CASES = [(MARKET, "defaults", INLINE), *((MARKET, n, v) for n, v in examples(MARKET))]
CASES += [(AGENT, "defaults", AGENT_INLINE), *((AGENT, n, v) for n, v in examples(AGENT))]


@pytest.mark.parametrize(("chart", "name", "values"), CASES, ids=[f"{c.name}-{n}" for c, n, _ in CASES])
def test_each_chart_lints_strictly_and_renders_valid_kubernetes_objects(chart: Path, name: str, values: dict) -> None:
    report = helm.lint(chart, values, strict=True, kube_version=f"v{SUPPORTED_KUBERNETES[0]}")
    assert not report["errors"], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report
    documents = render(chart, values)
    assert documents
    for version in (SUPPORTED_KUBERNETES[0], SUPPORTED_KUBERNETES[-1]):
        for document in documents:
            kubernetes_validate.validate(document, version, strict=True)
    for spec in pod_specs(documents):  # restricted: non-root, no privilege, default seccomp, sized
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        assert all("hostPath" not in volume for volume in spec.get("volumes", []))


def test_the_marketplace_chart_has_every_process_probes_autoscaling_and_one_beat() -> None:
    documents = render(MARKET, INLINE)
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(documents, "Deployment")}
    assert set(deployments) == {"web", "websocket", "worker", "beat"}
    beat = deployments["beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    assert beat["template"]["spec"]["containers"][0]["command"] == ["celery", "-A", "config", "beat"]
    for component in ("web", "websocket"):
        container = deployments[component]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"name": "Host", "value": "gpumarket.example.com"} in container["readinessProbe"]["httpGet"][
            "httpHeaders"
        ]
    [job] = by_kind(documents, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "manage.py",
        "migrate",
        "--no-input",
    ]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for kind in ("ConfigMap", "Secret"):  # they exist before the migrations hook reads them
        [document] = by_kind(documents, kind)
        assert int(document["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(documents, "HorizontalPodAutoscaler")}
    assert autoscaled == {"gm-gpumarket-web", "gm-gpumarket-worker"}
    assert "replicas" not in deployments["web"]["spec"]  # the autoscaler owns it
    assert {p["metadata"]["name"] for p in by_kind(documents, "PodDisruptionBudget")} == {
        "gm-gpumarket-web",
        "gm-gpumarket-websocket",
        "gm-gpumarket-worker",
    }
    [ingress] = by_kind(documents, "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/ws/": "gm-gpumarket-websocket", "/": "gm-gpumarket-web"}
    [config] = by_kind(documents, "ConfigMap")
    assert config["data"]["DEBUG"] == "false" and config["data"]["ALLOWED_HOSTS"] == "gpumarket.example.com"
    assert config["data"]["LOG_FORMAT"] == "json" and config["data"]["HTTPS"] == "false"  # no TLS configured
    production = dict(examples(MARKET))["production.yaml"]
    assert by_kind(render(MARKET, production), "ConfigMap")[0]["data"]["HTTPS"] == "true"  # the Ingress has TLS
    web = deployments["web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["command"] == ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"]
    assert {"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp/prometheus"} in web["env"]


def test_the_marketplace_chart_refuses_missing_secrets_and_bad_values() -> None:
    with pytest.raises(helm.HelmError, match=r"secrets\.secretKey is required"):
        render(MARKET, {})
    production = dict(examples(MARKET))["production.yaml"]
    assert not by_kind(render(MARKET, production), "Secret")  # the operator's own Secret is used
    with helm.Chart.load(MARKET) as chart:
        for bad in (
            {**INLINE, "web": {"workers": 0}},
            {**INLINE, "replicas": 3},  # not a value of this chart: a typo is an error, not ignored
            {**INLINE, "env": {"DEBUG": "true"}},  # never in production
            {**INLINE, "host": "https://market.example.com"},
        ):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(bad)


def test_the_agent_chart_grants_only_what_the_runtime_calls_and_configures_a_valid_agent() -> None:
    documents = render(AGENT, AGENT_INLINE)
    [role] = by_kind(documents, "ClusterRole")
    granted = {
        (g, res, verb) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"] for verb in r["verbs"]
    }
    from tests.agent.test_kubernetes_runtime import RUNTIME_CALLS

    assert granted == RUNTIME_CALLS  # no more, no less
    [deployment] = by_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    [binding] = by_kind(documents, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gm-gpumarket-agent", "namespace": "market"}]
    [config] = by_kind(documents, "ConfigMap")
    settings = yaml.safe_load(config["data"]["agent.yaml"])
    parsed = agent_config({**settings, "token": "from the Secret"})
    assert parsed.runtime == "kubernetes" and parsed.signing_key_file == "/var/run/gpumarket-agent/signing-key"
    cluster = yaml.safe_load(
        by_kind(render(AGENT, dict(examples(AGENT))["cluster.yaml"]), "ConfigMap")[0]["data"]["agent.yaml"]
    )
    assert agent_config({**cluster, "token": "t"}).pricing.per_gpu_hour == {
        "h100-sxm-80gb": 2400000,
        "a100-sxm-80gb": 1300000,
    }
    assert by_kind(render(AGENT, dict(examples(AGENT))["cluster.yaml"]), "RuntimeClass")[0]["handler"] == "nvidia"
    with pytest.raises(helm.HelmError, match=r"credentials\.token is required"):
        render(AGENT, {})


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.agent"])
def test_each_dockerfile_parses_its_sources_exist_and_it_runs_as_nobody_special(name: str) -> None:
    parser = dockerfile(name)
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(stages) == 2  # build, then a clean runtime stage
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", parser.baseimage)  # a pinned patch release
    for instruction in parser.structure:
        if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
            continue
        *sources, _destination = instruction["value"].split()
        for source in sources:
            assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users == ["10001:10001"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored


def test_the_agent_image_files_alone_run_the_agent(tmp_path: Path) -> None:
    """What Dockerfile.agent copies is enough: the agent imports nothing of the project but itself and the
    protocol."""
    parser = dockerfile("Dockerfile.agent")
    for instruction in parser.structure:
        if (
            instruction["instruction"] == "COPY"
            and "--from=" not in instruction["value"]
            and "requirements" not in instruction["value"]
        ):
            *sources, destination = instruction["value"].split()
            for source in sources:
                target = (
                    tmp_path
                    / destination
                    / (Path(source).name if destination.endswith("/") and not source.endswith("/") else "")
                )
                if source.endswith("/"):
                    subprocess.run(["cp", "-r", str(ROOT / source), str(tmp_path / destination)], check=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes((ROOT / source).read_bytes())
    probe = (
        "import sys, agent.cli, agent.runner, agent.runtimes.kubernetes_runtime, "
        "agent.runtimes.docker_runtime, agent.proving, agent.attesting; "
        "import agent, protocol; "
        "assert agent.__file__.startswith(sys.argv[1]) and protocol.__file__.startswith(sys.argv[1]); "
        "ours = {'django', 'config', 'core', 'leases', 'trust', 'providers', 'marketplace', 'payments', 'chain'}; "
        "found = {m.split('.')[0] for m in sys.modules} & ours; assert not found, sorted(found)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "run" in help_text.stdout


def test_the_lock_the_agent_image_installs_is_within_the_marketplaces() -> None:
    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / "requirements" / name).read_text().splitlines()
        return dict(line.split(" ", 1)[0].split("==") for line in lines if "==" in line and not line.startswith(" "))

    agent, base = pins("agent.lock"), pins("base.lock")
    assert agent and all(base.get(package) == version for package, version in agent.items()), json.dumps(
        {p: (v, base.get(p)) for p, v in agent.items() if base.get(p) != v}
    )
