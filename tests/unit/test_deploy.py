"""The deploy files work as shipped (issue 18), read as Docker, kustomize and systemd read them:

- Docker: /data is created and handed to the bridge's user before the image switches to it (and before VOLUME,
  after which a build step could not change it); the database defaults to it; the HEALTHCHECK asks /healthz on
  the port the CMD serves;
- Kubernetes: the pod runs as the image's user with an fsGroup; every file of rules/, sources/ and cases/
  included, is in the pod at its path; the Secret keys the pod reads are in the documented command;
- systemd: the state directory holds the database and is where the bridge works; the install steps create what
  the unit names.

tests/integration/test_deploy_e2e.py runs what these files run: the HEALTHCHECK's command against a real bridge,
kustomize itself, systemd-analyze, and the unit's ExecStart with everything read-only but its state directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    DOCS,
    KUSTOMIZATION,
    MANIFEST,
    RULES,
    Instruction,
    dockerfile,
    exec_form,
    generated_configmaps,
    healthcheck_command,
    manifests,
    of_kind,
    option,
    projected,
    rule_files,
    secret_commands,
    shell_lines,
    unit,
    unit_environment,
    unit_value,
)


def keyword_index(instructions: list[Instruction], keyword: str, contains: str = "") -> int:
    [index] = [i for i, ins in enumerate(instructions) if ins.keyword == keyword and contains in ins.args]
    return index


def image_user() -> tuple[str, int, int]:
    """The USER of the image, and the uid and gid its RUN gives it."""
    instructions = dockerfile()
    [user] = [i.args for i in instructions if i.keyword == "USER"]
    run = instructions[keyword_index(instructions, "RUN", "useradd")].args
    uid = re.search(rf"useradd --uid (\d+) --gid (\d+) .*\b{user}\b", run)
    assert uid, run
    return user, int(uid.group(1)), int(uid.group(2))


def deployment() -> dict[str, Any]:
    [found] = of_kind(manifests(MANIFEST.read_text()), "Deployment")
    return found


def container() -> dict[str, Any]:
    [found] = deployment()["spec"]["template"]["spec"]["containers"]
    return found


# -- Docker -------------------------------------------------------------------------------------------------------


def test_the_image_hands_data_to_its_user_before_switching_to_it_and_before_declaring_the_volume() -> None:
    instructions = dockerfile()
    user, _, _ = image_user()
    prepared = keyword_index(instructions, "RUN", "chown")
    run = instructions[prepared].args
    assert "mkdir -p /data" in run and f"chown {user}:{user} /data" in run, run
    assert prepared < keyword_index(instructions, "USER"), "chown /data needs root: before USER"
    # A build step after VOLUME cannot change the volume: Docker discards its changes there.
    assert prepared < keyword_index(instructions, "VOLUME")
    assert exec_form(instructions[keyword_index(instructions, "VOLUME")].args) == ["/data"]


def test_the_image_keeps_the_database_on_the_volume() -> None:
    env = [i.args for i in dockerfile() if i.keyword == "ENV"]
    assert "BRIDGE_DATABASE_URL=sqlite:////data/incident-bridge.db" in env


def test_the_healthcheck_asks_healthz_on_the_port_the_image_serves() -> None:
    instructions = dockerfile()
    options, command = healthcheck_command(instructions)
    [cmd] = [exec_form(i.args) for i in instructions if i.keyword == "CMD"]
    [exposed] = [i.args for i in instructions if i.keyword == "EXPOSE"]
    assert cmd[:2] == ["incident-bridge", "serve"]
    port = option(cmd, "--port")
    assert exposed == port
    # python -c: the slim image has no curl.
    assert command[:2] == ["python", "-c"]
    assert f"'http://127.0.0.1:{port}/healthz'" in command[2], command
    # Its own timeout below Docker's, so a hung request ends with an answer, not a kill.
    inner = float(re.search(r"timeout=(\d+(?:\.\d+)?)", command[2]).group(1))  # type: ignore[union-attr]
    assert inner < float(options["timeout"].rstrip("s"))


# -- Kubernetes ---------------------------------------------------------------------------------------------------


def test_the_pod_runs_as_the_image_user_and_its_volume_is_writable_for_it() -> None:
    _, uid, gid = image_user()
    context = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid, gid, gid)
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert env["BRIDGE_DATABASE_URL"] == "sqlite:////data/incident-bridge.db" and mounts["/data"] == "data"


def test_kubectl_apply_k_takes_the_manifest_and_the_rules() -> None:
    spec = yaml.safe_load(KUSTOMIZATION.read_text())
    assert spec["resources"] == ["incident-bridge.yaml", "../../../rules"]
    assert (KUSTOMIZATION.parent / "../../../rules").resolve() == RULES
    # The ConfigMaps come from the generator alone: a ConfigMap in the manifest would clash with it.
    assert of_kind(manifests(MANIFEST.read_text()), "ConfigMap") == []


def test_every_rule_file_is_in_the_pod_at_its_path_under_bridge_rules() -> None:
    generated = {name: {key: path.read_text() for key, path in data.items()}
                 for name, data in generated_configmaps().items()}
    env = {e["name"]: e.get("value") for e in container()["env"]}
    [mount] = [m for m in container()["volumeMounts"] if m["mountPath"] == env["BRIDGE_RULES"]]
    [volume] = [v for v in deployment()["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    in_pod = projected(volume, generated)
    on_disk = {path: file.read_text() for path, file in rule_files().items()}
    assert sorted(in_pod) == sorted(on_disk), (
        "rules/Kustomization and the Deployment's items must list every file of rules/ "
        f"(missing: {sorted(set(on_disk) - set(in_pod))}, extra: {sorted(set(in_pod) - set(on_disk))})")
    assert in_pod == on_disk
    assert {p for p in in_pod if "/" in p} >= {"sources/grafana.yaml", "sources/statuspage.yaml"}


def test_the_secret_keys_the_pod_reads_are_in_the_documented_command() -> None:
    refs = [e["valueFrom"]["secretKeyRef"] for e in container()["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {"incident-bridge"}
    # The variable is the key: the documented names are the bridge's own.
    assert all(e["name"] == e["valueFrom"]["secretKeyRef"]["key"] for e in container()["env"] if "valueFrom" in e)
    required = {r["key"] for r in refs if not r.get("optional")}
    assert required == {"BRIDGE_WEBHOOK_TOKEN", "PAGERDUTY_ROUTING_KEY"}
    commands = secret_commands()
    assert commands, f"no `kubectl create secret generic incident-bridge` in {[str(d) for d in DOCS]}"
    for doc, found in commands.items():
        for keys in found:
            assert {r["key"] for r in refs} <= keys, f"{doc.name}: the command lacks {required - keys}"


def test_the_probes_ask_healthz_for_liveness_and_readyz_for_readiness_on_the_image_port() -> None:
    port = option(exec_form([i for i in dockerfile() if i.keyword == "CMD"][0].args), "--port")
    [http] = container()["ports"]
    assert (http["name"], str(http["containerPort"])) == ("http", port)
    probes = {name: container()[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": {"path": "/healthz", "port": "http"},
                      "livenessProbe": {"path": "/healthz", "port": "http"},
                      # receiving only: a stall every replica shares must not take the Service's endpoints away
                      "readinessProbe": {"path": "/readyz?scope=receive", "port": "http"}}


# -- systemd ------------------------------------------------------------------------------------------------------

STATE = "/var/lib/incident-bridge"


def test_the_unit_works_and_keeps_its_database_in_its_state_directory() -> None:
    sections = unit()
    assert unit_value(sections, "Service", "StateDirectory") == "incident-bridge"  # -> /var/lib/incident-bridge
    assert unit_value(sections, "Service", "WorkingDirectory") == STATE
    database = unit_environment(sections)["BRIDGE_DATABASE_URL"]
    assert database.startswith(f"sqlite:///{STATE}/"), database
    # Read-only everywhere else; the supervisor alone gets SIGTERM and drains its children.
    assert unit_value(sections, "Service", "ProtectSystem") == "strict"
    assert unit_value(sections, "Service", "PrivateTmp") == "true"
    assert unit_value(sections, "Service", "KillMode") == "mixed"
    assert not [k for k, _ in sections["Service"] if k == "ReadWritePaths"], "StateDirectory= is writable already"


def systemd_docs() -> dict[Path, list[str]]:
    """The shell lines of each document that installs the unit."""
    found = {doc: shell_lines(doc.read_text()) for doc in DOCS if doc.exists()}
    return {doc: lines for doc, lines in found.items() if "sudo systemctl enable --now incident-bridge" in lines}


@pytest.mark.parametrize("doc", sorted(systemd_docs()), ids=lambda p: p.relative_to(RULES.parent).as_posix())
def test_the_install_steps_create_what_the_unit_names(doc: Path) -> None:
    sections = unit()
    lines = systemd_docs()[doc]
    user = unit_value(sections, "Service", "User")
    venv = unit_value(sections, "Service", "ExecStart").split()[0].removesuffix("/bin/incident-bridge")
    env_file = unit_value(sections, "Service", "EnvironmentFile")
    rules = unit_environment(sections)["BRIDGE_RULES"]
    expected = [
        f"sudo useradd --system --home-dir {STATE} --no-create-home --shell /usr/sbin/nologin {user}",
        f"sudo python3 -m venv {venv}",
        f"sudo {venv}/bin/pip install .",
        f"sudo cp -r rules {rules}",
        f"sudo install -m 0600 -o root -g root /dev/null {env_file}",
        "sudo cp deploy/systemd/incident-bridge.service /etc/systemd/system/",
        "sudo systemctl daemon-reload",
        "sudo systemctl enable --now incident-bridge",
    ]
    steps = [line.split("  #", 1)[0].strip() for line in lines]
    assert [step for step in expected if step not in steps] == []
    assert [steps.index(step) for step in expected] == sorted(steps.index(step) for step in expected)


def test_some_document_installs_the_unit() -> None:
    assert systemd_docs(), f"no systemd install steps in {[str(d) for d in DOCS]}"
