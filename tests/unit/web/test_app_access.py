"""Who may do what, through the real app (Flask test client: no network): the webhook token for senders, the
admin token for the API, reloads and silences; loopback only without them; no browser page from another site.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.pipeline.stage import PipelineStage
from bridge.web import create_app
from tests.support.shared import REPO

JSON = "application/json"
REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
BODY = json.dumps({"id": "a1", "alert_id": "1", "title": "t", "text": "bridge.value: 30",
                   "tags": "dimension:users_affected_pct"})


def app_with(tmp_path: Path, **receivers: dict[str, str]) -> object:
    base = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}",
                    receivers={"datadog": {"token": ""}, "azure": {"token": ""}, **receivers})
    return create_app(base)


@pytest.mark.parametrize(("environ", "status"), [(LOOPBACK, 202), (REMOTE, 401)], ids=["loopback", "remote"])
def test_without_a_webhook_token_only_loopback_may_post(tmp_path: Path, environ: dict[str, str],
                                                        status: int) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    r = client.post("/webhooks/datadog", data=BODY, environ_base=environ, content_type=JSON)
    assert r.status_code == status
    if status == 401:
        assert "BRIDGE_WEBHOOK_TOKEN" in r.get_json()["message"]


def test_azure_without_its_token_names_its_variable_to_a_remote_sender(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", webhook_token=Secret("shared"),
                        receivers={"datadog": {"token": "shared"}, "azure": {"token": ""}})
    client = create_app(settings).test_client()
    r = client.post("/webhooks/azure?token=whatever", data="{}", environ_base=REMOTE, content_type=JSON)
    assert r.status_code == 403
    assert "BRIDGE_AZURE_TOKEN" in r.get_json()["message"]
    assert "whatever" not in r.get_data(as_text=True)


def test_unknown_receiver_is_404_with_the_known_ones(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    r = client.post("/webhooks/nagios", data="{}", environ_base=LOOPBACK, content_type=JSON)
    assert r.status_code == 404 and "datadog" in r.get_json()["message"]


def test_a_database_that_cannot_be_opened_is_a_503_json_not_a_400(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    store = app.config["BRIDGE_STORE"]  # type: ignore[attr-defined]
    store.engine.dispose()
    # Break the database underneath the app: the sender must be told to retry (5xx), never to give up (4xx).
    (tmp_path / "b.db").unlink()
    (tmp_path / "b.db").mkdir()
    r = app.test_client().post("/webhooks/datadog", data=BODY, environ_base=LOOPBACK,  # type: ignore[attr-defined]
                               content_type=JSON)
    # Not our bug but the database's state (issue 16): 503 with Retry-After, and no traceback for the operator.
    assert r.status_code == 503
    assert r.get_json()["error"] == "database_unavailable"
    assert r.get_json()["message"] == "the database cannot be opened; nothing was stored, retry later"
    assert r.headers["Retry-After"] == "5"


WEBHOOK = "webhook-token-for-senders"
ADMIN = "admin-token-for-operators"


def two_credentials(tmp_path: Path, **extra: object) -> Any:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", webhook_token=Secret(WEBHOOK),
                        admin_token=Secret(ADMIN), receivers={"datadog": {"token": Secret(WEBHOOK)}},
                        **extra)  # type: ignore[arg-type]
    return create_app(settings).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SILENCE = json.dumps({"matchers": ["service=checkout"], "owner": "ops", "reason": "maintenance",
                      "duration": "1h"})


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/alerts", None),
    ("GET", "/api/v1/alerts/1/why", None),
    ("GET", "/api/v1/incidents", None),
    ("GET", "/api/v1/jobs", None),
    ("GET", "/api/v1/audit", None),
    ("GET", "/api/v1/rules", None),
    ("GET", "/api/v1/silences", None),
    ("POST", "/api/v1/silences", SILENCE),
    ("DELETE", "/api/v1/silences/1", None),
    ("POST", "/-/reload", None),
], ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
@pytest.mark.parametrize(("token", "environ", "status"), [
    (None, REMOTE, 401),
    (None, LOOPBACK, 401),        # an admin token is configured: loopback alone is not enough
    (WEBHOOK, REMOTE, 401),       # the senders' token never opens the API
    (WEBHOOK, LOOPBACK, 401),
    ("wrong", REMOTE, 401),
    (ADMIN, REMOTE, None),
], ids=["none-remote", "none-loopback", "webhook-remote", "webhook-loopback", "wrong", "admin"])
def test_admin_endpoints_take_the_admin_token_only(tmp_path: Path, method: str, path: str, body: str | None,
                                                    token: str | None, environ: dict[str, str],
                                                    status: int | None) -> None:
    client = two_credentials(tmp_path)
    r = client.open(path, method=method, data=body, content_type=JSON, environ_base=environ,
                    headers=bearer(token) if token else {})
    if status is None:
        assert r.status_code in (200, 201, 404), r.get_data(as_text=True)  # 404: no silence 1 (or alert 1)
        return
    assert r.status_code == status
    answer = r.get_json()
    assert answer["error"].startswith("admin_token") and "BRIDGE_ADMIN_TOKEN" in answer["message"]
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="incident-bridge admin"'
    for secret in (WEBHOOK, ADMIN):
        assert secret not in r.get_data(as_text=True)


def test_the_admin_token_is_not_accepted_on_webhooks(tmp_path: Path) -> None:
    client = two_credentials(tmp_path)
    r = client.post("/webhooks/datadog", data=BODY, content_type=JSON, headers=bearer(ADMIN), environ_base=REMOTE)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="incident-bridge webhooks"'
    assert ADMIN not in r.get_data(as_text=True)
    ok = client.post("/webhooks/datadog", data=BODY, content_type=JSON, headers=bearer(WEBHOOK),
                     environ_base=REMOTE)
    assert ok.status_code == 202


def test_without_an_admin_token_the_api_answers_loopback_only(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    assert client.get("/api/v1/alerts", environ_base=LOOPBACK).status_code == 200
    r = client.get("/api/v1/alerts", environ_base=REMOTE)
    assert r.status_code == 401 and r.get_json()["error"] == "admin_token_not_configured"
    # DNS rebinding: a hostile name resolved to 127.0.0.1 reaches loopback, but names itself in Host.
    rebound = client.get("/api/v1/alerts", environ_base=LOOPBACK, headers={"Host": "rebind.evil.example:8080"})
    assert rebound.status_code == 403 and rebound.get_json()["error"] == "host_not_allowed"
    posted = client.post("/webhooks/datadog", data=BODY, content_type=JSON, environ_base=LOOPBACK,
                         headers={"Host": "rebind.evil.example:8080"})
    assert posted.status_code == 403


@pytest.mark.parametrize(("path", "content_type", "headers"), [
    ("/webhooks/datadog", "text/plain", {}),                                   # a cross-site fetch, no preflight
    ("/webhooks/datadog", "application/x-www-form-urlencoded", {}),            # an HTML form
    ("/webhooks/datadog", "multipart/form-data; boundary=x", {}),
    ("/webhooks/datadog", JSON, {"Origin": "http://evil.example"}),
    ("/webhooks/datadog", JSON, {"Sec-Fetch-Site": "cross-site"}),
    ("/webhooks/alertmanager", "text/plain", {}),
    ("/api/v1/silences", "text/plain", {"Origin": "null"}),
    ("/api/v1/silences", JSON, {"Origin": "http://evil.example"}),
    ("/-/reload", JSON, {"Sec-Fetch-Site": "cross-site"}),
], ids=["text-plain", "form", "multipart", "origin", "fetch-site", "am-text-plain", "null-origin-silence",
        "origin-silence", "reload-cross-site"])
def test_no_browser_page_on_the_same_machine_gets_in(tmp_path: Path, path: str, content_type: str,
                                                     headers: dict[str, str]) -> None:
    app = app_with(tmp_path)
    store = app.config["BRIDGE_STORE"]  # type: ignore[attr-defined]
    client = app.test_client()  # type: ignore[attr-defined]
    body = SILENCE if "silences" in path else BODY
    r = client.post(path, data=body, content_type=content_type, headers=headers, environ_base=LOOPBACK)
    assert r.status_code in (403, 415), r.get_data(as_text=True)
    assert set(r.get_json()) == {"error", "message"}
    assert store.list_alerts() == [] and store.list_silences() == [] and store.list_audit() == []


def test_datadog_form_encoding_needs_the_webhook_token(tmp_path: Path) -> None:
    from urllib.parse import urlencode

    form = urlencode({"payload": BODY})
    (tmp_path / "open").mkdir()
    open_app = app_with(tmp_path / "open").test_client()  # type: ignore[attr-defined]
    r = open_app.post("/webhooks/datadog", data=form, content_type="application/x-www-form-urlencoded",
                      environ_base=LOOPBACK)
    assert r.status_code == 415
    client = two_credentials(tmp_path)
    r = client.post("/webhooks/datadog", data=form, content_type="application/x-www-form-urlencoded",
                    headers=bearer(WEBHOOK), environ_base=REMOTE)
    assert r.status_code in (200, 202), r.get_data(as_text=True)


def test_sns_may_send_text_plain(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()  # type: ignore[attr-defined]
    r = client.post("/webhooks/aws-sns", data="{}", content_type="text/plain; charset=UTF-8",
                    environ_base=REMOTE)
    assert r.status_code != 415  # refused for its (missing) signature instead


def test_allowed_hosts_are_enforced_for_everyone(tmp_path: Path) -> None:
    client = two_credentials(tmp_path, allowed_hosts=("bridge.internal",))
    ok = client.get("/api/v1/alerts", headers={**bearer(ADMIN), "Host": "bridge.internal:8080"},
                    environ_base=REMOTE)
    assert ok.status_code == 200
    other = client.get("/api/v1/alerts", headers={**bearer(ADMIN), "Host": "other.internal"}, environ_base=REMOTE)
    assert other.status_code == 403


def test_every_change_is_audited_with_who_and_when(tmp_path: Path) -> None:
    client = two_credentials(tmp_path)
    admin = bearer(ADMIN)
    created = client.post("/api/v1/silences", data=SILENCE, content_type=JSON, headers=admin, environ_base=REMOTE)
    assert created.status_code == 201
    silence_id = created.get_json()["id"]
    assert client.delete(f"/api/v1/silences/{silence_id}", headers=admin, environ_base=REMOTE).status_code == 200
    assert client.post("/-/reload", headers=admin, environ_base=REMOTE).status_code == 200
    entries = client.get("/api/v1/audit", headers=admin, environ_base=REMOTE).get_json()["audit"]
    assert [e["action"] for e in entries] == ["rules.reload", "silence.expire", "silence.create"]
    for entry in entries:
        assert entry["actor"] == "admin-token from 203.0.113.5"
        assert entry["at"]
    assert entries[2]["target"] == str(silence_id) and entries[2]["details"]["owner"] == "ops"
    assert entries[0]["details"]["ok"] is True
    only = client.get("/api/v1/audit?action=silence.", headers=admin, environ_base=REMOTE).get_json()["audit"]
    assert [e["action"] for e in only] == ["silence.expire", "silence.create"]


def test_a_silence_regex_re2_cannot_run_is_refused_with_a_400_naming_the_matcher(tmp_path: Path) -> None:
    client = two_credentials(tmp_path)
    admin = bearer(ADMIN)
    body = json.dumps({"matchers": ["service=checkout", r'title=~"(\w+) \1"'], "owner": "ops",
                       "reason": "maintenance", "duration": "1h"})
    r = client.post("/api/v1/silences", data=body, content_type=JSON, headers=admin, environ_base=REMOTE)
    assert r.status_code == 400
    assert r.get_json() == {
        "error": "invalid_silence",
        "message": r"matchers[1]: invalid regular expression '(\w+) \1' for title: backreferences (\1) are not "
                   "supported (RE2 syntax) (fix: RE2 cannot refer back to what a group matched (that is how it stays "
                   "linear): write the repeated text out, or match it with a second condition)",
    }
    assert client.get("/api/v1/silences", headers=admin, environ_base=REMOTE).get_json()["silences"] == []


def test_a_failed_reload_is_audited_too(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", rules_path=str(rules),
                        admin_token=Secret(ADMIN))
    client = create_app(settings).test_client()
    (rules / "broken.yaml").write_text("rules: [\n")
    r = client.post("/-/reload", headers=bearer(ADMIN), environ_base=REMOTE)
    assert r.status_code == 400
    entry = client.get("/api/v1/audit", headers=bearer(ADMIN), environ_base=REMOTE).get_json()["audit"][0]
    assert entry["action"] == "rules.reload" and entry["details"]["ok"] is False


def test_job_retry_and_discard_are_admin_actions_and_audited(tmp_path: Path) -> None:
    client = two_credentials(tmp_path)
    store = client.application.config["BRIDGE_STORE"]
    accepted = client.post("/webhooks/datadog", data=BODY, content_type=JSON, headers=bearer(WEBHOOK),
                           environ_base=REMOTE)
    assert accepted.status_code == 202
    holder = client.application.config["BRIDGE_HOLDER"]
    PipelineStage(store, lambda: holder.current).drain()  # the worker's stage decides the journaled alert
    job = store.list_jobs()[0]
    # Dead-letter it as a provider's 400 would, then retry it, then discard it.
    store.job_failed(job["id"], 1.0, error="rejected", reason="rejected", retry_at=None)
    assert client.post(f"/api/v1/jobs/{job['id']}/retry", headers=bearer(WEBHOOK),
                       environ_base=REMOTE).status_code == 401
    retried = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=bearer(ADMIN), environ_base=REMOTE)
    assert retried.status_code == 200 and retried.get_json()["state"] == "pending"
    again = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=bearer(ADMIN), environ_base=REMOTE)
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    discarded = client.post(f"/api/v1/jobs/{job['id']}/discard", headers=bearer(ADMIN), environ_base=REMOTE)
    assert discarded.status_code == 200 and discarded.get_json()["state"] == "discarded"
    missing = client.post("/api/v1/jobs/999999/discard", headers=bearer(ADMIN), environ_base=REMOTE)
    assert missing.status_code == 404
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=bearer(ADMIN),
                                                 environ_base=REMOTE).get_json()["audit"]]
    assert actions == ["job.discard", "job.retry"]
