"""No configured secret appears anywhere a person or another program could read it, after a run with failures.

A real `serve` (and a separate `worker`) with every secret configured: the webhook and admin tokens, the
PagerDuty routing key and REST API token, the Datadog API and application keys, the Azure token and a generic
source's token. The run: alerts paged and resolved; PagerDuty answering 500s, then a 400 and a 401 whose bodies
echo the key they were sent (a dead letter), REST calls refused the same way; webhooks and API calls with wrong,
truncated, cross-used and basic-auth credentials; a broken rules reload. Then everything is captured: every log
line of both processes, the answer of every GET route of the app (parametrized over its `url_map`, so the console's
pages under /ui/ are read when they exist), and every row of every table of the database. No secret may appear,
neither as is, nor base64-encoded (basic auth), nor any 12-character piece of it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa

from bridge.config import Settings
from bridge.web import create_app
from tests.support.e2e import POLICIES, SERVICES, USERS, datadog_payload
from tests.support.fakes.datadog import FakeDatadog
from tests.support.fakes.pagerduty import FROM_EMAIL, FakePagerDuty
from tests.support.server import BridgeProcess, WorkerProcess, bridge_env, wait_for
from tests.support.shared import REPO

WEBHOOK = "SecretWebhookToken-q8Zr3mKx71LpQe"
ADMIN = "SecretAdminToken-Vb62NnYt0oWc5u"
ROUTING_KEY = "RsecretRoutingKey9f8e7d6c5b4a3210"[:32]
PD_API = "SecretPagerDutyApi-u+Hq4Zs8Lw2KdF"
DD_API = "secretdatadogapikey0a1b2c3d4e5f6"
DD_APP = "secretdatadogappkey9z8y7x6w5v4u3t2s1r0q"
AZURE = "SecretAzureToken-Jk4Pq7Rv0Tx3Wz"
GRAFANA = "SecretGrafanaToken-Ab1Cd2Ef3Gh4Ij"
SECRETS = {"BRIDGE_WEBHOOK_TOKEN": WEBHOOK, "BRIDGE_ADMIN_TOKEN": ADMIN, "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
           "PAGERDUTY_API_TOKEN": PD_API, "DD_API_KEY": DD_API, "DD_APP_KEY": DD_APP, "BRIDGE_AZURE_TOKEN": AZURE,
           "BRIDGE_GRAFANA_TOKEN": GRAFANA}


def forms(secret: str) -> dict[str, str]:
    """The secret's readable forms: itself, each 12-character piece, and base64 at each of the three alignments
    (basic auth puts `user:` before it, so any alignment can occur)."""
    out = {f"piece {i}": secret[i:i + 12] for i in range(0, len(secret) - 11)}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + secret.encode()).decode()
        stable = encoded[4 if pad else 0:-4]  # the characters that depend on the secret alone
        out[f"base64/{pad}"] = stable
        out[f"base64url/{pad}"] = stable.replace("+", "-").replace("/", "_")
    return out


def leaks(text: str) -> list[str]:
    """Which secrets `text` shows, and how."""
    found = []
    for name, secret in SECRETS.items():
        for form, needle in forms(secret).items():
            if needle and needle in text:
                at = text.index(needle)
                found.append(f"{name} ({form}) in ...{text[max(0, at - 80):at + 80]!r}...")
                break
    return found


def test_the_leak_detector_finds_each_form() -> None:
    for secret in SECRETS.values():
        user_pass = base64.b64encode(f"bridge:{secret}".encode()).decode()
        assert leaks(f"Authorization: Basic {user_pass}")
        assert leaks(f"token={secret[3:20]}")
        assert leaks(json.dumps({"key": secret}))
    assert not leaks("nothing here but R0123 and Secret")


class Run:
    """What the run left behind: log text, API answers, database rows."""

    def __init__(self) -> None:
        self.logs: dict[str, str] = {}
        self.answers: dict[str, str] = {}
        self.rows: dict[str, str] = {}


def get_rules() -> list[str]:
    """Every GET route of the app (read from an app built from default settings)."""
    app = create_app(Settings(database_url="sqlite://"))
    rules = sorted({r.rule for r in app.url_map.iter_rules() if "GET" in (r.methods or set())})
    app.config["BRIDGE_STORE"].engine.dispose()
    return rules


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(password: str, user: str = "bridge") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("secrets")
    rules = tmp / "rules"
    shutil.copytree(REPO / "rules", rules)
    result = Run()
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES,
                       routing_keys={ROUTING_KEY: "PSVC001"}, api_keys=[PD_API]) as pd, \
            FakeDatadog(api_key=DD_API, app_key=DD_APP) as dd:
        env = bridge_env(tmp, PAGERDUTY_EVENTS_URL=pd.url, PAGERDUTY_API_URL=pd.url, PAGERDUTY_FROM=FROM_EMAIL,
                         PAGERDUTY_SERVICE_ID="PSVC001", BRIDGE_PAGERDUTY_CA_BUNDLE=pd.ca_file or "",
                         DATADOG_API_URL=dd.url, BRIDGE_RULES=str(rules), BRIDGE_LOG_LEVEL="DEBUG",
                         BRIDGE_PUBLIC_URL="http://127.0.0.1", **SECRETS)
        # The failures PagerDuty answers, bodies echoing the key they were sent (a careless proxy might).
        echo = {"status": "invalid event", "message": f"Event object is invalid: routing_key {ROUTING_KEY}",
                "errors": [f"routing_key {ROUTING_KEY} Authorization: Token token={PD_API}"]}
        pd.fail(500, times=3, api="events", body=echo)
        bridge = BridgeProcess(tmp, env).start()
        worker = WorkerProcess(tmp, env).start()
        try:
            base = bridge.url
            json_type = {"Content-Type": "application/json"}
            keys = []
            for i in range(4):
                r = httpx2.post(f"{base}/webhooks/datadog", json=datadog_payload(f"secret-{i}", value=30 + i,
                                                                                 scope=f"service:svc{i}"),
                                headers=_bearer(WEBHOOK), timeout=10)
                assert r.status_code == 202, r.text
                keys.append(r.json()["alerts"][0]["dedup_key"])
            wait_for(lambda: len(pd.requests_to("/v2/enqueue")) >= 4, timeout=60)
            # Then a dead letter: a 400 (not retried) echoing the key, and REST refusals echoing the token.
            pd.fail(400, times=1, api="events", body=echo)
            pd.fail(401, times=3, api="rest", body={"error": {"message": f"bad token {PD_API}", "code": 2006}})
            r = httpx2.post(f"{base}/webhooks/datadog", json=datadog_payload("secret-dead", value=40,
                                                                             scope="service:dead"),
                            headers=_basic(WEBHOOK), timeout=10)  # basic auth, as a Datadog webhook URL can
            assert r.status_code == 202, r.text
            keys.append(r.json()["alerts"][0]["dedup_key"])
            # Recoveries of the first two.
            for i in range(2):
                r = httpx2.post(f"{base}/webhooks/datadog",
                                json=datadog_payload(f"secret-{i}-r", transition="Recovered", value=0,
                                                     scope=f"service:svc{i}"),
                                headers=_bearer(WEBHOOK), timeout=10)
                assert r.status_code == 202, r.text
            # Wrong and cross-used credentials everywhere.
            for path, headers in [
                ("/webhooks/datadog", _bearer(ADMIN)), ("/webhooks/datadog", _bearer(WEBHOOK[:-1])),
                ("/webhooks/datadog", _bearer(WEBHOOK.upper())), ("/webhooks/datadog", _basic(ADMIN)),
                ("/webhooks/alertmanager", _bearer(AZURE)), (f"/webhooks/azure?token={WEBHOOK}", {}),
                (f"/webhooks/azure?token={AZURE[:-2]}", {}), ("/webhooks/generic/grafana", _bearer(WEBHOOK)),
                (f"/webhooks/generic/grafana?token={ADMIN}", {}), ("/api/v1/silences", _bearer(WEBHOOK)),
                ("/-/reload", _basic(WEBHOOK)), ("/-/reload", _bearer(ADMIN + "x")),
            ]:
                r = httpx2.post(f"{base}{path}", content=b"{}", headers={**json_type, **headers}, timeout=10)
                assert r.status_code in (401, 403), (path, r.status_code, r.text)
                result.answers[f"POST {path.split('?')[0]} (wrong credential)"] = r.text + json.dumps(dict(r.headers))
            for token in (WEBHOOK, ROUTING_KEY, PD_API, ADMIN[:-1]):
                r = httpx2.get(f"{base}/api/v1/alerts", headers=_bearer(token), timeout=10)
                assert r.status_code == 401
                result.answers[f"GET /api/v1/alerts (wrong token {token[:4]})"] = r.text
            # A broken rules reload, with a secret-looking line in the file (its error quotes the file).
            (rules / "severity.yaml").write_text((rules / "severity.yaml").read_text() + "\n  broken: [\n")
            r = httpx2.post(f"{base}/-/reload", headers=_bearer(ADMIN), timeout=30)
            assert r.status_code == 400, r.text
            result.answers["POST /-/reload (broken)"] = r.text
            wait_for(lambda: httpx2.get(f"{base}/api/v1/pipeline", headers=_bearer(ADMIN), timeout=10)
                     .json()["journal"]["undecided"] == 0, timeout=60)
            wait_for(lambda: any(j["state"] == "dead" for j in
                                 httpx2.get(f"{base}/api/v1/jobs", headers=_bearer(ADMIN),
                                            timeout=10).json()["jobs"]), timeout=60)
            # Every GET route, with real ids where the rule takes one.
            admin = _bearer(ADMIN)
            alert_ids = [a["id"] for a in httpx2.get(f"{base}/api/v1/alerts", headers=admin).json()["alerts"]]
            job_ids = [j["id"] for j in httpx2.get(f"{base}/api/v1/jobs", headers=admin).json()["jobs"]]
            incident_ids = [i["id"] for i in httpx2.get(f"{base}/api/v1/incidents", headers=admin).json()["incidents"]]
            # The console's pages as a signed-in operator sees them (a session cookie, not a header token).
            console = httpx2.Client(base_url=base, timeout=30)
            form = re.search(r'name="csrf_token" value="([^"]+)"', console.get("/ui/").text)
            assert form, "the console's sign-in page has a CSRF token"
            signed = console.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": form.group(1)})
            assert signed.status_code in (302, 303), signed.text[:300]
            result.answers["POST /ui/sign-in"] = signed.text + json.dumps(dict(signed.headers))
            for rule in get_rules():
                urls = [rule]
                if "<" in rule:
                    urls = []
                    values = {"int:alert_id": alert_ids[:3], "path:key": keys, "int:job_id": job_ids[:3],
                              "int:incident_id": incident_ids[:3], "int:silence_id": [1],
                              "path:filename": ["console/console.css"], "path:unknown": ["no-such-page"]}
                    for arg, options in values.items():
                        if f"<{arg}>" in rule:
                            urls = [rule.replace(f"<{arg}>", str(v)) for v in options]
                    urls = urls or [rule.split("<", 1)[0]]
                for url in urls:
                    if url.startswith("/ui/"):
                        page = console.get(url)
                        assert page.status_code < 500, (url, page.status_code, page.text[:300])
                        result.answers[f"GET {url} (console)"] = page.text + json.dumps(dict(page.headers))
                    r = httpx2.get(f"{base}{url}", headers=admin, timeout=30)
                    assert r.status_code < 500, (url, r.status_code, r.text[:300])
                    result.answers[f"GET {url}"] = r.text + json.dumps(dict(r.headers))
                    r = httpx2.get(f"{base}{url}", timeout=30)  # and as a stranger sees it
                    result.answers[f"GET {url} (no credential)"] = r.text
        finally:
            bridge.stop()
            worker.stop()
        result.logs["serve"] = bridge.output()
        result.logs["worker"] = worker.output()
        engine = sa.create_engine(env["BRIDGE_DATABASE_URL"])
        try:
            meta = sa.MetaData()
            meta.reflect(engine)
            with engine.connect() as conn:
                for table in meta.sorted_tables:
                    rows = conn.execute(sa.select(table)).all()
                    result.rows[table.name] = "\n".join(json.dumps([str(v) for v in row]) for row in rows)
        finally:
            engine.dispose()
        assert pd.requests_to("/v2/enqueue"), "the run never reached PagerDuty"
    yield result


def test_the_run_had_its_failures(run: Run) -> None:
    """The control: the captured run did what the leak checks rely on."""
    assert "dead" in run.rows["jobs"], "no dead letter"
    assert "rules.reload" in run.rows["audit"]
    assert len(run.rows["alerts"].splitlines()) >= 7
    assert any(key.startswith("GET /api/v1/incidents/") for key in run.answers)
    # The console was read signed in: its incident and delivery pages show the incidents and dead letters.
    assert any(key.startswith("GET /ui/incidents/") and "Timeline" in answer for key, answer in run.answers.items())
    assert re.search(r"Dead-lettered \([1-9]", run.answers["GET /ui/delivery (console)"])
    assert run.logs["serve"] and run.logs["worker"]
    assert os.linesep.join(run.logs.values()).count("\n") > 10


@pytest.mark.parametrize("process", ["serve", "worker"])
def test_no_secret_in_the_logs(run: Run, process: str) -> None:
    assert leaks(run.logs[process]) == []


def test_no_secret_in_any_api_answer_or_page(run: Run) -> None:
    found = {where: leaks(text) for where, text in run.answers.items()}
    assert {where: f for where, f in found.items() if f} == {}


def test_no_secret_in_any_row_of_any_table(run: Run) -> None:
    assert set(run.rows) >= {"alerts", "incidents", "jobs", "audit", "timeline"}
    found = {table: leaks(text) for table, text in run.rows.items()}
    assert {table: f for table, f in found.items() if f} == {}


def test_the_database_file_holds_no_secret(run: Run, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The raw bytes too: a secret in a freed page or the WAL would survive in backups."""
    found: dict[str, Any] = {}
    for path in Path(tmp_path_factory.getbasetemp()).glob("secrets*/bridge.db*"):
        text = path.read_bytes().decode("latin-1")
        if leaks(text):
            found[path.name] = leaks(text)
    assert found == {}
