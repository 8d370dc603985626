"""/readyz through the real app (Flask test client): the bridge `serve` started answers with its run's nonce, so
`serve --demo` can tell it from any other process at the same address; an app started otherwise sends none."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.web import create_app
from bridge.web.ops import INSTANCE_HEADER


@pytest.mark.parametrize(("instance", "header"), [("run-nonce-42", "run-nonce-42"), ("", None)],
                         ids=["started_by_serve", "started_otherwise"])
def test_readyz_answers_the_instance_nonce_of_its_run(tmp_path: Path, instance: str, header: str | None) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"), instance=instance)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["status"] == "ready"
    assert answer.headers.get(INSTANCE_HEADER) == header
    assert "run-nonce-42" not in answer.get_data(as_text=True)  # a header, not part of the probe's JSON
