"""deploy/k8s/, checked offline: every object against the Kubernetes API's own schemas
(kubernetes-validate; KEDA's two kinds against the small schemas below), and against what the
store needs: restricted pods, one scheduler, no Secret to overwrite real keys, setting names
that exist, commands and probes that exist, the metrics kept off the Ingress."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app
from evidence.config import Settings, get_settings
from evidence.queue import QUEUES, ROUTES, parse_queues
from tests.test_deploy import _check_cli

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.33.0"  # the oldest Kubernetes the manifests are checked against
NAMESPACE = "evidence"
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

# KEDA's CRDs are not in Kubernetes' schemas: the fields these files use, as KEDA defines them.
_KEDA = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer"},
                    "cooldownPeriod": {"type": "integer"},
                    "triggers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}


def _docs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    assert len(found) >= 10, "the manifests went missing"
    return found


def _of(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _docs() if d["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _of(kind) if d["metadata"]["name"] == name]
    return doc


def _pods() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for _, d in _docs()
        if d["kind"] in POD_KINDS
    ]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def test_every_object_is_valid_for_kubernetes() -> None:
    for name, doc in _docs():
        where = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc["kind"] in _KEDA:
            jsonschema.validate(doc, _KEDA[doc["kind"]])
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_an_invalid_manifest_is_caught() -> None:
    """The validator above really refuses what Kubernetes would."""
    deployment = _named("Deployment", "evidence-api")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_namespace_enforces_restricted_and_everything_is_in_it() -> None:
    (namespace,) = _of("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, doc in _docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{name}: {doc['kind']}"


def _not_restricted(where: str, pod: dict[str, Any]) -> list[str]:
    """What in a pod spec breaks the restricted Pod Security Standard or the store's own
    rules (requests and limits, sized emptyDirs); empty when nothing does."""
    bad = []
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or security.get("runAsUser", 1) == 0:
        bad.append(f"{where}: the pod may run as root")
    if security.get("seccompProfile") != {"type": "RuntimeDefault"}:
        bad.append(f"{where}: no RuntimeDefault seccomp profile")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        bad.append(f"{where}: shares a host namespace")
    if pod.get("automountServiceAccountToken") is not False:
        bad.append(f"{where}: mounts a service account token")
    for c in _containers(pod):
        at = f"{where}: {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{at}: privilege escalation allowed")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{at}: writable root filesystem")
        if sc.get("capabilities") != {"drop": ["ALL"]}:
            bad.append(f"{at}: capabilities not all dropped")
        if (
            sc.get("runAsNonRoot", True) is not True
            or sc.get("privileged")
            or (sc.get("runAsUser", 1) == 0)
        ):
            bad.append(f"{at}: may run as root or privileged")
        if sc.get("seccompProfile", {"type": "RuntimeDefault"}) != {"type": "RuntimeDefault"}:
            bad.append(f"{at}: seccomp profile overridden")
        for bound in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(c.get("resources", {}).get(bound, {})):
                bad.append(f"{at}: no CPU and memory {bound}")
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            bad.append(f"{where}: hostPath volume {volume['name']}")
        if "emptyDir" in volume and not volume["emptyDir"].get("sizeLimit"):
            bad.append(f"{where}: emptyDir {volume['name']} without a sizeLimit")
    return bad


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    pods = _pods()
    assert {w for w, _ in pods} >= {
        "Deployment/evidence-api",
        "Deployment/evidence-worker-ingest",
        "Deployment/evidence-worker-media",
        "Deployment/evidence-beat",
        "Job/evidence-migrate",
    }
    assert [problem for where, pod in pods for problem in _not_restricted(where, pod)] == []


@pytest.mark.parametrize(
    "breach",
    [
        lambda pod: pod["securityContext"].pop("runAsNonRoot"),
        lambda pod: pod["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        lambda pod: pod["initContainers"][0]["securityContext"].pop("capabilities"),
        lambda pod: pod["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        lambda pod: pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        lambda pod: pod["containers"][0]["securityContext"].update(runAsUser=0),
        lambda pod: pod["containers"][0]["resources"].pop("limits"),
        lambda pod: pod["volumes"][-1]["emptyDir"].pop("sizeLimit"),
    ],
)
def test_a_pod_that_breaks_the_standard_is_caught(breach: Any) -> None:
    pod = yaml.safe_load(yaml.safe_dump(_named("Deployment", "evidence-api")))["spec"]["template"]
    assert _not_restricted("api", pod["spec"]) == []
    breach(pod["spec"])
    assert _not_restricted("api", pod["spec"]) != []


def test_exactly_one_scheduler_with_one_replica_and_recreate() -> None:
    beats = [
        d
        for d in _of("Deployment")
        if any("--beat" in c.get("args", []) for c in d["spec"]["template"]["spec"]["containers"])
    ]
    assert [d["metadata"]["name"] for d in beats] == ["evidence-beat"]
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in _of("ScaledObject")}
    scaled |= {h["spec"]["scaleTargetRef"]["name"] for h in _of("HorizontalPodAutoscaler")}
    assert "evidence-beat" not in scaled


def test_no_secret_is_shipped_so_apply_never_overwrites_one() -> None:
    """`kubectl apply -f deploy/k8s/` must not replace real keys or passwords: no Secret
    object here at all, and no placeholder a reader might fill in and apply."""
    assert _of("Secret") == []
    for path in K8S.glob("*"):
        text = path.read_text()
        assert not re.search(r"CHANGE-?ME|PASTE-?ME|REPLACE-?ME", text, re.I), path.name
        assert not re.search(r"^kind:\s*Secret\s*$", text, re.M), path.name


def _referenced_secrets() -> set[str]:
    names = set()
    for _, doc in _docs():
        text = yaml.safe_dump(doc)
        names |= set(re.findall(r"secretName: (\S+)", text))
        for pod_spec in [doc["spec"]["template"]["spec"]] if doc["kind"] in POD_KINDS else []:
            for c in _containers(pod_spec):
                names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
                names |= {
                    e["valueFrom"]["secretKeyRef"]["name"]
                    for e in c.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})
                }
        if doc["kind"] == "TriggerAuthentication":
            names |= {r["name"] for r in doc["spec"]["secretTargetRef"]}
    return names


def _documented_secrets() -> dict[str, str]:
    """The Secrets config.yaml's header says to create, with what it says they hold."""
    text = (K8S / "config.yaml").read_text()
    return dict(re.findall(r"^#   (evidence-[a-z-]+)\s+(.*)$", text, re.M))


def test_every_secret_referenced_is_one_the_docs_say_to_create() -> None:
    referenced = _referenced_secrets()
    assert referenced == {
        "evidence-secrets",
        "evidence-db-owner",
        "evidence-keys",
        "evidence-redis",
        "evidence-tls",
    }
    assert set(_documented_secrets()) == referenced
    deploy_md = (ROOT / "docs" / "deploy.md").read_text()
    for name in referenced:
        assert name in deploy_md, f"docs/deploy.md does not say how to create {name}"


def _settings_names() -> set[str]:
    return {f"EVIDENCE_{name.upper()}" for name in Settings.model_fields}


def test_every_setting_named_is_a_real_setting() -> None:
    """The env names in the ConfigMap, the containers and the Secrets to create are all
    EVIDENCE_* settings evidence/config.py reads (a renamed setting fails here)."""
    fields = _settings_names()
    named = set(_named("ConfigMap", "evidence-config")["data"])
    for _, pod in _pods():
        for c in _containers(pod):
            named |= {e["name"] for e in c.get("env", [])}
            named |= {
                e["valueFrom"]["secretKeyRef"]["key"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
    for holds in _documented_secrets().values():
        named |= set(re.findall(r"EVIDENCE_[A-Z0-9_]+", holds))
    ours = {n for n in named if n.startswith("EVIDENCE_")}
    assert sorted(ours - fields) == []
    # The names that are not settings are for uvicorn and the worker command only.
    assert named - ours == {"FORWARDED_ALLOW_IPS", "WORKER_CONCURRENCY"}
    # What production needs is all there, in the ConfigMap or the Secrets to create.
    assert {
        "EVIDENCE_DATABASE_URL",
        "EVIDENCE_BROKER_URL",
        "EVIDENCE_STORAGE_BACKEND",
        "EVIDENCE_S3_ENDPOINT",
        "EVIDENCE_S3_ACCESS_KEY",
        "EVIDENCE_S3_SECRET_KEY",
        "EVIDENCE_S3_BUCKET",
        "EVIDENCE_OBJECT_LOCK_MODE",
        "EVIDENCE_PUBLIC_URL",
        "EVIDENCE_IDENTITY_MODE",
        "EVIDENCE_METRICS_TOKEN",
        "EVIDENCE_DATA_DIR",
    } <= ours


def test_the_migration_job_runs_as_the_owner_and_grants_the_app_role() -> None:
    job = _named("Job", "evidence-migrate")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    script = c["command"][2]
    steps = [shlex.split(part) for part in script.split("&&")]
    assert [s[:3] for s in steps] == [
        ["evidence", "db", "upgrade"],
        ["evidence", "db", "grant-app-role"],
        ["evidence", "storage", "init"],
    ]
    for step in steps:
        _check_cli("migrate", step[1:])
    owner = {e["name"]: e for e in c["env"]}["EVIDENCE_DATABASE_URL"]
    assert owner["valueFrom"]["secretKeyRef"]["name"] == "evidence-db-owner"
    # No other pod connects as the owner.
    for where, pod in _pods():
        if where != "Job/evidence-migrate":
            assert "evidence-db-owner" not in yaml.safe_dump(pod), where


def _workers() -> list[dict[str, Any]]:
    return [d for d in _of("Deployment") if d["metadata"]["name"].startswith("evidence-worker-")]


def _consumed(deployment: dict[str, Any]) -> tuple[str, ...]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return parse_queues(c["args"][c["args"].index("--queues") + 1])


def test_every_queue_has_workers_and_no_worker_mixes_bundles_with_ingest() -> None:
    """Each queue (evidence/queue.py) is consumed by exactly one worker Deployment, and a
    bundle build never takes a process an upload is waiting for."""
    consumed = [q for d in _workers() for q in _consumed(d)]
    assert sorted(consumed) == sorted(QUEUES)
    for d in _workers():
        assert not {"ingest", "bundles"} <= set(_consumed(d)), d["metadata"]["name"]
    beat = _named("Deployment", "evidence-beat")
    assert _consumed(beat) == ("maintenance",), "the scheduler's worker takes no transcode"


@pytest.mark.parametrize("name", ["evidence-worker-ingest", "evidence-worker-media"])
def test_worker_concurrency_comes_from_the_pods_cpu_limit(name: str) -> None:
    worker = _named("Deployment", name)
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    (var,) = re.findall(r"^\$\((\w+)\)$", c["args"][c["args"].index("--concurrency") + 1])
    field = {e["name"]: e for e in c["env"]}[var]["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.cpu" and field["containerName"] == c["name"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker count"
    volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    work = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/var/lib/evidence"]
    assert volumes[work]["emptyDir"]["sizeLimit"]


def test_keda_scales_each_worker_deployment_on_the_queues_it_consumes() -> None:
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in _of("ScaledObject")}
    assert set(scaled) == {d["metadata"]["name"] for d in _workers()}
    for d in _workers():
        triggers = scaled[d["metadata"]["name"]]["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(_consumed(d))
        for t in triggers:
            auth = _named("TriggerAuthentication", t["authenticationRef"]["name"])
            assert auth["spec"]["secretTargetRef"][0]["parameter"] == "password"
    assert set(ROUTES.values()) == set(QUEUES)


def test_probes_and_commands_exist(tmp_path: Path) -> None:
    from api.app import create_app

    http_paths = set()
    for where, pod in _pods():
        for c in pod["containers"]:
            probes = [c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c]
            if where.startswith("Job/"):
                continue
            assert "livenessProbe" in c, f"{where}: {c['name']} has no liveness probe"
            for probe in probes:
                if "httpGet" in probe:
                    http_paths.add(probe["httpGet"]["path"])
                else:
                    argv = probe["exec"]["command"]
                    assert argv[0] == "evidence", where
                    assert _check_cli(where, argv[1:]) == "ping-worker"
    assert http_paths == {"/healthz", "/readyz"}
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        for path in http_paths:
            answer = client.get(path)
            assert answer.status_code == 200 and answer.json()["status"] == "ok", path


def test_every_disruption_budget_selects_a_deployment() -> None:
    budgets = _of("PodDisruptionBudget")
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in _of("Deployment")]
    assert {b["metadata"]["name"] for b in budgets} == {
        "evidence-api",
        "evidence-worker-ingest",
        "evidence-worker-media",
    }
    for budget in budgets:
        wanted = budget["spec"]["selector"]["matchLabels"]
        assert any(wanted.items() <= lab.items() for lab in labels), budget["metadata"]["name"]


def _routed(path: str, rule: dict[str, Any]) -> bool:
    """Kubernetes' matching: Exact is the whole path; Prefix is by `/`-separated element."""
    if rule["pathType"] == "Exact":
        return path == rule["path"]
    prefix = rule["path"].rstrip("/").split("/")
    return path.split("/")[: len(prefix)] == prefix


def test_the_ingress_has_tls_and_never_routes_the_metrics() -> None:
    (ingress,) = _of("Ingress")
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    assert hosts <= {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    services = {s["metadata"]["name"] for s in _of("Service")}
    rules = [p for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    for rule in rules:
        assert rule["backend"]["service"]["name"] in services
    for closed in ("/metrics", "/readyz", "/metrics/", "/docs"):
        assert not any(_routed(closed, r) for r in rules), closed
    for open_ in ("/", "/api/v1/ledger/checkpoint", "/ui/", "/ui/clips", "/healthz"):
        assert any(_routed(open_, r) for r in rules), open_


def test_network_policies_deny_by_default_and_keep_the_api_port_to_two_sources() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _of("NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    sources = []
    for spec in policies.values():
        for rule in spec.get("ingress", []):
            assert spec["podSelector"]["matchLabels"]["role"] == "api"
            sources += [f["namespaceSelector"]["matchLabels"] for f in rule["from"]]
    assert sorted(s["kubernetes.io/metadata.name"] for s in sources) == [
        "ingress-nginx",
        "monitoring",
    ]


def test_init_keys_makes_the_keys_and_the_command_that_loads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["admin", "init-keys"])
        made = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
        again = CliRunner().invoke(app, ["admin", "init-keys", "--namespace", "bwv"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert {"ledger.key", "jwt.key", "viewing.key", "bundle.key"} <= set(made)
    assert {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()} == made, "kept"
    for p in (tmp_path / "keys").glob("*.key"):
        assert p.stat().st_mode & 0o077 == 0, p.name
    argv = shlex.split(again.stdout.strip().splitlines()[-1])
    assert argv[:7] == ["kubectl", "-n", "bwv", "create", "secret", "generic", "evidence-keys"]
    loaded = dict(a.removeprefix("--from-file=").split("=", 1) for a in argv[7:])
    assert set(loaded) == set(made)
    assert all(Path(path).read_bytes() == made[name] for name, path in loaded.items())
    # The pods mount that Secret by that name.
    assert "evidence-keys" in _referenced_secrets()
