"""The shipped OpenAPI document against the real app: every route documented with its methods, every documented
path routed, the document valid OpenAPI 3.1, and served without credentials.

Flask has one route for every webhook (`/webhooks/<path:name>`); the document names each built-in receiver and
`/webhooks/generic/{name}`, so `WEBHOOK_PATHS` is how the one route maps onto them. A route added to the app
without the document (or the reverse) fails `test_every_route_is_documented_and_every_path_routed`, which names
the path and methods missing on each side."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from bridge.config import Secret, Settings
from bridge.receivers import _all_receivers
from bridge.web import create_app
from bridge.web.api import openapi_document

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", admin_token=Secret("admin"),
                               webhook_token=Secret("hook")))


def webhook_paths(rules: Path) -> set[str]:
    """The documented paths of the one webhook route: each built-in receiver, and the generic sources."""
    builtin = {name for name in _all_receivers(rules) if not name.startswith("generic/")}
    return {f"/webhooks/{name}" for name in builtin} | {"/webhooks/generic/{name}"}


def routed(app: Any) -> dict[str, set[str]]:
    """Each route as an OpenAPI path template (`<int:id>` -> `{id}`) with its methods."""
    out: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console."):
            continue  # the console's HTML pages (/, /ui/...) are for browsers, not API clients: not in the document
        path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule.rule)
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        paths = webhook_paths(app.config["BRIDGE_HOLDER"].path) if rule.rule == "/webhooks/<path:name>" else {path}
        for p in paths:
            out.setdefault(p, set()).update(methods)
    return out


def differences(app: Any, document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """("METHOD /path" routed but not documented, documented but not routed)."""
    documented = {path: {m for m in item if m in METHODS} for path, item in document["paths"].items()}
    routes = routed(app)
    undocumented = {f"{m.upper()} {p}" for p, ms in routes.items() for m in ms - documented.get(p, set())}
    unrouted = {f"{m.upper()} {p}" for p, ms in documented.items() for m in ms - routes.get(p, set())}
    return sorted(undocumented), sorted(unrouted)


def test_every_route_is_documented_and_every_path_routed(app: Any) -> None:
    undocumented, unrouted = differences(app, openapi_document())
    assert not undocumented, f"routes missing from bridge/web/openapi.yaml: {undocumented}"
    assert not unrouted, f"documented in bridge/web/openapi.yaml but not routed: {unrouted}"


def test_the_comparison_names_what_is_missing_on_each_side(app: Any) -> None:
    # A route added without the document (a console page, heartbeats) and a documented path that lost its route.
    app.add_url_rule("/api/v1/heartbeats/<int:heartbeat_id>", "heartbeat", lambda heartbeat_id: "",
                     methods=["GET", "PUT"])
    document = copy.deepcopy(openapi_document())
    del document["paths"]["/api/v1/rules"]["get"]
    document["paths"]["/api/v1/gone"] = {"get": {"responses": {}}}
    undocumented, unrouted = differences(app, document)
    assert undocumented == ["GET /api/v1/heartbeats/{heartbeat_id}", "GET /api/v1/rules",
                            "PUT /api/v1/heartbeats/{heartbeat_id}"]
    assert unrouted == ["GET /api/v1/gone"]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_operation_answers_errors_as_the_error_schema() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            assert any(code.startswith(("4", "5")) for code in op["responses"]), f"{method} {path}"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["none", "wrong"])
def test_served_without_credentials(app: Any, headers: dict[str, str]) -> None:
    r = app.test_client().get("/api/v1/openapi.json", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert r.status_code == 200
    assert r.get_json() == openapi_document()
    # The rest of the API still wants the admin token.
    other = app.test_client().get("/api/v1/alerts", headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert other.status_code == 401
