"""`GET /api/v1/alerts/<id>/why` through the real app (Flask test client): the story of a received alert as JSON,
with the same facts as `alerts --why`; an unknown id is a 404 JSON answer."""

from __future__ import annotations

from pathlib import Path

from bridge.config import Secret, Settings
from bridge.pipeline.stage import PipelineStage
from bridge.web import create_app
from tests.support.shared import REPO

ADMIN = "admin-token-for-operators"
EXAMPLES = REPO / "webhooks" / "datadog" / "examples"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def test_the_story_of_a_received_alert_and_of_an_unknown_one(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret(ADMIN),
                        receivers={"datadog": {"token": ""}}, rules_path=str(REPO / "rules"))
    app = create_app(settings)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for example in ("01-checkout-users-triggered.json", "04-payments-api-no-data.json"):
        r = client.post("/webhooks/datadog", data=(EXAMPLES / example).read_bytes(), environ_base=LOOPBACK,
                        content_type="application/json")
        assert r.status_code == 202, r.get_data(as_text=True)
    store = app.config["BRIDGE_STORE"]
    holder = app.config["BRIDGE_HOLDER"]
    PipelineStage(store, lambda: holder.current).drain()

    paged = client.get("/api/v1/alerts/1/why", headers=admin, environ_base=LOOPBACK)
    assert paged.status_code == 200
    story = paged.get_json()
    assert story["alert"]["id"] == 1 and story["outcome"] == "opened"
    assert story["rule"]["name"] == "datadog-monitor" and story["rule"]["severity"] == "P0"
    assert story["rule"]["ruleset"] == {"hash": holder.current.hash, "recorded": True, "note":
                                        f"explained with ruleset {holder.current.hash}, the one it was decided with"}
    assert story["incident"]["id"] == 1 and [j["action"] for j in story["delivery"]] == ["trigger"]
    assert story["story"][1] == f"verdict: {story['verdict']}"

    no_data = client.get("/api/v1/alerts/2/why", headers=admin, environ_base=LOOPBACK).get_json()
    assert no_data["paged"] is False and no_data["outcome"] == "recorded"
    assert no_data["rule"]["why_not_paged"] and no_data["verdict"].startswith("not paged: recorded only: ")

    missing = client.get("/api/v1/alerts/99/why", headers=admin, environ_base=LOOPBACK)
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "not_found", "message": "no alert 99"}
