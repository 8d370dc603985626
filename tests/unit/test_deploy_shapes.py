"""The two Kubernetes shapes (issue 14), read as Kubernetes reads them: deploy/kubernetes/single-node (SQLite on a
PersistentVolumeClaim, one replica, Recreate) and deploy/kubernetes/ha (web and worker Deployments on PostgreSQL,
the migration Job, the Service, PodDisruptionBudgets).

Every manifest is validated against the Kubernetes JSON schemas by `kubernetes-validate` (PyPI; it bundles the
schemas, so no network), strictly: an unknown field fails too. tests/integration/test_deploy_e2e.py validates what
`kubectl kustomize` renders of each shape as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main, serve
from bridge.config import Settings
from bridge.web import create_app
from tests.support.deploy import HA, HA_MANIFEST, MANIFEST, SHAPES, manifests, of_kind

# The Kubernetes version the schemas are checked against: a version kubernetes-validate bundles.
KUBERNETES_VERSION = "1.30.0"
# Variables whose value is a secret (a token, a key, a URL that carries a password): only by reference.
SECRET_NAMES = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|DATABASE_URL")


def missing_tool(reason: str) -> None:
    """Skip where the validator is missing, but fail under `CI=true` (CI installs the `test` extra)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def docs_of(path: Path) -> list[dict[str, Any]]:
    return manifests(path.read_text())


def ha() -> list[dict[str, Any]]:
    return docs_of(HA_MANIFEST)


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]) for d in docs
            if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{where}/{c['name']}", c) for where, spec in pod_specs(docs)
            for c in [*spec.get("initContainers", []), *spec["containers"]]]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


BOTH = pytest.mark.parametrize("manifest", [MANIFEST, HA_MANIFEST], ids=["single-node", "ha"])


# -- the schemas ---------------------------------------------------------------------------------------------------


@BOTH
def test_every_manifest_is_valid_against_the_kubernetes_schemas(manifest: Path) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate is not installed (pip install kubernetes-validate: the `test` extra)")
    docs = docs_of(manifest)
    assert docs
    for doc in docs:
        # Raises ValidationError with the field at fault; strict: unknown fields are errors too.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("path", "value"), [
    pytest.param(("spec", "replicas"), "two", id="wrong-type"),
    pytest.param(("spec", "template", "spec", "containers", 0, "imagePullPolicyy"), "Always", id="unknown-field"),
    pytest.param(("spec", "template", "spec", "containers", 0, "securityContext", "runAsNonRoot"), "yes",
                 id="string-for-boolean"),
])
def test_the_validator_refuses_a_broken_manifest(path: tuple[Any, ...], value: Any) -> None:
    # So that the test above cannot pass by validating nothing.
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate is not installed (pip install kubernetes-validate: the `test` extra)")
    doc = named(ha(), "Deployment", "incident-bridge-web")
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# -- single node ---------------------------------------------------------------------------------------------------


def test_single_node_is_one_replica_on_sqlite_on_a_claim_replaced_by_recreate() -> None:
    docs = docs_of(MANIFEST)
    [deployment] = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    [claim] = of_kind(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BRIDGE_DATABASE_URL"].startswith("sqlite:////data/")


# -- HA on PostgreSQL ----------------------------------------------------------------------------------------------


def test_ha_web_runs_at_least_two_replicas_of_serve_without_the_worker() -> None:
    web = named(ha(), "Deployment", "incident-bridge-web")
    assert web["spec"]["replicas"] >= 2
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = web["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["incident-bridge", "serve"] and "--no-worker" in args
    # The flag is the command line's own.
    assert "--no-worker" in {opt for p in serve.params for opt in p.opts}


def test_ha_worker_runs_the_worker_on_the_same_database() -> None:
    docs = ha()
    worker = named(docs, "Deployment", "incident-bridge-worker")
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["incident-bridge", "worker"]
    assert "worker" in main.commands
    refs = {}
    for _, c in containers(docs):
        for e in c["env"]:
            if e["name"] == "BRIDGE_DATABASE_URL":
                refs[c["name"]] = e["valueFrom"]["secretKeyRef"]
    assert set(refs) == {"web", "worker", "migrate"}
    assert len({(r["name"], r["key"]) for r in refs.values()}) == 1


def test_the_migration_is_a_job_running_db_upgrade() -> None:
    [job] = of_kind(ha(), "Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["incident-bridge", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    # Removed once finished, so the next `kubectl apply -k` (a new image) creates and runs it again.
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    if "db" in main.commands:  # added by the migrations work of issue 14; the name is fixed there
        assert "upgrade" in main.commands["db"].commands  # type: ignore[attr-defined]


def test_the_service_and_the_web_pdb_select_the_web_pods_only() -> None:
    docs = ha()
    web_labels = named(docs, "Deployment", "incident-bridge-web")["spec"]["template"]["metadata"]["labels"]
    worker_labels = named(docs, "Deployment", "incident-bridge-worker")["spec"]["template"]["metadata"]["labels"]
    [service] = of_kind(docs, "Service")
    assert labels_match(service["spec"]["selector"], web_labels)
    assert not labels_match(service["spec"]["selector"], worker_labels)
    pdb = named(docs, "PodDisruptionBudget", "incident-bridge-web")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert labels_match(selector, web_labels) and not labels_match(selector, worker_labels)
    web_replicas = named(docs, "Deployment", "incident-bridge-web")["spec"]["replicas"]
    assert 1 <= pdb["spec"]["minAvailable"] < web_replicas  # a drain proceeds, one replica at a time


def test_the_probes_ask_paths_the_app_serves(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    for manifest in (MANIFEST, HA_MANIFEST):
        for where, spec in pod_specs(docs_of(manifest)):
            for c in spec["containers"]:
                ports = {p["name"] for p in c.get("ports", [])}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe in c:
                        http = c[probe]["httpGet"]
                        path = http["path"].partition("?")[0]
                        assert path in routes and http["port"] in ports, (where, probe, http)
    [web] = [c for w, c in containers(ha()) if w.startswith("Deployment/incident-bridge-web/")]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Receiving only: a stall every replica shares must not take them all out of the Service.
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz?scope=receive"


# -- both shapes ---------------------------------------------------------------------------------------------------


@BOTH
def test_every_container_runs_restricted(manifest: Path) -> None:
    docs = docs_of(manifest)
    for where, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
    found = containers(docs)
    assert found
    for where, c in found:
        context = c["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert "privileged" not in context or context["privileged"] is False, where
        # With the root filesystem read-only, /tmp is a volume (gunicorn's heartbeat files).
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, where


@BOTH
def test_every_container_has_requests_and_a_memory_limit(manifest: Path) -> None:
    for where, c in containers(docs_of(manifest)):
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
        assert "memory" in c["resources"]["limits"], where


@BOTH
def test_secrets_only_by_reference(manifest: Path) -> None:
    docs = docs_of(manifest)
    assert of_kind(docs, "Secret") == []  # created by hand (deploy/README.md), never committed
    for where, c in containers(docs):
        for e in c.get("env", []):
            if SECRET_NAMES.search(e["name"]) and not e["name"].endswith("_FILE"):
                if manifest == MANIFEST and e["name"] == "BRIDGE_DATABASE_URL":
                    assert "@" not in e["value"], where  # SQLite: a path, no credentials
                    continue
                assert "value" not in e, f"{where}: {e['name']} has a literal value"
                assert e["valueFrom"]["secretKeyRef"]["name"] == "incident-bridge", where
        assert "envFrom" not in c, where  # every variable named, so none is read by accident
    text = manifest.read_text()
    assert not re.search(r"postgres(ql)?(\+\w+)?://[^\s\"']*:[^\s\"'@]*@", text), "a database password in the file"


def test_each_shape_is_its_own_kustomization() -> None:
    import yaml

    for shape in SHAPES:
        spec = yaml.safe_load((shape / "kustomization.yaml").read_text())
        assert spec["resources"] == ["incident-bridge.yaml", "../../../rules"], shape
    assert HA.name == "ha"
