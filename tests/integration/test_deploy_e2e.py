"""What the deploy files run, run here (issue 18). No Docker engine, cluster or systemd-as-init runs in the tests, so
each file's command is run as that tool would run it, as far as a test can:

- Docker: the image's HEALTHCHECK command against a bridge started as its CMD, with the database where its ENV
  puts it (a data directory made as its RUN makes /data): it passes while the bridge serves, and fails after;
- gunicorn's control socket is off: `serve` writes nothing in HOME or XDG_RUNTIME_DIR (~/.gunicorn/gunicorn.ctl
  would be one socket for every bridge of a user, and is unwritable under ProtectSystem=strict);
- systemd: `systemd-analyze verify` on the unit; and its ExecStart, with its Environment= and WorkingDirectory=,
  in a mount namespace where everything is read-only but the state directory and a private /tmp (what
  ProtectSystem=strict, StateDirectory= and PrivateTmp= give it; as root, with unshare);
- Kubernetes: `kubectl kustomize` of each shape (deploy/kubernetes/single-node, deploy/kubernetes/ha) puts every
  rule file in every pod at its path.

Each tool's test skips, with its reason, where the tool is missing (and fails under CI=true);
tests/unit/test_deploy.py reads the same files without any tool.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest

from tests.support.deploy import (
    SHAPES,
    UNIT,
    dockerfile,
    exec_form,
    healthcheck_command,
    manifests,
    of_kind,
    option,
    projected,
    rule_files,
    unit,
    unit_environment,
    unit_value,
)
from tests.support.e2e import datadog_payload
from tests.support.server import REPO, TOKEN, BridgeProcess, bridge_env, free_port, wait_for

pytestmark = pytest.mark.integration


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV settings."""
    return dict(i.args.split("=", 1) for i in dockerfile() if i.keyword == "ENV")


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, as Docker runs it (with its timeout), asking a bridge on `port`."""
    options, command = healthcheck_command(dockerfile())
    [cmd] = [exec_form(i.args) for i in dockerfile() if i.keyword == "CMD"]
    served = option(cmd, "--port")
    assert command[0] == "python"  # the image's Python: here, the tests' interpreter
    argv = [sys.executable, *(arg.replace(f"127.0.0.1:{served}/", f"127.0.0.1:{port}/") for arg in command[1:])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=float(options["timeout"].rstrip("s")))


def test_the_image_healthcheck_passes_while_its_command_serves_and_fails_once_it_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o750)  # as the image's RUN makes /data, owned by the user that runs the bridge
    database = image_env()["BRIDGE_DATABASE_URL"].replace("sqlite:////data/", f"sqlite:///{data}/")
    bridge = BridgeProcess(tmp_path, bridge_env(tmp_path, BRIDGE_DATABASE_URL=database)).start()
    try:
        passed = healthcheck(bridge.port)
        assert passed.returncode == 0, passed.stderr
        assert (data / "incident-bridge.db").exists()
    finally:
        assert bridge.stop() == 0
    failed = healthcheck(bridge.port)
    assert failed.returncode == 1 and "Connection refused" in failed.stderr, failed.stderr


@pytest.mark.parametrize("runtime_dir", [True, False], ids=["XDG_RUNTIME_DIR set", "HOME only"])
def test_serve_writes_nothing_in_home_nor_a_gunicorn_control_socket(tmp_path: Path, runtime_dir: bool) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = bridge_env(tmp_path, HOME=home, XDG_RUNTIME_DIR=runtime)
    if not runtime_dir:
        del env["XDG_RUNTIME_DIR"]
    bridge = BridgeProcess(tmp_path, env).start()
    try:
        assert bridge.post("/webhooks/datadog", datadog_json("home-1")).status_code == 202
        bridge.wait_decided()
        # While it runs (gunicorn removes its socket when it stops): its default place is
        # $XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl.
        assert sorted(p.name for p in runtime.iterdir()) == []
        assert sorted(p.name for p in home.iterdir()) == []
    finally:
        assert bridge.stop() == 0
    assert sorted(p.name for p in home.iterdir()) == []


def datadog_json(event_id: str) -> str:
    return json.dumps(datadog_payload(event_id, monitor="7401"))


def missing_tool(reason: str) -> None:
    """Skip where a tool is missing, but fail under `CI=true`: CI must never pass by skipping what it checks
    (`scripts/test` installs the tools as root on Debian)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


# -- systemd ------------------------------------------------------------------------------------------------------


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        missing_tool("systemd-analyze is not installed (Debian: apt-get install systemd)")
    # verify checks that ExecStart's program exists: the venv's /opt/incident-bridge is not on this machine.
    program = unit_value(unit(), "Service", "ExecStart").split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(program, sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown keys and bad values are warnings: any output at all is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def can_unshare() -> str:
    """Why a private mount namespace cannot be made here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces and bind mounts)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    done = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=30)
    return "" if done.returncode == 0 else f"unshare -m fails here: {done.stderr.strip()}"


def test_the_unit_serves_with_everything_read_only_but_its_state_directory(tmp_path: Path) -> None:
    if reason := can_unshare():
        missing_tool(reason)
    sections = unit()
    state = Path(unit_value(sections, "Service", "WorkingDirectory"))
    assert state == Path("/var/lib") / unit_value(sections, "Service", "StateDirectory")
    # The namespace's /var/lib and /tmp are directories of this test: its state directory, and PrivateTmp=.
    var_lib, private_tmp = tmp_path / "var-lib", tmp_path / "private-tmp"
    (var_lib / state.name).mkdir(parents=True)
    private_tmp.mkdir(mode=0o1777)
    # PrivateTmp= hides the machine's /tmp. A checkout or venv that lives there (a CI clone in /tmp, say) stays
    # visible through the namespace's own /tmp, as the unit's /opt/incident-bridge would be.
    kept = sorted({p for p in (REPO, Path(sys.prefix), Path(sys.base_prefix)) if p.is_relative_to("/tmp")})
    for path in kept:
        (private_tmp / path.relative_to("/tmp")).mkdir(parents=True, exist_ok=True)
    keep_mounts = "; ".join(shlex.join(["mount", "--bind", str(p), str(private_tmp / p.relative_to("/tmp"))])
                            for p in kept)
    exec_start = shlex.split(unit_value(sections, "Service", "ExecStart"))
    port = free_port()
    # The venv's program is this checkout with the tests' Python; the address is loopback and a free port.
    argv = [sys.executable, "-m", "bridge", *exec_start[1:]]
    argv[argv.index("--host") + 1], argv[argv.index("--port") + 1] = "127.0.0.1", str(port)
    env = {**unit_environment(sections), "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO),
           "HOME": str(state),  # systemd sets the user's home: useradd --home-dir, the state directory
           "BRIDGE_RULES": str(REPO / "rules"),  # /etc/incident-bridge/rules is not on this machine
           "BRIDGE_WEBHOOK_TOKEN": TOKEN}  # what /etc/incident-bridge/env would hold
    script = textwrap.dedent(f"""\
        set -e
        mount --make-rprivate /
        mount --bind {var_lib} /var/lib
        {keep_mounts or ":"}
        mount -o remount,bind,ro /
        mount --rbind {private_tmp} /tmp
        cd {state}
        exec env -i {' '.join(shlex.quote(f'{k}={v}') for k, v in env.items())} {shlex.join(argv)}
        """)
    log = tmp_path / "unit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx2.get(f"{url}/readyz", timeout=1.0).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(ready, timeout=30)
        answer = httpx2.post(f"{url}/webhooks/datadog", content=datadog_json("unit-1"), timeout=10.0,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202, answer.text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output
    assert "Read-only file system" not in output and "Traceback" not in output, output
    written = sorted(p.name for p in (var_lib / state.name).iterdir())
    assert "incident-bridge.db" in written and ".gunicorn" not in written, written


# -- Kubernetes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda p: p.name)
def test_kustomize_puts_every_rule_file_in_the_pod_at_its_path(shape: Path) -> None:
    if shutil.which("kubectl") is None:
        missing_tool("kubectl is not installed (it includes kustomize; Debian: apt-get install kubernetes-client)")
    done = subprocess.run(["kubectl", "kustomize", str(shape)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = manifests(done.stdout)
    data = {cm["metadata"]["name"]: cm["data"] for cm in of_kind(docs, "ConfigMap")}
    deployments = of_kind(docs, "Deployment")
    assert deployments
    for deployment in deployments:  # single node: the bridge; HA: web and worker
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        rules_path = {e["name"]: e.get("value") for e in container["env"]}["BRIDGE_RULES"]
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == rules_path]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        # The generated names carry a hash of the content (a change rolls out a new pod); the volume names them.
        assert all(name.rsplit("-", 1)[0].startswith("incident-bridge-rule") for name in data)
        assert projected(volume, data) == {path: file.read_text() for path, file in rule_files().items()}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda p: p.name)
def test_what_kustomize_renders_is_valid_against_the_kubernetes_schemas(shape: Path) -> None:
    # What `kubectl apply -k` would send, generated ConfigMaps included, checked offline against the bundled
    # schemas (strict: unknown fields fail).
    if shutil.which("kubectl") is None:
        missing_tool("kubectl is not installed (it includes kustomize; Debian: apt-get install kubernetes-client)")
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate is not installed (pip install kubernetes-validate: the `test` extra)")
    done = subprocess.run(["kubectl", "kustomize", str(shape)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = manifests(done.stdout)
    kinds = sorted({d["kind"] for d in docs})
    assert "Deployment" in kinds and "ConfigMap" in kinds and "Service" in kinds, kinds
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
