"""The webhooks blueprint: `POST /webhooks/<source>`, the request path of every alert.

authenticate -> parse -> evaluate (the rules engine, one ruleset snapshot for the whole request) -> journal (one
INSERT per alert, committed) -> ring the pipeline stage -> 202. Nothing stateful happens here: the pipeline stage
in the worker decides incidents and pages after the answer, so neither a storm nor a slow PagerDuty slows a sender
down. A request carries at most `BRIDGE_MAX_ALERTS_PER_REQUEST` alerts (413 beyond, nothing stored); a big one is
journaled in chunks (`JOURNAL_CHUNK`), so it never holds the writer long enough to slow another sender down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from bridge import metrics
from bridge.errors import AuthError, NotFound, PayloadTooLarge, TooManyAlerts
from bridge.model import Notice
from bridge.receivers.base import InboundRequest, Receiver, ReceiverContext, check_alert_count
from bridge.rules.engine import evaluate
from bridge.store import Accepted, JournalInterrupted
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
    ctx = ReceiverContext(now=web.now(), settings=web.settings.receivers.get(source, {}), services=web.services,
                          max_alerts=web.settings.max_alerts_per_request)
    check_open_access(web, receiver)
    check_content_type(request.headers.get("Content-Type", ""), extra=content_types_for(web, receiver))
    receiver.authenticate(req, ctx)
    try:
        parsed = receiver.parse(req, ctx)
        check_alert_count(len(parsed.alerts), ctx)  # receivers of batches refuse sooner, before parsing
    except TooManyAlerts as exc:
        # A 4xx, so the sender drops the batch: the operator must hear of it.
        log.warning("%s webhook refused: %s", receiver.name, exc.message)
        raise
    ruleset = web.holder.current  # one snapshot decides the whole request
    decided = [(alert, evaluate(alert, ruleset, ctx.now)) for alert in parsed.alerts]

    def committed(chunk: Sequence[Accepted]) -> None:
        # The stage starts on the first chunk while the rest of a big request is written.
        if any(not r.duplicate for r in chunk):
            web.doorbell.ring()

    try:
        results = web.store.journal(decided, parsed.notices, ctx.now, on_commit=committed,
                                    request_id=g.get("request_id"))
    except JournalInterrupted as exc:
        log.error("%s webhook: %s; the sender is asked to retry the request", receiver.name, exc,
                  exc_info=exc.__cause__)
        count_received(source, parsed.notices, exc.accepted, started)
        # 5xx: the sender retries the whole body, and the entries stored already are answered as duplicates.
        return jsonify({"error": "partly_accepted", "accepted": len(exc.accepted), "total": exc.total,
                        "message": f"{len(exc.accepted)} of {exc.total} alerts were stored; the bridge failed to "
                                   "store the rest; retry the request: the stored ones count as duplicates"}), 500
    count_received(source, parsed.notices, results, started)
    log_receipts(receiver.name, results)
    all_duplicates = bool(results) and all(r.duplicate for r in results)
    body_out: dict[str, Any] = {"alerts": [r.to_json() for r in results]}
    if parsed.notices:
        body_out["notices"] = [{"kind": n.kind, "message": n.message} for n in parsed.notices]
    body_out["ruleset"] = ruleset.hash
    return jsonify(body_out), (200 if all_duplicates or not results else 202)


def count_received(source: str, notices: Sequence[Notice], results: Sequence[Accepted], started: float) -> None:
    """Log the request's notices and count its alerts and time in the metrics."""
    for notice in notices:
        level = logging.WARNING if notice.level == "warning" else logging.INFO
        log.log(level, "%s %s: %s", notice.source, notice.kind, notice.message)
    for r in results:
        metrics.ALERTS.labels(source=source, outcome="duplicate" if r.duplicate else r.outcome).inc()
    metrics.RECEIVE_SECONDS.labels(source=source).observe(time.perf_counter() - started)


def log_receipts(receiver: str, results: Sequence[Accepted]) -> None:
    """One line per journaled alert: the first line of its story, with its id and dedup key (and the request id,
    bound for the whole request), which the pipeline's and the delivery worker's lines of the alert repeat."""
    for r in results:
        log.info("%s alert %d %s: %s %s (dedup key %s)", receiver, r.alert_id,
                 "repeated" if r.duplicate else "journaled", r.action, r.severity or "-", r.dedup_key,
                 extra={"alert_id": r.alert_id, "dedup_key": r.dedup_key, "source": receiver,
                        "action": r.action, "outcome": "duplicate" if r.duplicate else r.outcome})


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
