"""The web app (Flask factory): receivers in, decisions stored, 202 out. Plus health, metrics and the JSON API.

The request path is: authenticate -> parse -> decide (rules engine, one ruleset snapshot for the whole
request) -> store (one transaction, with the delivery jobs) -> answer. Nothing here calls PagerDuty: the
delivery worker does, so a slow or failing PagerDuty never slows a sender down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge import metrics
from bridge.access import (
    ADMIN_REALM,
    FORM_TYPE,
    WEBHOOK_REALM,
    Credential,
    admin_credential,
    check_browser,
    check_content_type,
    check_host,
    is_loopback,
)
from bridge.config import Settings
from bridge.errors import AuthError, ConfigErrors, NotFound, PayloadTooLarge, RequestError, ServiceUnavailable
from bridge.pipeline.wake import Doorbell
from bridge.receivers import build_receivers, generic_receivers
from bridge.receivers.base import (
    Headers,
    InboundRequest,
    Receiver,
    ReceiverContext,
    presented_token,
)
from bridge.receivers.jsonbody import load_json
from bridge.rules.engine import evaluate
from bridge.rules.holder import RulesetHolder
from bridge.silencing import create_silence, expire_silence, list_silences
from bridge.store import Store

log = logging.getLogger(__name__)


# The receivers authenticated by the shared BRIDGE_WEBHOOK_TOKEN.
SHARED_TOKEN_RECEIVERS = frozenset({"datadog", "alertmanager"})


# Re-exported: the server's bind check uses the same definition of loopback.
__all__ = ["create_app", "draft_postmortem", "is_loopback"]

# Content types besides JSON that a source's real sender uses. SNS posts its JSON envelope as text/plain; a
# browser could send that cross-site, but SNS messages are signed. Datadog's "encode as form" option is accepted
# only when a webhook token authenticates the request (see `content_types_for`).
EXTRA_CONTENT_TYPES: dict[str, tuple[str, ...]] = {"aws-sns": ("text/plain",)}


def create_app(settings: Settings, *, store: Store | None = None, holder: RulesetHolder | None = None,
               clock: Callable[[], datetime] | None = None,
               services: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app. Tests build as many independent apps as they like."""
    store = store or Store.open(settings.database_url)
    if holder is None:
        holder = RulesetHolder(settings.effective_rules_path(), store)
        holder.load()
    now_fn = clock or (lambda: datetime.now(UTC))
    receivers = build_receivers(settings, holder.path)
    io_services = dict(services or {})
    io_services.setdefault("fetch_url", _fetch_url(settings.http_timeout_seconds))

    app = Flask("incident-bridge")
    app.config["BRIDGE_STORE"] = store
    app.config["BRIDGE_HOLDER"] = holder
    metrics.register_store_collector(store)
    doorbell = Doorbell(settings.database_url)

    def read_body() -> bytes:
        """The body, capped at max_body_bytes; 413 beyond (chunked bodies included)."""
        limit = settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise PayloadTooLarge(f"body of {length} bytes exceeds the limit of {limit} bytes")
        stream = request.environ.get("wsgi.input")
        if stream is None:
            return b""
        # Read the raw WSGI input ourselves: with no Content-Length, Werkzeug would hand us an empty stream
        # unless the server marks the input terminated (gunicorn does for chunked bodies).
        if length is None and not request.environ.get("wsgi.input_terminated"):
            return b""
        chunks: list[bytes] = []
        total = 0
        to_read = length if length is not None else None
        while True:
            size = 65536 if to_read is None else min(65536, to_read - total)
            if size <= 0:
                break
            chunk = stream.read(size)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def inbound(body: bytes) -> InboundRequest:
        return InboundRequest(body=body, headers=Headers(dict(request.headers.items())),
                              query=dict(request.args.items()), path=request.path,
                              remote_addr=request.remote_addr or "", url=request.url)

    def check_open_access(receiver: Receiver) -> None:
        """Without BRIDGE_WEBHOOK_TOKEN, the receivers that use it accept loopback senders only, naming a loopback
        host. (Receivers with their own secret, such as Azure's, refuse a missing one themselves and name it.)"""
        open_access = receiver.name in SHARED_TOKEN_RECEIVERS and not settings.webhook_token
        if open_access and not is_loopback(request.remote_addr or ""):
            raise AuthError("no BRIDGE_WEBHOOK_TOKEN is configured: unauthenticated webhooks are "
                            "accepted from loopback only; set BRIDGE_WEBHOOK_TOKEN")
        check_host(request.host, trusted_by_loopback=open_access, allowed_hosts=settings.allowed_hosts,
                   public_url=settings.public_url)

    def content_types_for(receiver: Receiver) -> tuple[str, ...]:
        source = receiver.name.split("/", 1)[0]
        extra = EXTRA_CONTENT_TYPES.get(source, ())
        if source == "datadog" and settings.webhook_token:
            extra = (*extra, FORM_TYPE)
        return extra

    def receive(receiver: Receiver) -> tuple[Response, int]:
        started = time.perf_counter()
        source_settings = settings.receivers.get(receiver.name.split("/", 1)[0], {})
        body = read_body()
        req = inbound(body)
        ctx = ReceiverContext(now=now_fn(), settings=source_settings, services=io_services)
        check_open_access(receiver)
        check_content_type(request.headers.get("Content-Type", ""), extra=content_types_for(receiver))
        receiver.authenticate(req, ctx)
        parsed = receiver.parse(req, ctx)
        ruleset = holder.current  # one snapshot decides the whole request
        decided = [(alert, evaluate(alert, ruleset, ctx.now)) for alert in parsed.alerts]
        results = store.journal(decided, parsed.notices, ctx.now)
        if any(not r.duplicate for r in results):
            doorbell.ring()
        for notice in parsed.notices:
            level = logging.WARNING if notice.level == "warning" else logging.INFO
            log.log(level, "%s %s: %s", notice.source, notice.kind, notice.message)
        for r in results:
            metrics.ALERTS.labels(source=receiver.name.split("/", 1)[0],
                                  outcome="duplicate" if r.duplicate else r.outcome).inc()
        metrics.RECEIVE_SECONDS.labels(source=receiver.name.split("/", 1)[0]).observe(
            time.perf_counter() - started)
        all_duplicates = bool(results) and all(r.duplicate for r in results)
        body_out: dict[str, Any] = {"alerts": [r.to_json() for r in results]}
        if parsed.notices:
            body_out["notices"] = [{"kind": n.kind, "message": n.message} for n in parsed.notices]
        body_out["ruleset"] = ruleset.hash
        return jsonify(body_out), (200 if all_duplicates or not results else 202)

    # The receivers by path. Generic sources live in the rules directory and are re-read after a reload: the new
    # mapping is built aside and swapped in with one assignment, so a request never sees it half-built.
    registry = {"receivers": receivers, "generation": holder.generation}

    def current_receivers() -> Mapping[str, Receiver]:
        current = holder.generation
        if registry["generation"] != current:
            registry["generation"] = current
            try:
                fresh = generic_receivers(holder.path)
            except ConfigErrors as exc:
                log.error("generic sources are invalid; the previous ones stay active:\n%s", exc)
            else:
                old: Mapping[str, Receiver] = registry["receivers"]  # type: ignore[assignment]
                registry["receivers"] = {**{n: r for n, r in old.items() if not n.startswith("generic/")},
                                         **fresh}
        return registry["receivers"]  # type: ignore[return-value]

    @app.post("/webhooks/<path:name>")
    def webhook(name: str) -> tuple[Response, int]:
        known = current_receivers() if name.startswith("generic/") else registry["receivers"]
        receiver = known.get(name)  # type: ignore[attr-defined]
        if receiver is None:
            raise NotFound(f"no receiver {name!r}; known: {', '.join(sorted(known))}")  # type: ignore[call-overload]
        return receive(receiver)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        problems = []
        try:
            store.ping()
        except Exception as exc:  # readiness reports, it does not crash
            problems.append(f"database: {type(exc).__name__}")
        try:
            _ = holder.current
        except Exception as exc:
            problems.append(f"rules: {type(exc).__name__}")
        if problems:
            return jsonify({"status": "not ready", "problems": problems}), 503
        return jsonify({"status": "ready", "ruleset": holder.current.hash}), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        data, content_type = metrics.render()
        return Response(data, content_type=content_type)

    def is_admin_path(path: str) -> bool:
        return path.startswith("/api/v1/") or path == "/-/reload"

    @app.before_request
    def guard() -> None:
        """Every request: no other site's browser page. Admin endpoints: the admin credential (or loopback
        without one, naming a loopback host). Webhooks authenticate in their receiver."""
        headers = Headers(dict(request.headers.items()))
        check_browser(headers, request.host_url)
        if is_admin_path(request.path):
            credential = admin_credential(presented_token(headers),
                                          settings.admin_token.reveal(), request.remote_addr or "")
            check_host(request.host, trusted_by_loopback=credential.kind == "loopback",
                       allowed_hosts=settings.allowed_hosts, public_url=settings.public_url)
            g.credential = credential

    def actor() -> str:
        credential: Credential = g.credential
        return credential.actor

    @app.post("/-/reload")
    def reload_rules() -> tuple[Response, int]:
        try:
            result = holder.reload(actor=actor())
        except ConfigErrors as exc:
            return jsonify({"status": "error", "message": "rules are invalid; the previous ruleset stays active",
                            "errors": [str(e) for e in exc.errors],
                            "active_ruleset": holder.current.hash}), 400
        return jsonify({"status": "ok", "ruleset": result.ruleset.hash, "rules": len(result.ruleset.rules),
                        "warnings": [str(w) for w in result.warnings]}), 200

    @app.get("/api/v1/alerts")
    def api_alerts() -> Response:
        return jsonify({"alerts": store.list_alerts(limit=_limit())})

    @app.get("/api/v1/alerts/<int:alert_id>")
    def api_alert(alert_id: int) -> Response:
        found = store.get_alert(alert_id)
        if found is None:
            raise NotFound(f"no alert {alert_id}")
        return jsonify(found)

    @app.get("/api/v1/pipeline")
    def api_pipeline() -> Response:
        """How far the pipeline stage is behind the journal (alerts accepted, not yet decided)."""
        return jsonify({"journal": store.journal_status()})

    @app.get("/api/v1/incidents")
    def api_incidents() -> Response:
        return jsonify({"incidents": store.list_incidents(status=request.args.get("status"), limit=_limit())})

    @app.get("/api/v1/incidents/<path:key>")
    def api_incident(key: str) -> Response:
        found = incident_or_404(key)
        found["timeline"] = store.incident_timeline(found["id"])
        found["alerts"] = store.list_alerts(incident_id=found["id"], limit=1000)
        return jsonify(found)

    def incident_or_404(key: str) -> dict[str, Any]:
        found = store.find_incident(key)
        if found is None:
            raise NotFound(f"no incident {key!r} (use an id, a dedup key or a PagerDuty incident id)")
        return found

    @app.get("/api/v1/incidents/<path:key>/related")
    def api_related(key: str) -> Response:
        from bridge.lookups import related_for_incident

        incident = incident_or_404(key)
        result = related_for_incident(store, settings, incident, now=now_fn())
        return jsonify(result.to_json())

    @app.get("/api/v1/incidents/<path:key>/postmortem")
    def api_postmortem(key: str) -> Response:
        incident = incident_or_404(key)
        markdown = store.get_postmortem(incident["id"]) or draft_postmortem(store, holder, incident, now_fn())
        return Response(markdown, content_type="text/markdown; charset=utf-8")

    @app.post("/api/v1/silences")
    def api_silence_add() -> tuple[Response, int]:
        # The same strict reading as a webhook body, and a JSON content type, which no HTML form can send.
        check_content_type(request.headers.get("Content-Type", ""))
        body = load_json(request.get_data(), what="silence")
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object describing the silence", code="bad_payload")
        return jsonify(create_silence(store, body, now_fn(), actor=actor())), 201

    @app.get("/api/v1/silences")
    def api_silences() -> Response:
        include = request.args.get("all", "").lower() in ("1", "true", "yes")
        return jsonify({"silences": list_silences(store, now_fn(), include_expired=include)})

    @app.delete("/api/v1/silences/<int:silence_id>")
    def api_silence_expire(silence_id: int) -> Response:
        return jsonify(expire_silence(store, silence_id, now_fn(), actor=actor()))

    @app.get("/api/v1/jobs")
    def api_jobs() -> Response:
        return jsonify({"jobs": store.list_jobs(state=request.args.get("state"), limit=_limit()),
                        "counts": store.job_counts()})

    @app.post("/api/v1/jobs/<int:job_id>/retry")
    def api_job_retry(job_id: int) -> Response:
        found = store.retry_job(job_id, now_fn().timestamp(), actor=actor())
        if found is None:
            raise NotFound(f"no job {job_id}")
        return jsonify(found)

    @app.post("/api/v1/jobs/<int:job_id>/discard")
    def api_job_discard(job_id: int) -> Response:
        found = store.discard_job(job_id, now_fn().timestamp(), actor=actor())
        if found is None:
            raise NotFound(f"no job {job_id}")
        return jsonify(found)

    @app.get("/api/v1/audit")
    def api_audit() -> Response:
        return jsonify({"audit": store.list_audit(limit=_limit(), action=request.args.get("action") or None)})

    @app.get("/api/v1/notices")
    def api_notices() -> Response:
        return jsonify({"notices": store.list_notices(limit=_limit())})

    @app.get("/api/v1/rules")
    def api_rules() -> Response:
        rs = holder.current
        return jsonify({"hash": rs.hash, "files": list(rs.files), "rules": [r.name for r in rs.rules],
                        "reload": store.reload_status()})

    @app.errorhandler(RequestError)
    def on_request_error(exc: RequestError) -> tuple[Response, int]:
        response = jsonify(exc.to_json())
        if isinstance(exc, ServiceUnavailable):
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
        if exc.status == 401:
            realm = ADMIN_REALM if is_admin_path(request.path) else WEBHOOK_REALM
            response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
        return response, exc.status

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        return jsonify({"error": (exc.name or "error").lower().replace(" ", "_"),
                        "message": exc.description or ""}), code

    @app.errorhandler(Exception)
    def on_bug(exc: Exception) -> tuple[Response, int]:
        # Our own failure: 5xx so the sender retries (a 4xx would make it drop the alert).
        log.exception("internal error handling %s %s", request.method, request.path)
        return jsonify({"error": "internal", "message": "the bridge failed to process this request; "
                        "nothing was stored; retry"}), 500

    return app


def draft_postmortem(store: Store, holder: RulesetHolder, incident: dict[str, Any], now: datetime) -> str:
    """Render the post-mortem draft of an incident from what the store recorded (any severity, on demand)."""
    from bridge.lookups import postmortem_facts
    from bridge.postmortem import custom_template, render_postmortem

    # custom_template refuses a template outside the rules directory, even if the ruleset holds one.
    template, name = custom_template(holder.path, holder.current.settings.get("postmortem_template"))
    return render_postmortem(postmortem_facts(store, incident), template, now=now, template_name=name)


def _limit() -> int:
    try:
        return max(1, min(1000, int(request.args.get("limit", "100"))))
    except ValueError:
        raise RequestError("limit must be a whole number", code="bad_parameter") from None


def _fetch_url(timeout: float) -> Callable[[str], bytes]:
    """An HTTPS GET with a timeout, for SNS certificates and subscription confirmations."""
    import httpx2

    def fetch(url: str) -> bytes:
        response = httpx2.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        return bytes(response.content)

    return fetch
