"""The web console under /ui/: server-rendered pages for on-call engineers and rule authors.

Read-mostly: alerts and why each was (not) paged, incidents, the delivery queue, silences, the rules and a
playground, and a chart of the last day. Every write (sign-in and sign-out, silences, job retries and discards) is
audited as the API audits it, and every form carries a CSRF token (Flask-WTF's, checked before any view runs).

Signing in takes BRIDGE_ADMIN_TOKEN (never the webhook token) and sets an HttpOnly, SameSite=Strict cookie that
expires after BRIDGE_CONSOLE_SESSION (how the key is derived: `bridge.web.console.auth`). Without the cookie only
the sign-in page (and its stylesheet) is served. Errors are pages saying what is wrong, never a stack trace.
"""

from __future__ import annotations

import json
import logging
import secrets as random_secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers.response import Response as BaseResponse
from wtforms.validators import ValidationError

from bridge.config import Settings
from bridge.errors import NotFound, RequestError
from bridge.pipeline.silences.admin import create_silence, expire_silence, list_silences
from bridge.pipeline.silences.model import silence_from_json
from bridge.web.access import check_host, token_matches
from bridge.web.console import chart
from bridge.web.console.auth import COOKIE_NAME, ConsoleSessionInterface, SignInLimiter, session_key
from bridge.web.console.forms import matcher_lines, silence_body
from bridge.web.context import web_context

log = logging.getLogger("bridge.web.console")

console = Blueprint("console", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/ui/static")

PAGE_SIZE = 50
# The endpoints served without a session: the sign-in page, its form, and the stylesheet.
OPEN_ENDPOINTS = frozenset({"console.sign_in_page", "console.sign_in", "console.static", "console.root"})
LIMITER_KEY = "bridge.console.limiter"


def init_console(app: Flask, settings: Settings) -> None:
    """Register the console on `app`: the session (key, cookie flags, lifetime), CSRF settings, the blueprint."""
    admin = settings.admin_token.reveal()
    # Without an admin token nobody can sign in; the key then only signs the sign-in form's CSRF token.
    app.secret_key = session_key(admin) if admin else random_secrets.token_bytes(32)
    app.session_interface = ConsoleSessionInterface()
    lifetime = timedelta(seconds=settings.console_session_seconds)
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.console_secure_cookie or settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=lifetime,
        # The CSRF token lives as long as the session (it is bound to it); Flask-WTF's default is one hour.
        WTF_CSRF_TIME_LIMIT=int(lifetime.total_seconds()),
        WTF_CSRF_SSL_STRICT=True,
    )
    app.extensions[LIMITER_KEY] = SignInLimiter(clock=lambda: datetime.now(UTC).timestamp())
    app.register_blueprint(console)


def signed_in() -> bool:
    """Whether this request carries a live console session: signed in less than BRIDGE_CONSOLE_SESSION ago. The
    cookie expires then too, and its signature carries its age (Flask refuses an older one); this check holds
    on the server whatever a client does with the cookie's expiry."""
    at = session.get("signed_in_at")
    if not isinstance(at, int | float):
        return False
    web = web_context()
    return 0 <= web.now().timestamp() - at <= web.settings.console_session_seconds


def actor() -> str:
    """The audit log's name for the person at the console (never a credential)."""
    return f"console from {request.remote_addr or 'unknown address'}"


@console.before_request
def guard() -> BaseResponse | tuple[str, int] | None:
    """Host check, CSRF on every POST, and the sign-in page for anyone without a session."""
    web = web_context()
    check_host(request.host, trusted_by_loopback=False, allowed_hosts=web.settings.allowed_hosts,
               public_url=web.settings.public_url)
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:  # missing, expired or forged: a 400 page saying so
            raise CSRFError(exc.args[0] if exc.args else "invalid") from None
    if request.endpoint not in OPEN_ENDPOINTS and not signed_in():
        if request.method == "GET":
            return redirect(url_for("console.sign_in_page", next=request.full_path.rstrip("?")))
        return _error_page(401, "You are not signed in (or your session expired): sign in and try again.")
    return None


@console.after_request
def page_headers(response: BaseResponse) -> BaseResponse:
    """No script, frame or foreign resource on a console page; signed-in pages are never cached."""
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@console.get("/ui/<path:unknown>")
def not_a_page(unknown: str) -> tuple[str, int]:
    """Any other path under /ui/: a page saying so (the app's JSON 404 is for the API)."""
    return _error_page(404, f"There is no console page at /ui/{unknown[:100]}.")


@console.context_processor
def template_globals() -> dict[str, Any]:
    """What every page's layout reads."""
    return {"csrf_token": generate_csrf, "signed_in": signed_in(), "when": when, "web_url": web_url,
            "pretty": lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)}


@console.get("/")
def root() -> BaseResponse:
    """`/` is the console."""
    return redirect(url_for("console.sign_in_page"))


@console.get("/ui/")
def sign_in_page() -> BaseResponse | str:
    """The sign-in form, or the overview once signed in."""
    if signed_in():
        return redirect(url_for("console.overview"))
    return render_template("console/sign_in.html", configured=bool(web_context().settings.admin_token),
                           next=_safe_next(request.args.get("next", "")))


@console.post("/ui/sign-in")
def sign_in() -> BaseResponse | tuple[str, int]:
    """Check the admin token (constant time; the webhook token is never accepted), start a session, audit."""
    web = web_context()
    limiter: SignInLimiter = web_context_app().extensions[LIMITER_KEY]
    address = request.remote_addr or ""
    wait = limiter.retry_after(address)
    next_url = _safe_next(request.form.get("next", ""))
    if wait:
        # Refused before checking (and before auditing): a flood neither guesses nor fills the audit log.
        return (render_template("console/sign_in.html", configured=bool(web.settings.admin_token), next=next_url,
                                error=f"Too many failed sign-ins from your address: try again in {int(wait) + 1} "
                                      "seconds."), 429)
    admin = web.settings.admin_token.reveal()
    if not admin or not token_matches(request.form.get("token", ""), admin):
        limiter.failed(address)
        web.store.record_audit(actor(), "console.sign_in_failed", "console", {}, web.now().timestamp())
        message = ("The console is off: set BRIDGE_ADMIN_TOKEN (or BRIDGE_ADMIN_TOKEN_FILE) and restart."
                   if not admin else "Wrong token: sign in with BRIDGE_ADMIN_TOKEN (the webhook token is not "
                                     "accepted here).")
        return (render_template("console/sign_in.html", configured=bool(admin), next=next_url, error=message), 401)
    session.clear()  # a fresh session (and CSRF secret) for the signed-in person: no fixation
    session.permanent = True
    session["signed_in_at"] = web.now().timestamp()
    web.store.record_audit(actor(), "console.sign_in", "console", {}, web.now().timestamp())
    return redirect(next_url or url_for("console.overview"))


@console.post("/ui/sign-out")
def sign_out() -> BaseResponse:
    """End the session (audited)."""
    web = web_context()
    web.store.record_audit(actor(), "console.sign_out", "console", {}, web.now().timestamp())
    session.clear()
    flash("Signed out.")
    return redirect(url_for("console.sign_in_page"))


@console.get("/ui/overview")
def overview() -> str:
    """The last day at a glance: the chart (with its table) and the queue."""
    web = web_context()
    now = web.now()
    rows = web.store.alert_activity((now - timedelta(hours=chart.HOURS + 1)).timestamp())
    drawn = chart.draw(chart.hourly(rows, now))
    return render_template("console/overview.html", chart=drawn, colours=chart.COLOURS,
                           severities=chart.SEVERITIES, counts=web.store.job_counts(),
                           journal=web.store.journal_status())


# Alerts ------------------------------------------------------------------------------------------------------

ALERT_FILTERS = ("source", "service", "severity", "action", "outcome")


@console.get("/ui/alerts")
def alerts() -> tuple[str, int] | str:
    """The newest alerts first, filtered (the API's filters, `bridge.store.views.alert_query`) and paged."""
    from bridge.store.views import ACTIONS, OUTCOMES, SEVERITIES, Page, alert_page, alert_query, page_limit

    filters = {name: request.args.get(name, "").strip() for name in ALERT_FILTERS}
    choices = {"severity": SEVERITIES, "action": ACTIONS, "outcome": OUTCOMES}
    try:
        query = alert_query({k: [v] for k, v in filters.items() if v})
        limit = page_limit(request.args.to_dict(flat=False), default=PAGE_SIZE)
        page = alert_page(web_context().store, query, request.args.get("cursor") or None, limit)
    except RequestError as exc:
        return render_template("console/alerts.html", page=Page([], 0, None), filters=filters, choices=choices,
                               error=exc.message), 400
    return render_template("console/alerts.html", page=page, filters=filters, choices=choices,
                           limit=limit if limit != PAGE_SIZE else None)


@console.get("/ui/alerts/<int:alert_id>")
def alert_detail(alert_id: int) -> str:
    """One alert: the decision's reasons, the story, the normalized alert, the raw payload and its incident."""
    from bridge.ruletools.why import gather, tell

    web = web_context()
    found = web.store.get_alert(alert_id)
    if found is None:
        raise NotFound(f"no alert {alert_id}")
    facts = gather(web.store, alert_id, lambda: web.holder.current)
    story = tell(facts).to_json() if facts is not None else {}
    incident = web.store.incident_row(found["incident_id"]) if found.get("incident_id") else None
    return render_template("console/alert.html", alert=found, story=story, incident=incident)


# Incidents ---------------------------------------------------------------------------------------------------

@console.get("/ui/incidents")
def incidents() -> str:
    """Open incidents, then recent ones, with severity, priority, roles requested and who accepted."""
    from bridge.store.views import incident_page, incident_query

    status = request.args.get("status", "").strip()
    web = web_context()
    query = incident_query({"status": [status]} if status else {})
    page = incident_page(web.store, query, request.args.get("cursor") or None, PAGE_SIZE)
    rows = [{**i, "priority": _priority(i["severity"]), "roles": _roles(i, web.store)}
            for i in page.items]
    return render_template("console/incidents.html", page=page, rows=rows, status=status)


@console.get("/ui/incidents/<int:incident_id>")
def incident_detail(incident_id: int) -> str:
    """One incident: timeline, related incidents with their reasons, the post-mortem draft, links."""
    from bridge.postmortem import draft

    web = web_context()
    found = web.store.find_incident(str(incident_id))
    if found is None:
        raise NotFound(f"no incident {incident_id}")
    timeline = web.store.incident_timeline(found["id"])
    its_alerts = web.store.list_alerts(incident_id=found["id"], limit=200)
    markdown = web.store.get_postmortem(found["id"]) or draft(web.store, web.holder.path,
                                                              web.holder.current.settings, found, web.now())
    links: dict[str, str] = {}
    for a in its_alerts:
        for link in a["alert"].get("links") or []:
            href = link.get("href", "")
            if href.startswith(("https://", "http://")):
                links.setdefault(href, link.get("text") or href)
    return render_template("console/incident.html", incident=found, timeline=timeline, alerts=its_alerts,
                           related=(found.get("details") or {}).get("related") or [],
                           roles=_roles(found, web.store), postmortem=render_markdown(markdown),
                           priority=_priority(found["severity"]),
                           links=links)


def _priority(severity: str | None) -> str | None:
    """The PagerDuty priority the bridge sets for an incident of `severity` (declared incidents only, as
    `bridge.followups.setup` does), by name; None when it sets none."""
    from bridge.delivery.pagerduty_rest import priority_name
    from bridge.followups.roles import declared
    from bridge.model import Severity

    if not severity:
        return None
    ruleset = web_context().holder.current
    try:
        level = Severity.parse(severity)
    except ValueError:
        return None
    return priority_name(level.name, ruleset.settings.priority_names) if declared(ruleset, level) else None


def _roles(incident: dict[str, Any], store: Any) -> list[dict[str, str]]:
    """Each requested role with its holder and whether (and by whom) it was accepted, from the timeline."""
    requested = (incident.get("details") or {}).get("roles_requested") or {}
    if not requested:
        return []
    accepted = {}
    for entry in store.incident_timeline(incident["id"]):
        if entry["kind"] == "acknowledgement" and entry["description"].endswith(" accepted the request"):
            accepted[entry["description"].removesuffix(" accepted the request")] = entry["personnel"] or "yes"
    return [{"role": role, "holder": str(holder), "accepted": accepted.get(role, "")}
            for role, holder in requested.items()]


def render_markdown(text: str) -> Markup:
    """The post-mortem's Markdown as HTML, with raw HTML in it escaped (commonmark, `html` off) and only http(s)
    and relative links kept (markdown-it's default link validation drops javascript: and data: URLs)."""
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))  # noqa: S704


# Delivery ----------------------------------------------------------------------------------------------------

@console.get("/ui/delivery")
def delivery() -> str:
    """Pending, retrying and dead-lettered jobs with the provider's last answer; the queue against the limit."""
    web = web_context()
    now = web.now().timestamp()
    pending = web.store.list_jobs(state="pending", limit=200)
    queued_events = sum(1 for j in pending if j["kind"] == "event")
    rate = web.settings.events_rate_per_minute
    return render_template(
        "console/delivery.html",
        sections=[("Dead-lettered", "dead", web.store.list_jobs(state="dead", limit=200)),
                  ("Retrying", "retrying", [j for j in pending if j["attempts"] > 0]
                   + web.store.list_jobs(state="sending", limit=200)),
                  ("Pending", "pending", [j for j in pending if j["attempts"] == 0])],
        counts=web.store.job_counts(), queued_events=queued_events, rate=rate,
        sent_last_minute=web.store.events_sent_since(now - 60), drain_minutes=queued_events / rate if rate else 0)


@console.post("/ui/delivery/<int:job_id>/retry")
def job_retry(job_id: int) -> BaseResponse:
    """Send a dead job again (audited as `job.retry`, as the API's)."""
    store = web_context().store
    return _job_action(job_id, store.retry_job, f"Job {job_id} will be sent again.")


@console.post("/ui/delivery/<int:job_id>/discard")
def job_discard(job_id: int) -> BaseResponse:
    """Never send a pending or dead job (audited as `job.discard`)."""
    store = web_context().store
    return _job_action(job_id, store.discard_job, f"Job {job_id} discarded.")


def _job_action(job_id: int, act: Callable[..., Any], done: str) -> BaseResponse:
    """Retry or discard through the store (which audits it), then wake the worker's lanes: a retried job is due
    now, and a discarded one lets the later jobs of its key go. A refusal is shown on the delivery page."""
    web = web_context()
    try:
        found = act(job_id, web.now().timestamp(), actor=actor())
    except RequestError as exc:
        flash(exc.message, "error")
        return redirect(url_for("console.delivery"))
    if found is None:
        raise NotFound(f"no job {job_id}")
    web.doorbell.ring()
    flash(done)
    return redirect(url_for("console.delivery"))


# Silences ----------------------------------------------------------------------------------------------------

PREVIEW_LIMIT = 5000


@console.get("/ui/silences")
def silences() -> str:
    """The silences, and the form to create one."""
    return _silences_page({"matchers": "", "owner": "", "reason": "", "ends_at": "+2h"})


@console.post("/ui/silences")
def silence_create() -> BaseResponse | tuple[str, int] | str:
    """Preview (which of the last day's alerts it would have matched) or create a silence (audited)."""
    web = web_context()
    form = {k: request.form.get(k, "") for k in ("matchers", "owner", "reason", "ends_at")}
    now = web.now()
    try:
        body = silence_body(form)
        silence = silence_from_json(body, now)
    except RequestError as exc:
        return _silences_page(form, error=exc.message), 400
    if request.form.get("do") == "preview":
        recent = web.store.alerts_since((now - timedelta(days=1)).timestamp(), PREVIEW_LIMIT)
        matched = [summary for _id, alert, summary in recent if all(m.matches(alert) for m in silence.matchers)]
        return _silences_page(form, preview={"matched": matched, "examined": len(recent),
                                             "capped": len(recent) >= PREVIEW_LIMIT})
    created = create_silence(web.store, body, now, actor=actor())
    flash(f"Silence {created['id']} created.")
    return redirect(url_for("console.silences"))


@console.post("/ui/silences/<int:silence_id>/expire")
def silence_expire(silence_id: int) -> BaseResponse:
    """Expire a silence now (audited)."""
    web = web_context()
    expire_silence(web.store, silence_id, web.now(), actor=actor())
    flash(f"Silence {silence_id} expired.")
    return redirect(url_for("console.silences"))


def _silences_page(form: dict[str, str], *, error: str = "", preview: dict[str, Any] | None = None) -> str:
    web = web_context()
    return render_template("console/silences.html", silences=list_silences(web.store, web.now(),
                                                                           include_expired=True)[:200],
                           form=form, error=error, preview=preview, matcher_lines=matcher_lines)


# Rules -------------------------------------------------------------------------------------------------------

@console.get("/ui/rules")
def rules() -> str:
    """The loaded files, the ruleset hash, the last reload; the playground; heartbeats."""
    return _rules_page({"source": "datadog", "payload": ""})


@console.post("/ui/rules/playground")
def playground() -> tuple[str, int] | str:
    """`rules explain` for a pasted payload against the running ruleset."""
    from bridge.ruletools.explain import explain_payload, format_explanation

    web = web_context()
    form = {"source": request.form.get("source", ""), "payload": request.form.get("payload", "")}
    if form["source"] not in _sources():
        return _rules_page(form, error=f"Unknown source {form['source'][:100]!r}: pick one from the list."), 400
    if not form["payload"].strip():
        return _rules_page(form, error="Paste a payload as the source sends it."), 400
    try:
        items = explain_payload(form["source"], form["payload"].encode("utf-8"), web.holder.path, web.settings,
                                now=web.now(), ruleset=web.holder.current)
    except RequestError as exc:
        return _rules_page(form, error=f"The payload was refused: {exc.message}"), 400
    text = "\n".join(format_explanation(i) for i in items) or "The payload holds no alerts."
    return _rules_page(form, explanation=text)


def _sources() -> list[str]:
    web = web_context()
    return sorted(web.registry.current(web.holder))


def _rules_page(form: dict[str, str], *, error: str = "", explanation: str = "") -> str:
    web = web_context()
    rs = web.holder.current
    reload = web.store.reload_status()
    from bridge.pipeline.heartbeats import stored_statuses

    beats = stored_statuses(web.store, rs, web.now().timestamp())
    return render_template("console/rules.html", ruleset=rs, reload=reload, sources=_sources(), form=form,
                           error=error, explanation=explanation, heartbeats=beats)


# Errors: pages, never a stack trace --------------------------------------------------------------------------

@console.errorhandler(CSRFError)
def on_csrf(exc: CSRFError) -> tuple[str, int]:
    """A form without a valid CSRF token: usually an expired page."""
    return _error_page(400, "This form has expired or did not come from this console (CSRF check: "
                            f"{exc.description}). Reload the page and try again.")


@console.errorhandler(RequestError)
def on_request_error(exc: RequestError) -> tuple[str, int]:
    """Our own errors with their status and message."""
    return _error_page(exc.status, exc.message)


@console.errorhandler(HTTPException)
def on_http_error(exc: HTTPException) -> tuple[str, int]:
    """Werkzeug's (404 for a bad id in the path, 405, ...)."""
    return _error_page(exc.code or 500, exc.description or exc.name or "error")


@console.errorhandler(Exception)
def on_bug(exc: Exception) -> tuple[str, int]:
    """Our failure: logged with its trace, shown without it."""
    log.exception("console: internal error on %s %s", request.method, request.path)
    return _error_page(500, "The console failed to show this page; the error is in the bridge's log.")


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("console/error.html", status=status, message=message), status


# Helpers for the templates -----------------------------------------------------------------------------------

def when(value: Any) -> str:
    """A stored time (ISO text or epoch seconds) as `YYYY-MM-DD HH:MM:SS UTC`."""
    if value in (None, ""):
        return "-"
    try:
        at = (datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float)
              else datetime.fromisoformat(str(value)).astimezone(UTC))
    except (ValueError, OverflowError):
        return str(value)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def web_url(value: Any) -> str:
    """`value` when it is an http(s) URL, else "" (a sender's `javascript:` link never becomes a clickable one)."""
    text = str(value or "")
    return text if text.lower().startswith(("https://", "http://")) else ""


def _safe_next(target: str) -> str:
    """A post-sign-in destination inside the console only (no open redirect)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def web_context_app() -> Flask:
    """The current app (typed), for its extensions."""
    from flask import current_app

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app

