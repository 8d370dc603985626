"""`GET /api/v1/alerts` and `/api/v1/incidents` through the real app (Flask test client): the page keys, the
cursor walk, and the JSON 400 naming a bad parameter. Alerts arrive through the webhook, as in production."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.web import create_app

ADMIN = "admin-token-for-operators"
WEBHOOK = "webhook-token-for-senders"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def client(tmp_path: Path) -> Any:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", webhook_token=Secret(WEBHOOK),
                        admin_token=Secret(ADMIN), receivers={"datadog": {"token": Secret(WEBHOOK)}})
    client = create_app(settings).test_client()
    for n in range(5):
        body = json.dumps({"id": f"e{n}", "alert_id": str(n), "title": f"alert {n}", "text": "bridge.value: 30",
                           "tags": "dimension:users_affected_pct"})
        r = client.post("/webhooks/datadog", data=body, content_type="application/json",
                        headers={"Authorization": f"Bearer {WEBHOOK}"})
        assert r.status_code == 202, r.get_json()
    return client


def test_alerts_page_through_with_a_total(client: Any) -> None:
    first = client.get("/api/v1/alerts?limit=2&source=datadog", headers=AUTH).get_json()
    assert set(first) == {"alerts", "total", "next_cursor"}
    assert first["total"] == 5 and len(first["alerts"]) == 2
    titles = [a["title"] for a in first["alerts"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/api/v1/alerts", query_string={"limit": 2, "source": "datadog", "cursor": cursor},
                          headers=AUTH).get_json()
        titles += [a["title"] for a in page["alerts"]]
        cursor = page["next_cursor"]
    assert titles == [f"alert {n}" for n in reversed(range(5))]


def test_incidents_answer_the_page_keys(client: Any) -> None:
    r = client.get("/api/v1/incidents?status=open,resolved&since=2000-01-01T00:00:00Z", headers=AUTH)
    assert r.status_code == 200
    assert set(r.get_json()) == {"incidents", "total", "next_cursor"}


@pytest.mark.parametrize(("path", "named"), [
    ("/api/v1/alerts?cursor=not-a-cursor", "cursor"),
    ("/api/v1/alerts?severity=P9", "P0, P1, P2, P3"),
    ("/api/v1/alerts?since=tomorrow", "since"),
    ("/api/v1/incidents?until=12:00", "until"),
    ("/api/v1/incidents?status=closed", "open, resolved"),
    ("/api/v1/incidents?cursor=%00", "cursor"),
], ids=["cursor", "severity", "since", "until", "status", "cursor-nul"])
def test_bad_parameters_are_a_json_400(client: Any, path: str, named: str) -> None:
    r = client.get(path, headers=AUTH)
    assert r.status_code == 400
    assert r.get_json()["error"] == "bad_parameter" and named in r.get_json()["message"]


@pytest.mark.parametrize(("transition", "severity", "action"), [("Triggered", "P0", "page"),
                                                                 ("Recovered", None, "resolve")],
                         ids=["trigger", "recovery"])
def test_a_recovery_is_answered_without_a_severity(client: Any, transition: str, severity: str | None,
                                                     action: str) -> None:
    body = json.dumps({"id": f"t-{transition}", "alert_id": "77", "title": "checkout errors",
                       "transition": transition, "text": "bridge.value: 30", "tags": "dimension:users_affected_pct"})
    r = client.post("/webhooks/datadog", data=body, content_type="application/json",
                    headers={"Authorization": f"Bearer {WEBHOOK}"})
    answered = r.get_json()["alerts"][0]
    assert (answered["severity"], answered["action"]) == (severity, action)


@pytest.mark.parametrize("path", [
    "/api/v1/alerts/43389809616618192682090496", "/api/v1/alerts/9223372036854775808/why",
    "/api/v1/incidents/43389809616618192682090496", "/api/v1/incidents/%C2%B2",
    "/api/v1/jobs/99999999999999999999/retry", "/api/v1/silences/99999999999999999999",
], ids=["alert", "why", "incident", "superscript-digit", "job", "silence"])
def test_ids_no_row_can_have_are_404s_not_500s(client: Any, path: str) -> None:
    method = "POST" if path.endswith("/retry") else "DELETE" if "/silences/" in path else "GET"
    r = client.open(path, method=method, headers=AUTH)
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"


def test_an_incident_id_filter_beyond_any_row_is_a_400(client: Any) -> None:
    r = client.get("/api/v1/alerts?incident_id=99999999999999999999", headers=AUTH)
    assert r.status_code == 400 and "incident_id" in r.get_json()["message"]
