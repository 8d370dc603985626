"""The app while another writer holds the database (Flask test client): a write answers 503 database_busy with
Retry-After within BRIDGE_DB_LOCK_TIMEOUT and stores nothing, reads answer as usual, /readyz says the database
cannot be written and /healthz that the process lives. (tests/integration/test_locked_database.py: the same
through a real `serve`.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from bridge.pipeline.stage import PipelineStage
from bridge.web import create_app
from tests.support.bodies import DATADOG
from tests.support.dblock import DatabaseHolder

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
BUDGET = 0.5
SLACK = 0.4  # what a wait may overrun its budget by on a busy 2-core machine


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bridge.db"


@pytest.fixture
def client(db: Path) -> Any:
    settings = Settings(database_url=f"sqlite:///{db}", receivers={"datadog": {"token": ""}},
                        db_lock_timeout_seconds=BUDGET)
    return create_app(settings).test_client()


def post_alert(client: Any, event_id: str) -> Any:
    return client.post("/webhooks/datadog", data=json.dumps({**DATADOG, "id": event_id}), environ_base=LOOPBACK,
                       content_type="application/json")


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def test_a_webhook_is_answered_503_with_retry_after_and_stored_when_retried(client: Any, db: Path) -> None:
    assert post_alert(client, "before").status_code == 202
    with DatabaseHolder(db):
        answer, waited = timed(lambda: post_alert(client, "during"))
    assert answer.status_code == 503 and BUDGET <= waited < BUDGET + SLACK
    assert answer.headers["Retry-After"] == "1"
    body = answer.get_json()
    assert body["error"] == "database_busy"
    assert "cannot take the write lock within 0.5 s" in body["message"] and "retry" in body["message"]
    # The sender's retry, once the database is free: accepted, and what was accepted before is still there.
    assert post_alert(client, "during").status_code == 202
    stored = client.get("/api/v1/alerts", environ_base=LOOPBACK).get_json()["alerts"]
    assert [a["source_event_id"] for a in stored] == ["during", "before"]


def test_an_admin_write_is_answered_503_too(client: Any, db: Path) -> None:
    silence = {"matchers": [{"name": "service", "value": "checkout"}], "owner": "ops", "reason": "maintenance",
               "duration": "1h"}
    with DatabaseHolder(db):
        answer = client.post("/api/v1/silences", data=json.dumps(silence), environ_base=LOOPBACK,
                             content_type="application/json")
    assert answer.status_code == 503 and answer.get_json()["error"] == "database_busy"
    assert client.get("/api/v1/silences?all=1", environ_base=LOOPBACK).get_json()["silences"] == []


READS = ["/api/v1/silences", "/api/v1/silences?all=1", "/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/incidents",
         "/api/v1/incidents/1", "/api/v1/incidents/1/related", "/api/v1/incidents/1/postmortem", "/api/v1/pipeline",
         "/api/v1/jobs", "/api/v1/audit", "/api/v1/notices", "/api/v1/rules", "/metrics"]


@pytest.mark.parametrize("path", READS)
def test_reads_answer_at_once_while_the_write_lock_is_held(client: Any, db: Path, path: str) -> None:
    assert post_alert(client, "before").status_code == 202
    PipelineStage(client.application.config["BRIDGE_STORE"], lambda: None).drain()  # incident 1 and its page
    with DatabaseHolder(db):
        answer, waited = timed(lambda: client.get(path, environ_base=LOOPBACK))
    assert answer.status_code == 200 and waited < 0.2


def test_readyz_says_the_database_cannot_be_written_and_healthz_that_the_process_lives(client: Any,
                                                                                       db: Path) -> None:
    assert client.get("/readyz").status_code == 200
    with DatabaseHolder(db):
        ready, waited = timed(lambda: client.get("/readyz"))
        healthy = client.get("/healthz")
    assert ready.status_code == 503 and waited < BUDGET + SLACK  # the probe waits min(1 s, the budget)
    assert ready.get_json() == {"status": "not ready",
                                "problems": ["database: cannot take the write lock within 0.5 s"]}
    assert healthy.status_code == 200
    assert client.get("/readyz").get_json()["status"] == "ready"
