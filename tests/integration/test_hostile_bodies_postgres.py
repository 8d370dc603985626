"""Hostile text on PostgreSQL: what SQLite stores without complaint (U+0000) failed the whole receipt there with a
500. The real app (Flask test client) on a fresh PostgreSQL database; the SQLite side of these bodies is in
tests/unit/web/test_hostile_bodies.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.web import create_app
from tests.support.bodies import DATADOG, alertmanager_body
from tests.support.postgres import fresh_database
from tests.support.shared import REPO

WEBHOOK_TOKEN = "webhook-token-for-hostile-tests"


@pytest.fixture(scope="module")
def pg_client() -> Iterator[tuple[Any, Any]]:
    with fresh_database() as url:
        app = create_app(Settings(database_url=url, webhook_token=Secret(WEBHOOK_TOKEN),
                                  receivers={"datadog": {"token": Secret(WEBHOOK_TOKEN)},
                                             "alertmanager": {"token": Secret(WEBHOOK_TOKEN)}},
                                  rules_path=str(REPO / "rules")))
        store = app.config["BRIDGE_STORE"]
        try:
            yield app.test_client(), store
        finally:
            store.engine.dispose()


@pytest.mark.parametrize(("path", "body", "content_type", "title"), [
    ("/webhooks/datadog", json.dumps({**DATADOG, "id": "pg-1", "title": "Checkout \u0000 errors"}),
     "application/json", "Checkout \ufffd errors"),
    ("/webhooks/datadog", json.dumps({**DATADOG, "id": "pg-2\u0000", "title": "Checkout \udcff errors"}),
     "application/json", "Checkout \ufffd errors"),
    ("/webhooks/datadog", "id=pg-3&alert_id=77&title=Checkout%20%00%20errors", "application/x-www-form-urlencoded",
     "Checkout \ufffd errors"),
    ("/webhooks/alertmanager", json.dumps(alertmanager_body({"summary": "Errors \u0000 high"})), "application/json",
     "Errors \ufffd high"),
], ids=["datadog-nul-title", "datadog-nul-id-and-lone-surrogate", "datadog-form-nul", "alertmanager-nul"])
def test_postgresql_stores_hostile_text_as_replaced(pg_client: tuple[Any, Any], path: str, body: str,
                                                    content_type: str, title: str) -> None:
    client, store = pg_client
    r = client.post(path, data=body.encode(),  # json.dumps wrote U+0000 and the surrogate as \u escapes
                    headers={"Content-Type": content_type, "Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    assert r.status_code == 202, r.get_data(as_text=True)
    stored = store.get_alert(r.get_json()["alerts"][0]["id"])
    assert stored["title"] == title
    json.dumps(stored, allow_nan=False).encode("utf-8")
