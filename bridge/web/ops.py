"""The operations blueprint: liveness, readiness, metrics and rules reloads."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from bridge import metrics
from bridge.delivery.watchdog import check
from bridge.errors import ConfigErrors, RequestError
from bridge.web.context import WebContext, web_context

ops = Blueprint("ops", __name__)

# How long readiness waits to take the database's write lock: a probe runs every few seconds and must answer
# within its own timeout (Kubernetes: 1 s by default), while a write that takes longer already answers 503.
WRITE_PROBE_SECONDS = 1.0

# /readyz answers the per-run nonce `serve` gave this process in this header (see `bridge.server.INSTANCE_ENV`): the
# demo replays its alerts only into the bridge it started itself.
INSTANCE_HEADER = "X-Incident-Bridge-Instance"


@ops.get("/healthz")
def healthz() -> Response:
    """The process answers."""
    return jsonify({"status": "ok"})


@ops.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The database answers and takes writes, a ruleset is loaded, and neither delivery nor the pipeline is
    stalled (`bridge.health`: the stalls are listed under `stalled`, with their age); with this run's instance
    nonce, when `serve` started the process.

    `?scope=receive` leaves the stalls out: a load balancer's readiness probe asks whether this replica can take
    alerts, and a stall every replica shares (PagerDuty down) must not take them all out of service."""
    web = web_context()
    scope = request.args.get("scope", "all")
    if scope not in ("all", "receive"):
        raise RequestError(f"scope must be all or receive, not {scope[:40]!r}", code="bad_parameter")
    answer, status = _readiness(web, stalls=scope == "all")
    if web.instance:
        answer.headers[INSTANCE_HEADER] = web.instance
    return answer, status


def _readiness(web: WebContext, *, stalls: bool) -> tuple[Response, int]:
    problems = []
    try:
        web.store.ping()
        problem = web.store.write_problem(min(WRITE_PROBE_SECONDS, web.store.lock_timeout))
        if problem:
            problems.append(f"database: {problem}")
    except Exception as exc:  # readiness reports, it does not crash
        problems.append(f"database: {type(exc).__name__}")
    try:
        _ = web.holder.current
    except Exception as exc:
        problems.append(f"rules: {type(exc).__name__}")
    stalled: list[dict[str, object]] = []
    if stalls and not problems:
        try:
            found = check(web.store, web.settings.stall_threshold_seconds, web.now().timestamp())
        except Exception as exc:  # readiness reports, it does not crash
            problems.append(f"database: {type(exc).__name__}")
        else:
            problems.extend(s.reason for s in found)
            stalled = [s.as_json() for s in found]
    if problems:
        answer: dict[str, object] = {"status": "not ready", "problems": problems}
        if stalled:  # which part, how long, and the threshold, for a script to read
            answer["stalled"] = stalled
        return jsonify(answer), 503
    return jsonify({"status": "ready", "ruleset": web.holder.current.hash}), 200


@ops.get("/metrics")
def metrics_endpoint() -> Response:
    """Prometheus exposition."""
    data, content_type = metrics.render()
    return Response(data, content_type=content_type)


@ops.post("/-/reload")
def reload_rules() -> tuple[Response, int]:
    """Re-read the rules (admin credential); an invalid ruleset leaves the active one in place."""
    holder = web_context().holder
    try:
        result = holder.reload(actor=g.credential.actor)
    except ConfigErrors as exc:
        return jsonify({"status": "error", "message": "rules are invalid; the previous ruleset stays active",
                        "errors": [str(e) for e in exc.errors], "active_ruleset": holder.current.hash}), 400
    return jsonify({"status": "ok", "ruleset": result.ruleset.hash, "rules": len(result.ruleset.rules),
                    "warnings": [str(w) for w in result.warnings]}), 200
