"""The JSON API blueprint under `/api/v1/`. The admin credential is checked for every request by the app's guard
(`bridge.web.create_app`), never by hand here; `g.credential` names who asked, for the audit log."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from flask import Blueprint, Response, g, jsonify, request

from bridge.errors import NotFound, RequestError
from bridge.followups.reconcile import pass_status
from bridge.pipeline.silences.admin import create_silence, expire_silence, list_silences
from bridge.receivers.jsonbody import load_json
from bridge.store.views import MAX_ROW_ID, alert_page, alert_query, incident_page, incident_query, page_limit
from bridge.web.access import check_content_type
from bridge.web.context import web_context

api = Blueprint("api", __name__, url_prefix="/api/v1")
# Numeric ids in paths stop at the largest id the databases hold: a longer one is a 404 from the routing, where
# the database driver would fail on it (a 500; found by schemathesis).
ROW_ID = f"int(max={MAX_ROW_ID})"

# Public: the one path under /api/v1/ that takes no credential (`bridge.web.is_admin_path`).
OPENAPI_PATH = "/api/v1/openapi.json"


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of every endpoint (shipped as bridge/web/openapi.yaml), without credentials."""
    return jsonify(openapi_document())


@cache
def openapi_document() -> dict[str, Any]:
    """The shipped OpenAPI document, read once per process."""
    loaded: dict[str, Any] = yaml.safe_load(files("bridge.web").joinpath("openapi.yaml").read_text("utf-8"))
    return loaded


@api.get("/alerts")
def alerts() -> Response:
    """Stored alerts, newest first, each with its decision and outcome: one page (`limit`, `cursor`) of those
    matching the filters (source, service, severity, action, outcome, state, incident_id, since, until), with the
    total of matches and the next page's cursor."""
    params = request.args.to_dict(flat=False)
    page = alert_page(web_context().store, alert_query(params), request.args.get("cursor") or None,
                      page_limit(params))
    return jsonify(page.to_json("alerts"))


@api.get(f"/alerts/<{ROW_ID}:alert_id>")
def alert(alert_id: int) -> Response:
    """One alert with its decision, outcome and raw payload."""
    found = web_context().store.get_alert(alert_id)
    if found is None:
        raise NotFound(f"no alert {alert_id}")
    return jsonify(found)


@api.get(f"/alerts/<{ROW_ID}:alert_id>/why")
def alert_why(alert_id: int) -> Response:
    """The story of one alert: the rule and thresholds, silence, inhibition, storm, flap window, the incident it
    joined and the delivery of its page, with the verdict: was it paged, and why not (`alerts --why` in the CLI)."""
    from bridge.ruletools.why import gather, tell

    web = web_context()
    facts = gather(web.store, alert_id, lambda: web.holder.current)
    if facts is None:
        raise NotFound(f"no alert {alert_id}")
    return jsonify(tell(facts).to_json())


@api.get("/pipeline")
def pipeline() -> Response:
    """How far the pipeline stage is behind the journal (alerts accepted, not yet decided), and how far the newest
    reconciliation pass with PagerDuty has come (null before the first)."""
    store = web_context().store
    return jsonify({"journal": store.journal_status(), "reconcile": pass_status(store)})


@api.get("/heartbeats")
def heartbeats() -> Response:
    """Each heartbeat of the active rules: its conditions and interval, last beat, when the next is due, its state
    (ok, waiting: never seen and still within its first interval, or missed) and its incident's key and id."""
    from bridge.pipeline.heartbeats import stored_statuses

    web = web_context()
    return jsonify({"heartbeats": stored_statuses(web.store, web.holder.current, web.now().timestamp())})


@api.get("/incidents")
def incidents() -> Response:
    """Incidents, newest first: one page (`limit`, `cursor`) of those matching the filters (status, source,
    service, severity, action and outcome of their alerts, since/until on the opening time), with the total of
    matches and the next page's cursor."""
    params = request.args.to_dict(flat=False)
    page = incident_page(web_context().store, incident_query(params), request.args.get("cursor") or None,
                         page_limit(params))
    return jsonify(page.to_json("incidents"))


@api.get("/incidents/<path:key>")
def incident(key: str) -> Response:
    """One incident (by id, dedup key or PagerDuty id) with its timeline and alerts."""
    store = web_context().store
    found = incident_or_404(key)
    found["timeline"] = store.incident_timeline(found["id"])
    found["alerts"] = store.list_alerts(incident_id=found["id"], limit=1000)
    return jsonify(found)


@api.get("/incidents/<path:key>/related")
def related(key: str) -> Response:
    """Related past incidents, ranked, with their reasons."""
    from bridge.related.lookup import related_for_incident

    web = web_context()
    result = related_for_incident(web.store, web.settings, incident_or_404(key), now=web.now())
    return jsonify(result.to_json())


@api.get("/incidents/<path:key>/postmortem")
def postmortem(key: str) -> Response:
    """The stored post-mortem draft, or one rendered now."""
    from bridge.postmortem import draft

    web = web_context()
    found = incident_or_404(key)
    markdown = web.store.get_postmortem(found["id"]) or draft(web.store, web.holder.path,
                                                              web.holder.current.settings, found, web.now())
    return Response(markdown, content_type="text/markdown; charset=utf-8")


@api.post("/silences")
def silence_add() -> tuple[Response, int]:
    """Create a silence (audited)."""
    # The same strict reading as a webhook body, and a JSON content type, which no HTML form can send.
    check_content_type(request.headers.get("Content-Type", ""))
    body = load_json(request.get_data(), what="silence")
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object describing the silence", code="bad_payload")
    web = web_context()
    return jsonify(create_silence(web.store, body, web.now(), actor=g.credential.actor)), 201


@api.get("/silences")
def silences() -> Response:
    """Active silences (`?all=1`: expired too)."""
    web = web_context()
    include = request.args.get("all", "").lower() in ("1", "true", "yes")
    return jsonify({"silences": list_silences(web.store, web.now(), include_expired=include)})


@api.delete(f"/silences/<{ROW_ID}:silence_id>")
def silence_expire(silence_id: int) -> Response:
    """Expire a silence now (audited)."""
    web = web_context()
    return jsonify(expire_silence(web.store, silence_id, web.now(), actor=g.credential.actor))


@api.get("/jobs")
def jobs() -> Response:
    """Outbox jobs, newest first (`?state=dead` is the dead-letter view), with counts by state."""
    store = web_context().store
    return jsonify({"jobs": store.list_jobs(state=request.args.get("state"), limit=_limit()),
                    "counts": store.job_counts()})


@api.post(f"/jobs/<{ROW_ID}:job_id>/retry")
def job_retry(job_id: int) -> Response:
    """Send a dead job again (audited)."""
    web = web_context()
    found = web.store.retry_job(job_id, web.now().timestamp(), actor=g.credential.actor)
    if found is None:
        raise NotFound(f"no job {job_id}")
    web.doorbell.ring()  # the worker's lanes sleep until woken (on PostgreSQL the store notified on commit)
    return jsonify(found)


@api.post(f"/jobs/<{ROW_ID}:job_id>/discard")
def job_discard(job_id: int) -> Response:
    """Never send a pending or dead job (audited)."""
    web = web_context()
    found = web.store.discard_job(job_id, web.now().timestamp(), actor=g.credential.actor)
    if found is None:
        raise NotFound(f"no job {job_id}")
    web.doorbell.ring()  # the later jobs of its key may go now
    return jsonify(found)


@api.get("/audit")
def audit() -> Response:
    """Who changed what, newest first (`?action=silence.` filters by prefix)."""
    store = web_context().store
    return jsonify({"audit": store.list_audit(limit=_limit(), action=request.args.get("action") or None)})


@api.get("/notices")
def notices() -> Response:
    """Recorded notices (SNS subscriptions to confirm, unsubscribes), newest first."""
    return jsonify({"notices": web_context().store.list_notices(limit=_limit())})


@api.get("/rules")
def rules() -> Response:
    """The active ruleset and the last reload's result."""
    web = web_context()
    rs = web.holder.current
    return jsonify({"hash": rs.hash, "files": list(rs.files), "rules": [r.name for r in rs.rules],
                    "reload": web.store.reload_status()})


def incident_or_404(key: str) -> dict[str, Any]:
    """The incident named by `key`, or 404 saying what a key may be."""
    found = web_context().store.find_incident(key)
    if found is None:
        raise NotFound(f"no incident {key!r} (use an id, a dedup key or a PagerDuty incident id)")
    return found


def _limit() -> int:
    return page_limit(request.args.to_dict(flat=False))
