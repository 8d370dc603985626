"""The webhooks blueprint: `POST /webhooks/<source>`, the request path of every alert.

authenticate -> parse -> evaluate (the rules engine, one ruleset snapshot for the whole request) -> journal (one
INSERT, committed) -> ring the pipeline stage -> 202. Nothing stateful happens here: the pipeline stage in the
worker decides incidents and pages after the answer, so neither a storm nor a slow PagerDuty slows a sender down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from bridge import metrics
from bridge.errors import AuthError, NotFound, PayloadTooLarge
from bridge.receivers.base import InboundRequest, Receiver, ReceiverContext
from bridge.rules.engine import evaluate
from bridge.web.access import FORM_TYPE, check_content_type, check_host, is_loopback
from bridge.web.context import WebContext, web_context

log = logging.getLogger("bridge.web")

webhooks = Blueprint("webhooks", __name__)

# The receivers authenticated by the shared BRIDGE_WEBHOOK_TOKEN.
SHARED_TOKEN_RECEIVERS = frozenset({"datadog", "alertmanager"})

# Content types besides JSON that a source's real sender uses. SNS posts its JSON envelope as text/plain; a
# browser could send that cross-site, but SNS messages are signed. Datadog's "encode as form" option is accepted
# only when a webhook token authenticates the request (see `content_types_for`).
EXTRA_CONTENT_TYPES: dict[str, tuple[str, ...]] = {"aws-sns": ("text/plain",)}


@webhooks.post("/webhooks/<path:name>")
def webhook(name: str) -> tuple[Response, int]:
    """Receive one webhook for the receiver at `name`."""
    web = web_context()
    known = web.registry.current(web.holder) if name.startswith("generic/") else web.registry.receivers
    receiver = known.get(name)
    if receiver is None:
        raise NotFound(f"no receiver {name!r}; known: {', '.join(sorted(known))}")
    return receive(web, receiver)


def receive(web: WebContext, receiver: Receiver) -> tuple[Response, int]:
    """The request path: authenticate, parse, evaluate, journal, answer."""
    started = time.perf_counter()
    source = receiver.name.split("/", 1)[0]
    body = read_body(web.settings.max_body_bytes)
    req = InboundRequest(body=body, headers=g.headers, query=dict(request.args.items()),
                         path=request.path, remote_addr=request.remote_addr or "", url=request.url)
    ctx = ReceiverContext(now=web.now(), settings=web.settings.receivers.get(source, {}), services=web.services)
    check_open_access(web, receiver)
    check_content_type(request.headers.get("Content-Type", ""), extra=content_types_for(web, receiver))
    receiver.authenticate(req, ctx)
    parsed = receiver.parse(req, ctx)
    ruleset = web.holder.current  # one snapshot decides the whole request
    decided = [(alert, evaluate(alert, ruleset, ctx.now)) for alert in parsed.alerts]
    results = web.store.journal(decided, parsed.notices, ctx.now)
    if any(not r.duplicate for r in results):
        web.doorbell.ring()
    for notice in parsed.notices:
        level = logging.WARNING if notice.level == "warning" else logging.INFO
        log.log(level, "%s %s: %s", notice.source, notice.kind, notice.message)
    for r in results:
        metrics.ALERTS.labels(source=source, outcome="duplicate" if r.duplicate else r.outcome).inc()
    metrics.RECEIVE_SECONDS.labels(source=source).observe(time.perf_counter() - started)
    all_duplicates = bool(results) and all(r.duplicate for r in results)
    body_out: dict[str, Any] = {"alerts": [r.to_json() for r in results]}
    if parsed.notices:
        body_out["notices"] = [{"kind": n.kind, "message": n.message} for n in parsed.notices]
    body_out["ruleset"] = ruleset.hash
    return jsonify(body_out), (200 if all_duplicates or not results else 202)


def read_body(limit: int) -> bytes:
    """The body, capped at `limit` bytes; 413 beyond (chunked bodies included)."""
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
    while True:
        size = 65536 if length is None else min(65536, length - total)
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


def check_open_access(web: WebContext, receiver: Receiver) -> None:
    """Without BRIDGE_WEBHOOK_TOKEN, the receivers that use it accept loopback senders only, naming a loopback
    host. (Receivers with their own secret, such as Azure's, refuse a missing one themselves and name it.)"""
    settings = web.settings
    open_access = receiver.name in SHARED_TOKEN_RECEIVERS and not settings.webhook_token
    if open_access and not is_loopback(request.remote_addr or ""):
        raise AuthError("no BRIDGE_WEBHOOK_TOKEN is configured: unauthenticated webhooks are "
                        "accepted from loopback only; set BRIDGE_WEBHOOK_TOKEN")
    check_host(request.host, trusted_by_loopback=open_access, allowed_hosts=settings.allowed_hosts,
               public_url=settings.public_url)


def content_types_for(web: WebContext, receiver: Receiver) -> tuple[str, ...]:
    """The content types this receiver accepts besides JSON."""
    source = receiver.name.split("/", 1)[0]
    extra = EXTRA_CONTENT_TYPES.get(source, ())
    if source == "datadog" and web.settings.webhook_token:
        extra = (*extra, FORM_TYPE)
    return extra
