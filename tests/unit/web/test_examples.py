"""Every example payload under webhooks/<source>/examples/ is accepted by the bridge, sent as that source's "Try
it" section sends it, and decided as its README's table says.

The signed sources are signed by `scripts/sign-example` itself (run as a subprocess, as a user runs it), and the
app is configured from the `env` file it writes, so the documented local try is what is tested. The app is the
real one (Flask test client; no network): the receiver authenticates and parses, the rules decide, and the 202
lists each alert's severity and action.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from bridge.web import create_app
from tests.support.shared import REPO

WEBHOOKS = REPO / "webhooks"
WEBHOOK_TOKEN = "try-it-webhook-token-4e1d"
AZURE_TOKEN = "try-it-azure-token-9b2c"
GENERIC_TOKENS = {"BRIDGE_GRAFANA_TOKEN": "try-it-grafana-7a3f", "BRIDGE_STATUSPAGE_TOKEN": "try-it-status-5c8e"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}

# Each example (relative to webhooks/) and the decision of each alert it holds, in order, as the sources' READMEs
# tell them: "<severity> page", "record" (stored, not paged) or "resolve" (a recovery, whatever severity it
# carries). An example added without a line here fails `test_every_example_has_an_expectation`.
EXPECTED: dict[str, list[str]] = {
    "alertmanager/examples/01-checkout-errors-firing.json": ["P1 page"],
    "alertmanager/examples/02-checkout-errors-resolved.json": ["resolve"],
    "alertmanager/examples/03-search-slow-two-zones.json": ["P2 page", "P3 page"],
    "aws-sns/examples/01-cost-anomaly-ec2.json": ["P1 page"],
    "aws-sns/examples/02-budget-actual-monthly.json": ["P1 page"],
    "aws-sns/examples/03-budget-forecasted-monthly.json": ["P2 page"],
    "azure/examples/01-budget-actual-common-schema.json": ["P1 page"],
    "azure/examples/02-budget-forecasted-common-schema.json": ["P2 page"],
    "azure/examples/03-budget-actual-legacy-schema.json": ["P0 page"],
    "datadog/examples/01-checkout-users-triggered.json": ["P0 page"],
    "datadog/examples/02-checkout-customers-warn.json": ["P2 page"],
    "datadog/examples/03-checkout-users-recovered.json": ["resolve"],
    "datadog/examples/04-payments-api-no-data.json": ["record"],
    "datadog/examples/05-cloud-cost-increase.json": ["P1 page"],
    "datadog/examples/06-security-signal.json": ["P1 page"],
    "gcp-pubsub/examples/01-budget-threshold-150pct.json": ["P1 page"],
    "gcp-pubsub/examples/02-budget-routine-report.json": ["record"],
    "gcp-pubsub/examples/03-budget-threshold-90pct.json": ["record"],
    "generic/examples/grafana-firing.json": ["P1 page", "record"],
    "generic/examples/grafana-resolved.json": ["resolve"],
    "generic/examples/statuspage-component-update.json": ["record"],
    "generic/examples/statuspage-incident-investigating.json": ["record"],
    "generic/examples/statuspage-incident-resolved.json": ["resolve"],
}


def examples_on_disk() -> list[str]:
    """Every example payload in the repository, relative to webhooks/."""
    return sorted(str(p.relative_to(WEBHOOKS)) for p in WEBHOOKS.glob("*/examples/*.json"))


def test_every_example_has_an_expectation() -> None:
    assert examples_on_disk() == sorted(EXPECTED)


def test_every_source_has_examples() -> None:
    sources = sorted(p.name for p in WEBHOOKS.iterdir() if p.is_dir())
    with_examples = sorted({e.split("/", 1)[0] for e in examples_on_disk()})
    assert with_examples == sources


@dataclass
class Try:
    """A bridge configured as the Try-it sections say, and the directory `scripts/sign-example` signed into."""

    client: Any
    signed: Path

    def post(self, example: str) -> Any:
        source = example.split("/", 1)[0]
        path = WEBHOOKS / example
        name = path.name
        json_headers = {"Content-Type": "application/json"}
        if source in ("datadog", "alertmanager"):
            return self.client.post(f"/webhooks/{source}", data=path.read_bytes(), environ_base=LOOPBACK,
                                    headers=json_headers | {"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        if source == "azure":
            return self.client.post(f"/webhooks/azure?token={AZURE_TOKEN}", data=path.read_bytes(),
                                    environ_base=LOOPBACK, headers=json_headers)
        if source == "generic":
            generic = name.split("-", 1)[0]
            token = GENERIC_TOKENS[f"BRIDGE_{generic.upper()}_TOKEN"]
            return self.client.post(f"/webhooks/generic/{generic}", data=path.read_bytes(), environ_base=LOOPBACK,
                                    headers=json_headers | {"Authorization": f"Bearer {token}"})
        if source == "aws-sns":
            return self.client.post("/webhooks/aws-sns", data=(self.signed / name).read_bytes(),
                                    environ_base=LOOPBACK, headers={"Content-Type": "text/plain; charset=UTF-8"})
        if source == "gcp-pubsub":
            token = (self.signed / f"{name}.token").read_text().strip()
            return self.client.post("/webhooks/gcp-pubsub", data=(self.signed / name).read_bytes(),
                                    environ_base=LOOPBACK,
                                    headers=json_headers | {"Authorization": f"Bearer {token}"})
        raise AssertionError(f"no way to post an example of {source}: add one to this test")


def read_env_file(path: Path) -> dict[str, str]:
    """`export NAME=value` lines, as the shell would read them (values are single-word or single-quoted)."""
    import shlex

    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


@pytest.fixture(scope="module")
def tried(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("try")
    signed = tmp / "signed-examples"
    signed_sources = sorted(str(p) for p in WEBHOOKS.glob("aws-sns/examples/*.json")) + sorted(
        str(p) for p in WEBHOOKS.glob("gcp-pubsub/examples/*.json"))
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "sign-example"), "--dir", str(signed),
                          *signed_sources], capture_output=True, text=True, timeout=60, cwd=tmp)
    assert run.returncode == 0, run.stderr
    assert "curl" in run.stdout and str(signed / "env") in run.stdout
    env = read_env_file(signed / "env") | {
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp / 'try.db'}",
        "BRIDGE_RULES": str(REPO / "rules"),
        "BRIDGE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "BRIDGE_AZURE_TOKEN": AZURE_TOKEN,
    }
    mp = pytest.MonkeyPatch()
    for name, value in GENERIC_TOKENS.items():
        mp.setenv(name, value)  # generic sources read their token from the environment (token_env)
    app = create_app(Settings.from_env(env))
    yield Try(app.test_client(), signed)
    mp.undo()


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_is_accepted_and_decided_as_documented(tried: Try, example: str) -> None:
    r = tried.post(example)
    assert r.status_code in (200, 202), (r.status_code, r.get_data(as_text=True))
    answer = r.get_json()
    decided = [a["action"] if a["action"] in ("record", "resolve") else f"{a['severity']} {a['action']}"
               for a in answer["alerts"]]
    assert decided == EXPECTED[example], json.dumps(answer, indent=2)


def test_signed_examples_are_refused_by_a_bridge_that_does_not_trust_the_local_keys(tried: Try,
                                                                                   tmp_path: Path) -> None:
    """The local keys are trusted only through the settings the script writes: without them, 401/503."""
    env = {"BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}", "BRIDGE_RULES": str(REPO / "rules"),
           "BRIDGE_SNS_TOPICS": read_env_file(tried.signed / "env")["BRIDGE_SNS_TOPICS"],
           "BRIDGE_GCP_AUDIENCE": "http://127.0.0.1:8080/webhooks/gcp-pubsub",
           "BRIDGE_GCP_SERVICE_ACCOUNTS": "budget-push@example-project.iam.gserviceaccount.com",
           "BRIDGE_GCP_CERTS": json.dumps({"other-kid": "not the script's key"})}
    other = Try(create_app(Settings.from_env(env)).test_client(), tried.signed)
    gcp = other.post("gcp-pubsub/examples/01-budget-threshold-150pct.json")
    assert gcp.status_code == 401, gcp.get_data(as_text=True)
    assert set(gcp.get_json()) == {"error", "message"}
