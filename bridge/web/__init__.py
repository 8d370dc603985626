"""The web app: `create_app` wires the blueprints (webhooks, api, ops), the guard and the error answers.

- `webhooks`: the request path of every alert (authenticate, parse, evaluate, journal, 202);
- `api`: the JSON API under /api/v1/, admin credential only;
- `ops`: /healthz, /readyz, /metrics, /-/reload;
- `console`: the web console under /ui/ (signed in with the admin token; `bridge.web.console`).

The guard runs before every request (`before_request`): no other site's browser page, and the admin credential
for the API and reloads. Every error is a JSON answer: a RequestError with its status (a write that could not take
the database's write lock within BRIDGE_DB_LOCK_TIMEOUT is `DatabaseBusy`: 503 with Retry-After), anything else a
500 that tells the sender to retry (nothing was stored).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge import metrics
from bridge.config import Settings
from bridge.errors import ConfigErrors, DatabaseBusy, DatabaseUnavailable, RequestError, ServiceUnavailable
from bridge.logformat import bind_fields, unbind_fields
from bridge.pipeline.wake import Doorbell
from bridge.receivers import build_receivers
from bridge.receivers.base import Headers, presented_token
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from bridge.store.engine import BACKGROUND_LOCK_TIMEOUT, unavailable_problem
from bridge.web.access import ADMIN_REALM, WEBHOOK_REALM, admin_credential, check_browser, check_host, is_loopback
from bridge.web.api import OPENAPI_PATH, api
from bridge.web.console import init_console
from bridge.web.context import EXTENSION, ReceiverRegistry, WebContext
from bridge.web.ops import ops
from bridge.web.requestid import REQUEST_ID_HEADER, request_id_for
from bridge.web.webhooks import webhooks

log = logging.getLogger("bridge.web")

# Re-exported: the server's bind check uses the same definition of loopback.
__all__ = ["create_app", "is_loopback"]


def create_app(settings: Settings, *, store: Store | None = None, holder: RulesetHolder | None = None,
               clock: Callable[[], datetime] | None = None,
               services: Mapping[str, Any] | None = None, instance: str = "") -> Flask:
    """Build the web app. Tests build as many independent apps as they like.

    `instance`: the per-run nonce `serve` hands its gunicorn, answered by /readyz (`bridge.web.ops`)."""
    store = store or Store.open(settings.database_url, lock_timeout=settings.db_lock_timeout_seconds)
    # A request's writes wait at most this long for the write lock, then answer 503 (`DatabaseBusy`).
    store.lock_timeout = settings.db_lock_timeout_seconds
    if holder is None:
        holder = RulesetHolder(settings.effective_rules_path(), store)
        # A web worker starting while the database is held for a while waits for it, as the supervisor did: a
        # worker that fails to boot stops gunicorn, and with it the bridge.
        with store.waiting_longer(BACKGROUND_LOCK_TIMEOUT):
            holder.load()
    io_services = dict(services or {})
    io_services.setdefault("fetch_url", _fetch_url(settings.http_timeout_seconds))

    def generic_sources_invalid(exc: ConfigErrors) -> None:
        log.error("generic sources are invalid; the previous ones stay active:\n%s", exc)

    # No static folder: every route is one of ours and in the OpenAPI document (Flask would add /static/<path>).
    app = Flask("incident-bridge", static_folder=None)
    app.config["BRIDGE_STORE"] = store
    app.config["BRIDGE_HOLDER"] = holder
    app.extensions[EXTENSION] = WebContext(
        settings=settings, store=store, holder=holder, now=clock or (lambda: datetime.now(UTC)),
        registry=ReceiverRegistry(build_receivers(settings, holder.path), holder.generation,
                                  on_error=generic_sources_invalid),
        doorbell=Doorbell(settings.database_url), services=io_services, instance=instance)
    metrics.register_store_collector(store)
    app.register_blueprint(webhooks)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    init_console(app, settings)

    @app.before_request
    def identify() -> None:
        """Every request: its id (the sender's sane `X-Request-Id`, or a new one) on every line it logs.

        Not /healthz: gunicorn's event loop answers it without the app (`bridge.web.gunicorn_worker`), byte for
        byte as the app does, and a liveness probe has no story to trace."""
        if request.path == "/healthz":
            return
        g.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        g.log_token = bind_fields(request_id=g.request_id)

    @app.after_request
    def answer_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        # gunicorn's threads serve one request after another: the next must not inherit this one's id.
        token = g.pop("log_token", None)
        if token is not None:
            unbind_fields(token)

    @app.before_request
    def guard() -> None:
        """Every request: no other site's browser page. Admin endpoints: the admin credential (or loopback
        without one, naming a loopback host). Webhooks authenticate in their receiver."""
        # Kept for the webhook's receiver, which reads the same headers (`bridge.web.webhooks.receive`).
        headers = g.headers = Headers(dict(request.headers.items()))
        check_browser(headers, request.host_url)
        if is_admin_path(request.path):
            credential = admin_credential(presented_token(headers), settings.admin_token.reveal(),
                                          request.remote_addr or "")
            check_host(request.host, trusted_by_loopback=credential.kind == "loopback",
                       allowed_hosts=settings.allowed_hosts, public_url=settings.public_url)
            g.credential = credential

    @app.errorhandler(RequestError)
    def on_request_error(exc: RequestError) -> tuple[Response, int]:
        response = jsonify(exc.to_json())
        if isinstance(exc, DatabaseBusy):
            # The sender retries; the operator needs to know who holds the database.
            log.warning("%s %s answered 503: %s", request.method, request.path, exc.message)
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
        problem = unavailable_problem(exc)
        if problem is not None:
            # The database is full, read-only or down: not a bug, and nothing was stored. 503 with Retry-After
            # (the sender retries); one line for the operator, without the driver's message (it may name hosts).
            log.error("%s %s answered 503: the database %s (%s)", request.method, request.path, problem,
                      type(getattr(exc, "orig", None) or exc).__name__)
            return on_request_error(DatabaseUnavailable(problem))
        # Our own failure: 5xx so the sender retries (a 4xx would make it drop the alert).
        log.exception("internal error handling %s %s", request.method, request.path)
        return jsonify({"error": "internal", "message": "the bridge failed to process this request; "
                        "nothing was stored; retry"}), 500

    return app


def is_admin_path(path: str) -> bool:
    """The paths that take the admin credential."""
    return (path.startswith("/api/v1/") and path != OPENAPI_PATH) or path == "/-/reload"


def _fetch_url(timeout: float) -> Callable[[str], bytes]:
    """An HTTPS GET with a timeout, for SNS certificates and subscription confirmations."""
    import httpx2

    def fetch(url: str) -> bytes:
        response = httpx2.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        return bytes(response.content)

    return fetch
